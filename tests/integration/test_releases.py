"""Releases, rollback, data that survives, two apps on one host, and removal, on a real host.

A sandbox of its own (one staging host) is deployed with FlaskTODO 1.0.0 and given some
items; the tests then move it through releases in this order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import (
    Run,
    Sandbox,
    app_release,
    apps_data,
    deploy,
    http,
    own_sandbox,
    wait_for_http_ok,
)
from tests.integration.load import Load
from tests.unit.test_settings import group_data

NAME, SUBNET = "irel", "10.185.0.0/24"
SERVER_NAME = "staging.flasktodo.test"
READ_ITEMS = ("python3 -c 'import json, sqlite3, sys; print(json.dumps(sorted(r[0] for r in"
              " sqlite3.connect(sys.argv[1]).execute(\"select title from items\"))))'")


class Host:
    """The releases sandbox's one host, and ways to deploy to it and look at it."""

    def __init__(self, sandbox: Sandbox, secrets_dir: Path, sources: Path) -> None:
        self.sandbox, self.secrets_dir, self.sources = sandbox, secrets_dir, sources
        self.host = sandbox.hosts("staging")[0]
        self.address = self.host["address"]

    def run(self, entry: str, *args: str) -> Run:
        return deploy(self.sandbox, "-y", *args, secrets_dir=self.secrets_dir, entry=entry)

    def deploy(self, version: str, *args: str) -> Run:
        source = app_release(self.sources, version)
        return self.run("deploy.py", "--data", apps_data(source), *args)

    def two_apps(self, second: dict, *args: str) -> Run:
        """FlaskTODO 1.5.0 as group data declares it, and a second entry built on it."""
        entry = {**group_data("staging")["apps"][0],
                 "source": str(app_release(self.sources, "1.5.0"))}
        apps = "apps=" + json.dumps([entry, {**entry, **second}])
        return self.run("deploy.py", "--data", apps, "--data", "keep_releases=1", *args)

    def rollback(self, *args: str) -> Run:
        return self.run("rollback.py", *args)

    def ssh(self, command: str) -> str:
        return self.sandbox.ssh(self.host, command).stdout.strip()

    def get(self, path: str) -> tuple[int, str]:
        status, _headers, body = http(self.address, path, SERVER_NAME)
        return status, body

    def version(self, prefix: str = "/flasktodo") -> str:
        return json.loads(self.get(f"{prefix}/healthz")[1])["version"]

    def titles(self, prefix: str = "/flasktodo") -> list[str]:
        return sorted(item["title"] for item in json.loads(self.get(f"{prefix}/api/items")[1])
                      ["items"])

    def add(self, title: str, prefix: str = "/flasktodo") -> None:
        status, _headers, _body = http(self.address, f"{prefix}/api/items", SERVER_NAME, "POST",
                                       json.dumps({"title": title}).encode(),
                                       {"Content-Type": "application/json"})
        assert status == 201


