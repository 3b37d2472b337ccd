"""Apps nobody here wrote, deployed as they are, side by side with FlaskTODO on one host: a
Django project as `django-admin startproject` made it, and httpbin straight from PyPI
(their entries: apps/examples.py); and all their data back on a new host put where the
host was lost, from staging's backup host.

A sandbox of its own (one staging host and its backup host); the tests run in order, each
leaving the host converged for the next.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.examples import DJANGO, HTTPBIN
from tests.integration.helpers import (
    REPO,
    Browser,
    Run,
    Sandbox,
    deploy,
    footprint,
    http,
    left_by_destroy,
    own_sandbox,
    sandbox_cli,
)
from tests.integration.load import Load
from tests.unit.test_settings import group_data

NAME, SUBNET = "iany", "10.187.0.0/24"
SERVER_NAME = "staging.flasktodo.test"
GOLIVE = "/usr/local/lib/wsgistack/golive"
ADMIN_PASSWORD = "a-long-admin-password-for-the-sandbox-only"
# What an operator runs once to make the admin's user (README): the password goes through
# stdin, never argv.
CREATE_SUPERUSER = ("from django.contrib.auth.models import User; User.objects"
                    f".create_superuser('admin', 'admin@example.com', '{ADMIN_PASSWORD}')")
NOTES_MODEL = """from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
"""


class Host:
    def __init__(self, sandbox: Sandbox, secrets_dir: Path) -> None:
        self.sandbox, self.secrets_dir = sandbox, secrets_dir
        self.host = sandbox.hosts()[0]
        self.address = self.host["address"]
        # each host's footprint before the first deploy, which destroy with purge gives back
        self.bare = {each["name"]: footprint(sandbox, each) for each in sandbox.hosts()}

    def deploy(self, *apps: dict, dry: bool = False, entry: str = "deploy.py",
               data: tuple[str, ...] = ()) -> Run:
        entries = [group_data("staging")["apps"][0], *apps]
        return deploy(self.sandbox, "--dry" if dry else "-y", "--limit", "staging",
                      "--data", "apps=" + json.dumps(entries), *data,
                      secrets_dir=self.secrets_dir, entry=entry)

    def ssh(self, command: str, stdin: str | None = None) -> str:
        result = subprocess.run(["ssh", "-F", self.sandbox.ssh_config, self.host["name"],
                                 command], input=stdin, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def live(self, app: str) -> str:
        return self.ssh(f"readlink /opt/{app}/current").strip()


@pytest.fixture(scope="module")
def host(secrets_dir: Path) -> Iterator[Host]:
    with own_sandbox(NAME, SUBNET, "staging=1,staging-backup=1") as sandbox:
        yield Host(sandbox, secrets_dir)


def test_three_apps_deploy_side_by_side_and_converge(host: Host) -> None:
    first = host.deploy(DJANGO, HTTPBIN).succeeded()
    for app in ("flasktodo", "mysite", "httpbin"):
        assert re.search(rf"{app} \S+ .*healthy", first.output), first.output[-3000:]
    assert host.deploy(DJANGO, HTTPBIN).succeeded().changed_ops() == []
    assert host.deploy(DJANGO, HTTPBIN, dry=True).succeeded().planned_changes() == []
    status, _headers, body = http(host.address, "/flasktodo/", SERVER_NAME)
    assert status == 200 and "FlaskTODO" in body, "FlaskTODO as before"


def test_a_pypi_app_serves_under_its_prefix_with_its_links(host: Host) -> None:
    status, _headers, page = http(host.address, "/httpbin/", SERVER_NAME)
    assert status == 200
    links = set(re.findall(r'href="(/[^"]*)"', page))
    assert links and all(link.startswith("/httpbin/") for link in links), links
    status, _headers, body = http(host.address, "/httpbin/get", SERVER_NAME)
    assert json.loads(body)["url"] == f"https://{SERVER_NAME}/httpbin/get"


def test_django_static_files_come_from_collectstatic_through_nginx(host: Host) -> None:
    status, _headers, page = http(host.address, "/mysite/admin/login/", SERVER_NAME)
    assert status == 200
    stylesheets = re.findall(r'href="([^"]+\.css)"', page)
    assert "/mysite/static/admin/css/base.css" in stylesheets
    for stylesheet in stylesheets:
        status, headers, _css = http(host.address, stylesheet, SERVER_NAME)
        assert status == 200 and headers["Content-Type"] == "text/css", stylesheet
        assert headers["Cache-Control"] == "max-age=604800", "nginx's expires, not Django's"
    built = host.ssh("stat -c '%U %a' /opt/mysite/current/build/static/admin/css/base.css")
    assert built.split() == ["root", "644"], "collected as the app, copied in as root's"


def test_django_migrations_ran_and_the_admin_logs_in_through_csrf(host: Host) -> None:
    shown = host.ssh(f"{GOLIVE} run mysite -- django-admin showmigrations auth")
    assert "[X] 0001_initial" in shown and "[ ]" not in shown
    host.ssh(f"{GOLIVE} run mysite -- django-admin shell", stdin=CREATE_SUPERUSER)
    browser = Browser(host.address, SERVER_NAME)
    status, headers, _page = browser.post_form(
        "/mysite/admin/login/", "/mysite/admin/login/?next=/mysite/admin/",
        {"username": "admin", "password": ADMIN_PASSWORD, "next": "/mysite/admin/"},
        token_field="csrfmiddlewaretoken")
    assert status == 302 and headers["Location"] == "/mysite/admin/", _page[-2000:]
    status, _headers, page = browser.request("GET", "/mysite/admin/")
    assert status == 200 and "Site administration" in page
    forged = Browser(host.address, SERVER_NAME)
    status, _headers, _page = forged.post_form(
        "/mysite/admin/login/", "/mysite/admin/login/",
        {"username": "admin", "password": ADMIN_PASSWORD}, origin="https://evil.test",
        token_field="csrfmiddlewaretoken")
    assert status == 403, "another origin's post is refused"


def test_a_django_release_with_a_new_migration_goes_live_under_load(
        host: Host, tmp_path: Path) -> None:
    source = tmp_path / "mysite"
    shutil.copytree(REPO / "apps/mysite", source,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.sqlite3"))
    notes = source / "notes"
    (notes / "migrations").mkdir(parents=True)
    (notes / "__init__.py").write_text("")
    (notes / "migrations/__init__.py").write_text("")
    (notes / "models.py").write_text(NOTES_MODEL)
    (notes / "migrations/0001_initial.py").write_text(
        "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n"
        "    initial = True\n    dependencies = []\n    operations = [migrations.CreateModel("
        "name='Note', fields=[('id', models.BigAutoField(auto_created=True, primary_key=True,"
        " serialize=False)), ('text', models.CharField(max_length=200))])]\n")
    settings = source / "mysite/settings.py"
    settings.write_text(settings.read_text().replace(
        "'django.contrib.staticfiles',\n", "'django.contrib.staticfiles',\n    'notes',\n"))
    before = host.live("mysite")
    with Load(host.address, "/mysite/admin/login/", SERVER_NAME) as load:
        host.deploy({**DJANGO, "source": str(source)}, HTTPBIN).succeeded()
    assert load.result.requests > 50 and load.result.failures == 0, load.result
    version = host.live("mysite").removeprefix("releases/")
    assert f"releases/{version}" != before
    assert "[X] 0001_initial" in host.ssh(f"{GOLIVE} run mysite -- django-admin"
                                          " showmigrations notes")
    assert host.ssh(f"ls /var/lib/mysite/backups/ | grep -c 'before-{version}'").strip() == "1"
    css = "build/static/admin/css/base.css"  # collected again, the same bytes: stored once
    same = host.ssh(f"stat -c %i /opt/mysite/{before}/{css} /opt/mysite/releases/{version}/{css}")
    assert len(set(same.split())) == 1, same


def test_a_missing_build_dir_or_failing_build_command_stops_the_host_naming_the_app(
        host: Host, tmp_path: Path) -> None:
    source = tmp_path / "mysite-next"
    shutil.copytree(REPO / "apps/mysite", source,
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.sqlite3"))
    (source / "mysite/changed.py").write_text("CHANGED = True\n")  # a new release
    live = host.live("mysite")
    missing = host.deploy({**DJANGO, "source": str(source),
                           "static": {"/static/": "build/static", "/media/": "build/media"}})
    assert missing.returncode != 0
    assert "apps[mysite].static: /media/ -> build/media: no such dir in the release" in \
        missing.output
    failing = host.deploy({**DJANGO, "source": str(source),
                           "build_commands": [["django-admin", "no-such-command"]]})
    assert failing.returncode != 0
    assert "mysite" in failing.output and "the build command `django-admin no-such-command`" \
        " failed" in failing.output
    assert host.live("mysite") == live, "nothing switched"
    status, _headers, _page = http(host.address, "/mysite/admin/login/", SERVER_NAME)
    assert status == 200


def test_a_lost_host_comes_back_with_every_apps_data_from_the_backup_host(host: Host) -> None:
    """Every SQLite database in an app's data dir (FlaskTODO's, Django's, one named
    db.sqlite3 as Django's default is) and its other files (uploads), sent by the timer's
    run, come back on a bare host put where the host was lost: a deploy says to restore and
    sends nothing over them, the restore brings them back, the apps serve them."""
    status, _headers, body = http(host.address, "/flasktodo/api/items", SERVER_NAME,
                                  method="POST", data=b'{"title": "kept off the host"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 201, body
    host.ssh("cd / && runuser -u mysite -- python3 -", stdin=(
        "import sqlite3\nwith sqlite3.connect('/var/lib/mysite/db.sqlite3') as c:\n"
        "    c.execute('CREATE TABLE t (v TEXT)')\n"
        "    c.execute(\"INSERT INTO t VALUES ('any name')\")\n"))
    host.ssh("cd / && runuser -u mysite -- mkdir /var/lib/mysite/media && echo 'an upload'"
             " | runuser -u mysite -- tee /var/lib/mysite/media/upload.txt >/dev/null")
    host.ssh("systemctl start wsgistack-app-backups.service")
    stored = host.sandbox.ssh(host.sandbox.host("staging-backup1"),
                              "find /srv/wsgistack-backups -type f | wc -l;"
                              " grep -rl -e 'kept off the host' -e 'an upload'"
                              " /srv/wsgistack-backups || true").stdout.split()
    assert int(stored[0]) > 5 and stored[1:] == [], "there, and unreadable without the key"
    summary = host.deploy(DJANGO, HTTPBIN).succeeded().output
    assert re.search(r"apps' data last sent to the backup host: flasktodo \S+ \S+ UTC, mysite"
                     r" \S+ \S+ UTC, httpbin \S+ \S+ UTC", summary), summary[-1500:]
    sandbox_cli(NAME, "replace", "staging1")
    refused = host.deploy(DJANGO, HTTPBIN)
    assert refused.returncode != 0 and "app data from before this host" in refused.output
    preview = host.deploy(DJANGO, HTTPBIN, dry=True, entry="restore.py",
                          data=("--data", "restore_to=latest")).succeeded().output
    for app in ("flasktodo", "mysite", "httpbin"):
        assert re.search(rf"Restore {app}'s data to latest from the backup host, and start it:"
                         r" backup [0-9a-f]{8} of \S+ \S+ UTC, \d+ files \(.+\): \d+"
                         r" replace the data dir's, \d+ are added; \d+ not in it stay", preview), \
            preview
    assert re.search(r"Restore mysite's data .*: \d+ replace the data dir's, [1-9]\d* are"
                     r" added", preview), "its upload, which the new host lacks"
    assert host.ssh("ls /var/lib/mysite/media 2>&1 || true").startswith("ls: cannot access"), \
        "a preview restores nothing"
    host.deploy(DJANGO, HTTPBIN, entry="restore.py", data=("--data", "restore_to=latest")
                ).succeeded()
    status, _headers, body = http(host.address, "/flasktodo/api/items", SERVER_NAME)
    assert "kept off the host" in [item["title"] for item in json.loads(body)["items"]]
    assert host.ssh(f"{GOLIVE} run mysite -- django-admin shell -c \"from django.contrib.auth"
                    ".models import User; print(User.objects.filter(username='admin')"
                    ".exists())\"").split()[-1] == "True", "Django's admin user is back"
    assert host.ssh("cd / && runuser -u mysite -- python3 -", stdin=(
        "import sqlite3\nprint(sqlite3.connect('/var/lib/mysite/db.sqlite3')"
        ".execute('SELECT v FROM t').fetchone()[0])\n")).strip() == "any name"
    assert host.ssh("cat /var/lib/mysite/media/upload.txt") == "an upload\n"
    host.deploy(DJANGO, HTTPBIN).succeeded()
    assert host.deploy(DJANGO, HTTPBIN).succeeded().changed_ops() == []


def test_one_app_is_restored_alone_and_the_others_go_on(host: Host) -> None:
    """`app=mysite`: its data dir back as its newest backup, its program stopped meanwhile;
    FlaskTODO, on the same host, keeps serving and keeps what it wrote since."""
    host.ssh("systemctl start wsgistack-app-backups.service")
    host.ssh("echo 'changed after the backup' | runuser -u mysite -- tee"
             " /var/lib/mysite/media/upload.txt >/dev/null")
    status, _headers, body = http(host.address, "/flasktodo/api/items", SERVER_NAME,
                                  method="POST", data=b'{"title": "written since"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 201, body
    started = host.ssh("systemctl show -p ActiveEnterTimestampMonotonic supervisor;"
                       " supervisorctl pid flasktodo")
    run = host.deploy(DJANGO, HTTPBIN, entry="restore.py",
                      data=("--data", "restore_to=latest", "--data", "app=mysite")).succeeded()
    assert "Restore mysite's data" in run.output and "Restore flasktodo" not in run.output
    assert host.ssh("cat /var/lib/mysite/media/upload.txt") == "an upload\n"
    assert host.ssh("systemctl show -p ActiveEnterTimestampMonotonic supervisor;"
                    " supervisorctl pid flasktodo") == started, "FlaskTODO never stopped"
    status, _headers, body = http(host.address, "/flasktodo/api/items", SERVER_NAME)
    assert "written since" in [item["title"] for item in json.loads(body)["items"]]


def test_a_secret_set_with_the_vault_command_reaches_the_app_and_a_wrong_key_stops_first(
        host: Host, tmp_path: Path) -> None:
    """`python -m wsgistack.config.vault set` (the value on stdin) into a stack's file that
    holds no plaintext; the deploy reads it ahead of secrets_dir and the app has it; a wrong
    key stops the run in one line naming the stack, before any host is connected."""
    value = "a-secret-key-from-the-encrypted-file-0123456789-abcdefgh"
    stack = tmp_path / "staging.toml"
    data = ("--data", f"secrets_file={stack}")
    done = subprocess.run([sys.executable, "-m", "wsgistack.config.vault", "set", "staging",
                           "flasktodo", "SECRET_KEY", f"--data=secrets_dir={host.secrets_dir}",
                           f"--data=secrets_file={stack}"], input=value, cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert value not in stack.read_text(), "safe to commit"
    host.deploy(DJANGO, HTTPBIN, data=data).succeeded()
    assert value in host.ssh("cat /etc/flasktodo/env")
    wrong = deploy(host.sandbox, "-y", "--limit", "staging", *data,
                   secrets_dir=host.secrets_dir,
                   extra_env={"STAGING_SECRETS_KEY": "not-the-key-of-staging-0123456789-abc"})
    assert wrong.returncode != 0, wrong.output
    assert f"staging: the key does not open {stack}" in wrong.output
    assert "Connecting to hosts" not in wrong.output and value not in wrong.output


def test_destroy_keeps_every_apps_data_and_the_backups_then_purge_takes_them(
        host: Host) -> None:
    """destroy.py on staging (a web host with three apps, and its backup host): previewed
    exactly; each app's data, its backups and the senders' accounts kept; with purge both
    hosts as they were before the first deploy."""
    dry = host.deploy(DJANGO, HTTPBIN, dry=True, entry="destroy.py").succeeded()
    done = host.deploy(DJANGO, HTTPBIN, entry="destroy.py").succeeded()
    assert dry.preview() == done.preview()
    backup = host.sandbox.hosts("staging-backup")[0]
    assert "- Remove the drop-in that keeps the senders off the host's own sshd, and reload" \
           " it" in done.preview()[backup["name"]][1]
    for each in host.sandbox.hosts():
        assert left_by_destroy(host.bare[each["name"]], footprint(host.sandbox, each),
                               ["flasktodo", "mysite", "httpbin"]) == set(), each["name"]
    assert host.ssh("ls /var/lib/mysite"), "mysite's data kept"
    assert host.sandbox.ssh(backup, "ls /srv/wsgistack-backups").stdout.split(), "the backups"
    host.deploy(DJANGO, HTTPBIN, entry="destroy.py", data=("--data", "purge=true")).succeeded()
    for each in host.sandbox.hosts():
        assert footprint(host.sandbox, each) == host.bare[each["name"]], each["name"]