@pytest.fixture(scope="module")
def host(secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Host:
    with own_sandbox(NAME, SUBNET, "staging=1") as sandbox:
        host = Host(sandbox, secrets_dir, tmp_path_factory.mktemp("sources"))
        host.deploy("1.0.0").succeeded()
        for title in ("first", "second", "third"):
            host.add(title)
        yield host


def test_a_rollback_keeps_every_item_and_drops_no_request(host: Host) -> None:
    items = host.titles()
    upgrade = host.deploy("1.1.0")
    assert upgrade.returncode == 0, upgrade.output[-3000:]
    assert host.version() == "1.1.0" and host.titles() == items
    with Load(host.address, "/flasktodo/healthz", SERVER_NAME) as load:
        rollback = host.rollback()
    assert rollback.returncode == 0, rollback.output[-3000:]
    assert load.result.requests > 200 and load.result.failures == 0, load.result
    assert host.version() == "1.0.0"
    assert host.ssh("readlink /opt/flasktodo/current") == "releases/1.0.0"
    assert host.titles() == items


def test_the_backup_taken_before_a_switch_restores_the_same_items(host: Host) -> None:
    backups = host.ssh("ls -1t /var/lib/flasktodo/backups/").split()
    assert len(backups) == 2, backups  # before 1.1.0, and before the rollback to 1.0.0
    assert backups[0].endswith("-before-1.0.0.sqlite3")
    assert host.ssh("stat -c %U /var/lib/flasktodo/backups/" + backups[0]) == "flasktodo"
    restored = host.ssh(f"cp /var/lib/flasktodo/backups/{backups[0]} /tmp/restored.sqlite3"
                        f" && {READ_ITEMS} /tmp/restored.sqlite3")
    assert json.loads(restored) == host.titles()


def test_n_plus_2_deploys_leave_n_releases(host: Host) -> None:
    for version in ("1.2.0", "1.3.0", "1.4.0"):
        preview = host.deploy(version, "--data", "keep_releases=2", "--dry")
        run = host.deploy(version, "--data", "keep_releases=2")
        assert run.returncode == 0, run.output[-3000:]
        assert run.preview() == preview.preview(), "a new release: what the preview said"
    [(counts, lines)] = [each for name, each in run.preview().items() if name != "in all"]
    assert "+ App user, config and release | Install flasktodo 1.4.0 as a new release (its own" \
           " venv)" in lines and counts["create"] >= 2
    assert host.ssh("ls /opt/flasktodo/releases").split() == ["1.3.0", "1.4.0"]
    assert host.version() == "1.4.0"


def test_a_new_version_is_sent_only_its_own_wheel_and_each_wheel_is_stored_once(
        host: Host) -> None:
    """After the last test's 1.2.0 to 1.4.0, which kept two releases (same lock)."""
    sent = host.ssh("tar -tf /opt/flasktodo/wheelhouse.tar").split()
    [app_wheel] = [name for name in sent if name != "requirements.txt"]
    assert sorted(sent) == sorted(["requirements.txt", app_wheel])
    assert app_wheel.endswith("-flasktodo-1.4.0-py3-none-any.whl")
    listed = host.ssh("stat -c '%i %h %n' /opt/flasktodo/wheels/* /opt/flasktodo/releases/*/"
                      "wheels/*").splitlines()
    inodes = {path: (inode, int(links)) for inode, links, path in map(str.split, listed)}
    stored = {path: each for path, each in inodes.items() if "/releases/" not in path}
    held = {path: each for path, each in inodes.items() if "/releases/" in path}
    assert {inode for inode, _links in held.values()} == {inode for inode, _ in stored.values()}
    for path, (inode, links) in stored.items():
        holders = [each for each, (held_inode, _) in held.items() if held_inode == inode]
        assert links == 1 + len(holders), (path, holders)  # the store's, and each release's
    shared = [path for path, (_inode, links) in stored.items() if links == 3]
    assert any("-flask-" in path for path in shared), "both releases hold one Flask wheel"
    assert f"/opt/flasktodo/releases/1.4.0/wheels/{app_wheel.split('-', 1)[1]}" in held


def test_redeploying_the_live_version_changes_nothing(host: Host) -> None:
    assert host.deploy("1.4.0", "--data", "keep_releases=2").changed_ops() == []


def test_a_rollback_with_nothing_older_changes_nothing(host: Host) -> None:
    assert host.deploy("1.5.0", "--data", "keep_releases=1").returncode == 0
    assert host.ssh("ls /opt/flasktodo/releases").split() == ["1.5.0"]
    master = host.ssh("cat /run/flasktodo/gunicorn.pid")
    run = host.rollback()
    assert run.returncode != 0
    assert "nothing to roll back to: flasktodo has no release older than the live 1.5.0" \
        in run.output
    assert host.ssh("readlink /opt/flasktodo/current") == "releases/1.5.0"
    assert host.ssh("cat /run/flasktodo/gunicorn.pid") == master
    assert host.version() == "1.5.0"


def test_two_apps_on_one_host_then_one_removed_keeping_its_data(host: Host) -> None:
    both = host.two_apps({"name": "todo2", "prefix": "/todo2", "port": 8005})
    assert both.returncode == 0, both.output[-3000:]
    assert host.version("/todo2") == "1.5.0" and host.version() == "1.5.0"
    host.add("only in todo2", "/todo2")
    assert "only in todo2" in host.titles("/todo2") and "only in todo2" not in host.titles()
    users = host.ssh("ps -eo user:20=,args= | grep '[g]unicorn --config'")
    assert {line.split()[0] for line in users.splitlines()} == {"flasktodo", "todo2"}

    preview = host.two_apps({"name": "todo2", "state": "absent"}, "--dry")
    removed = host.two_apps({"name": "todo2", "state": "absent"})
    assert removed.returncode == 0, removed.output[-3000:]
    assert removed.preview() == preview.preview(), "a removed app: what the preview said"
    assert any(line.startswith("- Remove todo2: program, code and config")
               for _counts, lines in removed.preview().values() for line in lines)
    assert host.get("/todo2/")[0] == 404
    wait_for_http_ok(host.address, "/flasktodo/healthz", 5, host_header=SERVER_NAME)
    assert "no such process" in host.sandbox.ssh(
        host.host, "supervisorctl status todo2", check=False).stdout.lower()
    gone = "/opt/todo2 /etc/todo2 /etc/supervisor/conf.d/todo2.conf /etc/tmpfiles.d/todo2.conf"
    assert host.ssh(f"for p in {gone}; do [ -e $p ] && echo $p; done; true") == ""
    assert "only in todo2" in host.ssh(f"{READ_ITEMS} /var/lib/todo2/todo2.sqlite3")
    again = host.two_apps({"name": "todo2", "state": "absent"})
    assert again.changed_ops() == []

    purge = host.two_apps({"name": "todo2", "state": "absent", "purge": True})
    assert purge.returncode == 0, purge.output[-3000:]
    assert host.ssh("[ -e /var/lib/todo2 ] && echo data; id todo2 2>/dev/null; true") == ""
    assert host.version() == "1.5.0"


def test_logs_are_capped_and_rotated(host: Host) -> None:
    program = host.ssh("cat /etc/supervisor/conf.d/flasktodo.conf")
    assert "stdout_logfile_maxbytes=10MB" in program and "stdout_logfile_backups=5" in program
    rotation = host.ssh("logrotate --debug /etc/logrotate.d/nginx 2>&1")
    for log in ("wsgistack.access.log", "wsgistack.error.log", "flasktodo.access.log"):
        assert f"/var/log/nginx/{log}" in rotation, log
