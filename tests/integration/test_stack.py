"""The deployed stack on real sandbox hosts: nginx -> gunicorn -> FlaskTODO under supervisor.

The session's `deployment` (conftest) does, in order, what an operator does on new
servers: a dry run on bare hosts (which must change nothing), a real deploy, a second
deploy (which must change nothing) and a dry run on converged hosts (which must plan
nothing). The tests then check the hosts themselves.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import time
from pathlib import PurePosixPath

import pytest

from tests.integration.helpers import (
    FLASKTODO_VERSION,
    PRODUCTION_SECRET_KEY,
    Browser,
    Deployment,
    Sandbox,
    deploy,
    footprint,
    http,
    sandbox_cli,
    wait_for_http_ok,
)
from tests.unit.test_settings import group_data
from wsgistack.onhost.golive.layout import tls_paths

PREFIX = "/flasktodo"
SERVER_NAMES = {"staging": "staging.flasktodo.test", "production": "flasktodo.test"}
WORKERS = {"staging": 2, "production": 4}
def group_of(host: dict) -> str:
    return host["group"]


def test_dry_run_on_bare_hosts_lists_changes_and_changes_nothing(deployment: Deployment) -> None:
    run = deployment.bare_dry_run
    assert run.returncode == 0, run.output[-3000:]
    planned = "\n".join(run.planned_changes())
    for operation in ("Start installing nginx, supervisor, python3-venv, logrotate",
                      "Wait for nginx, supervisor, python3-venv, logrotate to be installed",
                      "Write the wsgistack candidate nginx site",
                      "Write the flasktodo candidate supervisor program",
                      f"Install flasktodo {FLASKTODO_VERSION} as a new release",
                      f"Switch flasktodo to {FLASKTODO_VERSION}", "Apply the wsgistack nginx site"):
        assert operation in planned
    assert deployment.bare_before == deployment.bare_after


def test_first_deploy_reports_every_host_healthy(deployment: Deployment) -> None:
    summary = deployment.first.output.split("--> Deploy summary", 1)[1]
    for host in deployment.sandbox.hosts():
        line = next(line for line in summary.splitlines() if host["name"] + ":" in line)
        assert f"https://{SERVER_NAMES[host['group']]}{PREFIX}/ ({host['address']})" in line
        assert f"flasktodo {FLASKTODO_VERSION}" in line and line.endswith("healthy")


def test_second_run_changes_nothing(deployment: Deployment) -> None:
    assert deployment.second.returncode == 0, deployment.second.output[-3000:]
    assert deployment.second.changed_ops() == []
    assert re.search(r"Grand total\s+\d+\s+-\s+-\s+\d+", deployment.second.output)


def test_dry_run_on_converged_hosts_plans_nothing(deployment: Deployment) -> None:
    assert deployment.converged_dry_run.returncode == 0
    assert "--> Detected changes:" in deployment.converged_dry_run.output
    assert deployment.converged_dry_run.planned_changes() == []


# What Debian's packages do themselves on a bare host, which no preview can read before they
# are installed: nginx's default site, and the services their packages start.
MADE_BY_PACKAGES = {"- nginx site | Disable Debian's default nginx site",
                    "~ Base packages and services | Keep nginx running and enabled at boot",
                    "~ Base packages and services | Keep supervisor running and enabled at boot"}


def test_a_first_deploys_preview_names_what_it_then_created(deployment: Deployment) -> None:
    """Each resource the preview of bare hosts names is what the deploy then changed, but
    for what Debian's packages did themselves meanwhile."""
    planned, done = deployment.bare_dry_run.preview(), deployment.first.preview()
    for host in deployment.sandbox.hosts():
        (planned_counts, planned_lines), (done_counts, done_lines) = (
            planned[host["name"]], done[host["name"]])
        assert len(planned_lines) > 30 and planned_counts["create"] > 30
        assert set(planned_lines) ^ set(done_lines) <= MADE_BY_PACKAGES, host["name"]
        assert planned_counts["create"] == done_counts["create"]
        assert "+ Base packages and services | Start installing nginx, supervisor," \
               " python3-venv, logrotate (in the background, while the deploy goes on)" \
               in done_lines


def test_a_converged_run_and_its_preview_say_no_changes(deployment: Deployment) -> None:
    second, dry = deployment.second.preview(), deployment.converged_dry_run.preview()
    assert second == dry, "the same resources, all unchanged"
    for counts, lines in dry.values():
        assert lines == [] and list(counts) == ["unchanged"] and counts["unchanged"] > 20
    assert re.search(r"\n    in all: no changes, \d+ resources unchanged\n",
                     deployment.converged_dry_run.output)


@pytest.fixture(params=["staging", "production"])
def host(request: pytest.FixtureRequest, deployment: Deployment) -> dict:
    return deployment.sandbox.hosts(request.param)[0]


def test_todo_page_through_nginx_with_prefixed_links(deployment: Deployment, host: dict) -> None:
    status, headers, page = http(host["address"], f"{PREFIX}/", SERVER_NAMES[host["group"]])
    assert status == 200 and "<h1>" in page and "FlaskTODO" in page
    assert headers["Server"].startswith("nginx")
    urls = re.findall(r'(?:href|action)="([^"]+)"', page)
    assert urls and all(url.startswith(f"{PREFIX}/") for url in urls), urls


def test_adding_an_item_over_http_and_reading_it_back(deployment: Deployment, host: dict) -> None:
    name = SERVER_NAMES[host["group"]]
    title = f"buy milk {time.time_ns()}"
    browser = Browser(host["address"], name)
    status, headers, _ = browser.post_form(f"{PREFIX}/", f"{PREFIX}/items", {"title": title})
    assert status == 302 and headers["Location"].endswith(f"{PREFIX}/")
    assert title in http(host["address"], f"{PREFIX}/", name)[2]
    status, _, body = http(host["address"], f"{PREFIX}/api/items", name, "POST",
                           json.dumps({"title": "via api"}).encode(),
                           {"Content-Type": "application/json"})
    item = json.loads(body)
    assert status == 201
    # The app sees the controller's real address through nginx, not nginx's 127.0.0.1.
    assert item["created_from"] == deployment.sandbox.manifest["hosts"][0]["address"].rsplit(
        ".", 1)[0] + "." + str(int(host["address"].rsplit(".", 1)[1]) - 1)
    items = json.loads(http(host["address"], f"{PREFIX}/api/items", name)[2])["items"]
    assert {"via api", title} <= {i["title"] for i in items}


def test_static_files_are_served_by_nginx_even_without_gunicorn(deployment: Deployment,
                                                                host: dict) -> None:
    sandbox, name = deployment.sandbox, SERVER_NAMES[host["group"]]
    sandbox.ssh(host, "supervisorctl stop flasktodo")
    try:
        assert http(host["address"], f"{PREFIX}/", name)[0] == 502, "gunicorn is really down"
        status, headers, css = http(host["address"], f"{PREFIX}/static/style.css", name)
        assert status == 200 and "font-family" in css
        assert "max-age=604800" in headers["Cache-Control"] and "Expires" in headers
    finally:
        sandbox.ssh(host, "supervisorctl start flasktodo")
    wait_for_http_ok(host["address"], f"{PREFIX}/healthz", 15, host_header=name)


def test_gunicorn_answers_only_on_the_hosts_loopback(deployment: Deployment, host: dict) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host["address"], 8004), timeout=5)
    sockets = deployment.sandbox.ssh(host, "ss -Hltn sport = :8004").stdout.splitlines()
    assert [line.split()[3] for line in sockets] == ["127.0.0.1:8004"]


def test_supervisor_runs_gunicorn_as_the_app_user(deployment: Deployment, host: dict) -> None:
    sandbox = deployment.sandbox
    assert "RUNNING" in sandbox.ssh(host, "supervisorctl status flasktodo").stdout
    check = sandbox.testinfra(host)
    master = int(check.file("/run/flasktodo/gunicorn.pid").content_string)
    processes = sandbox.ssh(host, "ps -eo pid=,ppid=,user:32=,args=").stdout.splitlines()
    gunicorns = [p.split(None, 3) for p in processes
                 if "/opt/flasktodo/current/venv/bin/gunicorn" in p]
    assert {user for _pid, _ppid, user, _args in gunicorns} == {"flasktodo"}
    workers = [g for g in gunicorns if int(g[1]) == master]
    assert len(workers) == WORKERS[host["group"]]
    # supervisor's own child is gunicorn-herder, the master's parent.
    herder = next(g for g in gunicorns if int(g[0]) != master and g not in workers)
    assert "gunicorn-herder run" in herder[3] and herder[2] == "flasktodo"
    assert sandbox.ssh(host, "supervisorctl pid flasktodo").stdout.strip() == herder[0]
    assert check.user("flasktodo").shell == "/usr/sbin/nologin"


def test_files_have_their_owners_and_modes(deployment: Deployment, host: dict) -> None:
    check = deployment.sandbox.testinfra(host)
    expected = {
        "/etc/flasktodo": ("root", "flasktodo", 0o750),
        "/etc/flasktodo/config.py": ("root", "flasktodo", 0o640),
        "/opt/flasktodo": ("root", "root", 0o755),
        "/var/lib/flasktodo": ("flasktodo", "flasktodo", 0o750),
        "/var/lib/flasktodo/flasktodo.sqlite3": ("flasktodo", "flasktodo", None),
        "/etc/supervisor/conf.d/flasktodo.conf": ("root", "root", 0o644),
    }
    for path, (user, group, mode) in expected.items():
        file = check.file(path)
        assert (file.user, file.group) == (user, group), path
        assert mode is None or file.mode == mode, path
    release = f"/opt/flasktodo/releases/{FLASKTODO_VERSION}"
    assert check.file("/opt/flasktodo/current").linked_to == release
    assert check.file(f"{release}/venv/bin/gunicorn").user == "root"
    assert check.file("/etc/nginx/sites-enabled/wsgistack").linked_to == \
        "/etc/nginx/sites-available/wsgistack"
    assert not check.file("/etc/nginx/sites-enabled/default").exists
    assert check.file("/var/log/nginx/flasktodo.access.log").exists


def test_each_group_gets_its_own_group_data(deployment: Deployment, host: dict) -> None:
    check = deployment.sandbox.testinfra(host)
    site = check.file("/etc/nginx/sites-available/wsgistack").content_string
    assert f"server_name {SERVER_NAMES[host['group']]}" in site
    gunicorn = check.file("/etc/flasktodo/gunicorn.conf.py").content_string
    assert f"workers = {WORKERS[host['group']]}" in gunicorn
    config = deployment.sandbox.ssh(host, "cat /etc/flasktodo/config.py").stdout
    if host["group"] == "production":
        assert f'SECRET_KEY = "{PRODUCTION_SECRET_KEY}"' in config
    else:
        generated = (deployment.secrets_dir / "staging" / "flasktodo.secret_key").read_text()
        assert f'SECRET_KEY = "{generated.strip()}"' in config


def test_supervisor_brings_a_killed_master_back(deployment: Deployment, host: dict) -> None:
    sandbox, name = deployment.sandbox, SERVER_NAMES[host["group"]]
    def pid_file() -> str:
        return sandbox.ssh(host, "cat /run/flasktodo/gunicorn.pid").stdout.strip()

    master = pid_file()
    sandbox.ssh(host, f"kill -9 {master}")
    # The killed master's workers may still answer for a moment, so an answer alone proves
    # nothing: first supervisor's new master, alive, then the site through it.
    deadline = time.monotonic() + 10
    while (current := pid_file()) == master and time.monotonic() < deadline:
        time.sleep(0.2)
    assert current != master, "supervisor started no new gunicorn master within 10 s"
    sandbox.ssh(host, f"kill -0 {current}")
    wait_for_http_ok(host["address"], f"{PREFIX}/", 10, host_header=name)


def test_drift_is_reported_by_dry_run_and_repaired(deployment: Deployment) -> None:
    sandbox = deployment.sandbox
    host = sandbox.hosts("staging")[0]
    site = "/etc/nginx/sites-available/wsgistack"
    original = sandbox.ssh(host, f"cat {site}").stdout
    sandbox.ssh(host, f"sed -i 's/client_max_body_size .*;/client_max_body_size 99m;/' {site}")
    dry = deploy(sandbox, "--limit", "staging", "--dry", secrets_dir=deployment.secrets_dir)
    planned = "\n".join(dry.planned_changes())
    assert "Apply the wsgistack nginx site: nginx -t, reload" in planned
    assert "99m" in sandbox.ssh(host, f"cat {site}").stdout, "a dry run repairs nothing"
    repair = deployment.run("--limit", "staging")
    assert repair.returncode == 0
    assert sandbox.ssh(host, f"cat {site}").stdout == original
    assert "99m" not in sandbox.ssh(host, "nginx -T 2>/dev/null").stdout


def test_owner_mode_and_account_drift_is_reported_and_repaired(deployment: Deployment) -> None:
    """What the one-command read compares: a changed mode, owner or login shell makes the
    deploy call its operation again, in a dry run as in a real one."""
    sandbox = deployment.sandbox
    host = sandbox.hosts("staging")[0]
    herder = "/usr/local/lib/wsgistack/gunicorn-herder"
    sandbox.ssh(host, f"chmod 777 /etc/flasktodo && chown flasktodo /etc/ssl/wsgistack/private"
                      f" && chmod 644 {herder} && usermod -s /bin/bash flasktodo")
    dry = deploy(sandbox, "--limit", "staging", "--dry", secrets_dir=deployment.secrets_dir)
    planned = "\n".join(dry.planned_changes())
    for operation in ("Create /etc/flasktodo (config", "Create /etc/ssl/wsgistack/private",
                      "Install gunicorn-herder", "Make flasktodo the app's system user"):
        assert operation in planned, f"{operation!r} not planned:\n{planned}"
    repair = deployment.run("--limit", "staging")
    assert repair.returncode == 0, repair.output[-3000:]
    check = sandbox.testinfra(host)
    assert check.file("/etc/flasktodo").mode == 0o750
    assert check.file("/etc/ssl/wsgistack/private").user == "root"
    assert check.file(herder).mode == 0o755
    assert check.user("flasktodo").shell == "/usr/sbin/nologin"


def test_a_converged_host_is_read_with_one_command(deployment: Deployment) -> None:
    """Its state and its health reading in one command; no other command runs on it."""
    run = deployment.run("--limit", "staging", "-vv")
    assert run.returncode == 0, run.output[-3000:]
    assert run.changed_ops() == []
    loaded = [line for line in run.output.splitlines() if "Loaded fact" in line]
    assert len(loaded) == 1, "\n".join(loaded)
    assert "wsgistack.engine.hoststate.Batch" in loaded[0]
    assert run.output.count(">>> sh -c") == 1, "one command, the read"
    assert re.search(r"staging\S*: https://\S+ .*flasktodo \S+\s+healthy", run.output)


def test_an_untouched_but_unhealthy_host_fails_its_live_health_check(
        deployment: Deployment) -> None:
    """A converged host's health reading stands only when healthy: otherwise the live
    check runs, waits health_timeout, and fails the host."""
    sandbox = deployment.sandbox
    host = sandbox.hosts("staging")[0]
    stray = "/etc/nginx/conf.d/stray.conf"
    sandbox.ssh(host, f"echo 'server {{ listen 443 ssl; server_name staging.flasktodo.test;"
                      " ssl_certificate /etc/ssl/wsgistack/wsgistack.crt;"
                      " ssl_certificate_key /etc/ssl/wsgistack/private/wsgistack.key;"
                      f" return 503; }}' > {stray} && systemctl reload nginx")
    try:
        run = deployment.run("--limit", "staging", "--data", "health_timeout=2")
    finally:
        sandbox.ssh(host, f"rm {stray} && systemctl reload nginx")
    assert run.returncode != 0
    assert "health check failed: flasktodo through nginx" in run.output
    assert deployment.run("--limit", "staging").returncode == 0


def test_site_answers_after_a_reboot_without_a_deploy(deployment: Deployment) -> None:
    sandbox = deployment.sandbox
    host = sandbox.hosts("production")[-1]
    name = SERVER_NAMES["production"]
    items_before = http(host["address"], f"{PREFIX}/api/items", name)[2]
    sandbox_cli(sandbox.name, "restart", host["name"].split("-", 1)[1])
    wait_for_http_ok(host["address"], f"{PREFIX}/", 60, host_header=name)
    assert http(host["address"], f"{PREFIX}/api/items", name)[2] == items_before
    # RUNNING once gunicorn has stayed up for supervisor's startsecs.
    sandbox.ssh(host, "for i in $(seq 100); do supervisorctl status flasktodo | grep -q RUNNING"
                      " && exit 0; sleep 0.1; done; exit 1")


def master_pid(sandbox: Sandbox, host: dict) -> str:
    return sandbox.ssh(host, "cat /run/flasktodo/gunicorn.pid").stdout.strip()


def test_a_config_change_restarts_gunicorn_and_only_then(deployment: Deployment) -> None:
    sandbox = deployment.sandbox
    host = sandbox.hosts("staging")[0]
    before = master_pid(sandbox, host)
    preview = deployment.run("--limit", "staging", "--data", "gunicorn_timeout=31", "--dry")
    changed = deployment.run("--limit", "staging", "--data", "gunicorn_timeout=31")
    assert changed.returncode == 0, changed.output[-3000:]
    assert changed.preview() == preview.preview(), "the preview is what the run then did"
    assert {"~ App user, config and release | Write flasktodo's candidate gunicorn settings",
            f"~ Switch flasktodo to {FLASKTODO_VERSION}: load check, graceful reload (rollout"
            " batch 1)"} <= set(changed.preview()[host["name"]][1])
    assert f"Switch flasktodo to {FLASKTODO_VERSION}" in changed.output
    assert "timeout = 31" in sandbox.ssh(host, "cat /etc/flasktodo/gunicorn.conf.py").stdout
    assert master_pid(sandbox, host) != before
    restored = deployment.run("--limit", "staging")
    assert restored.returncode == 0 and master_pid(sandbox, host) != before
    unchanged_pid = master_pid(sandbox, host)
    assert deployment.run("--limit", "staging").changed_ops() == []
    assert master_pid(sandbox, host) == unchanged_pid


def test_a_live_release_is_never_reinstalled_in_place(deployment: Deployment) -> None:
    sandbox = deployment.sandbox
    host = sandbox.hosts("staging")[0]
    marker = f"/opt/flasktodo/releases/{FLASKTODO_VERSION}/.wheelhouse-digest"
    digest = sandbox.ssh(host, f"cat {marker}").stdout.strip()
    before = master_pid(sandbox, host)
    sandbox.ssh(host, f"echo other-bits > {marker}")
    try:
        run = deployment.run("--limit", "staging")
        assert run.returncode != 0
        assert f"flasktodo {FLASKTODO_VERSION} is live on this host and was built from other" \
               " sources or dependencies: give the app a new version" in run.output
        assert "Install flasktodo" not in run.output
        assert master_pid(sandbox, host) == before
        wait_for_http_ok(host["address"], f"{PREFIX}/healthz", 5,
                         host_header=SERVER_NAMES["staging"])
    finally:
        sandbox.ssh(host, f"echo {digest} > {marker}")
    assert deployment.run("--limit", "staging").changed_ops() == []


def test_bad_settings_stop_the_run_before_any_operation(deployment: Deployment) -> None:
    run = deployment.run("--limit", "staging", "--data", "http_port=0",
                         "--data", "gunicorn_workers=zero")
    assert run.returncode != 0
    assert "group_data (staging): http_port: 0 is invalid" in run.output
    assert "group_data (staging): gunicorn_workers: 'zero' is invalid" in run.output
    assert "Traceback" not in run.output and "Starting operation" not in run.output


def test_production_without_a_secret_stops_with_one_clear_line(deployment: Deployment) -> None:
    run = deploy(deployment.sandbox, "--limit", "production", "-y",
                 secrets_dir=deployment.secrets_dir,
                 extra_env={"PRODUCTION_FLASKTODO_SECRET_KEY": ""})
    assert run.returncode != 0
    assert "no secret SECRET_KEY: set PRODUCTION_FLASKTODO_SECRET_KEY" in run.output
    assert "Traceback" not in run.output and "Starting operation" not in run.output


# Run on a host as the app's user, with its live release's Python: the variables gunicorn's
# own config loader adds to the environment when it loads the config file in argv[1], as
# each gunicorn master does before it imports the app (/proc/<pid>/environ shows only what
# a process was exec'd with, not what Python set after).
LOADED_ENVIRONMENT = """
import json, os, sys
from gunicorn.app.base import Application
before = dict(os.environ)

class Loaded(Application):
    def load_config(self):
        self.load_config_from_file(sys.argv[1])

    def load(self):
        return None

Loaded()
print(json.dumps({name: value for name, value in os.environ.items() if before.get(name) != value}))
"""


def loaded_environment(deployment: Deployment, host: dict) -> dict[str, str]:
    command = ("cd /opt/flasktodo && runuser -u flasktodo --"
               f" /opt/flasktodo/current/venv/bin/python -c {shlex.quote(LOADED_ENVIRONMENT)}"
               " /etc/flasktodo/gunicorn.conf.py")
    return json.loads(deployment.sandbox.ssh(host, command).stdout)


def test_an_apps_variables_and_secrets_reach_its_process_and_nothing_else(
        deployment: Deployment) -> None:
    """env and secret_env in the app's entry: in the environment gunicorn's config gives the
    app (with the server names), from a root:app 0640 file; the secret in no output, argv
    or world-readable file. Taken out again, they are gone."""
    sandbox, host = deployment.sandbox, deployment.sandbox.hosts("staging")[0]
    token = f"api-token-{time.time_ns()}-abcdefghijklmnopqrstuvwxyz"
    entry = {**group_data("staging")["apps"][0], "env": {"GREETING": "hello from group data"},
             "secret_env": ["SECRET_KEY", "API_TOKEN"]}
    run = deployment.run("--limit", "staging", "--diff", "--data", "apps=" + json.dumps([entry]),
                         extra_env={"STAGING_FLASKTODO_API_TOKEN": token})
    assert run.returncode == 0, run.output[-3000:]
    assert token not in run.output
    env_file = sandbox.testinfra(host).file("/etc/flasktodo/env")
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "flasktodo", 0o640)
    loaded = loaded_environment(deployment, host)
    assert len(loaded.pop("SECRET_KEY")) >= 32, "FlaskTODO's own secret, in its secret_env"
    assert loaded == {"API_TOKEN": token, "GREETING": "hello from group data",
                      "WSGISTACK_SERVER_NAMES": "staging.flasktodo.test"}
    elsewhere = sandbox.ssh(host, "ps -eo args; cat /etc/supervisor/conf.d/*.conf;"
                                  " find / -xdev -type f -perm -o+r -newer /etc/flasktodo/env"
                                  " -size -1M -exec grep -l api-token- {} + 2>/dev/null || true")
    assert token not in elsewhere.stdout
    back = deployment.run("--limit", "staging")
    assert back.returncode == 0, back.output[-3000:]
    assert set(loaded_environment(deployment, host)) == {"SECRET_KEY",
                                                         "WSGISTACK_SERVER_NAMES"}


def test_an_app_with_no_health_endpoint_is_checked_at_its_prefix(deployment: Deployment) -> None:
    """Without a health_path the checks ask the prefix itself and take any answer below
    500 as healthy; the version, which the page does not report, is said so."""
    entry = {key: value for key, value in group_data("staging")["apps"][0].items()
             if key != "health_path"}
    run = deployment.run("--limit", "staging", "--data", "apps=" + json.dumps([entry]))
    assert run.returncode == 0, run.output[-3000:]
    [line] = [line for line in run.output.splitlines() if f"flasktodo {FLASKTODO_VERSION}" in line]
    assert line.endswith(f"flasktodo {FLASKTODO_VERSION} (not reported)  healthy"), line
    back = deployment.run("--limit", "staging")
    assert back.returncode == 0, back.output[-3000:]
    assert any(line.endswith(f"flasktodo {FLASKTODO_VERSION}  healthy")
               for line in back.output.splitlines())


def test_an_apps_own_limits_and_a_factory_with_arguments(deployment: Deployment) -> None:
    """An app's max_body_size is what nginx lets through to it (413 above it, never
    reaching gunicorn); a factory called with literal arguments is what gunicorn serves."""
    sandbox, host = deployment.sandbox, deployment.sandbox.hosts("staging")[0]
    name = "staging.flasktodo.test"
    entry = {**group_data("staging")["apps"][0], "max_body_size": "2k", "timeout": 40,
             "wsgi": "flasktodo:create_app(overrides=None)"}
    run = deployment.run("--limit", "staging", "--data", "apps=" + json.dumps([entry]))
    assert run.returncode == 0, run.output[-3000:]

    def post(size: int) -> int:
        body = json.dumps({"title": "x" * size}).encode()
        return http(host["address"], f"{PREFIX}/api/items", name, "POST", body,
                    {"Content-Type": "application/json"})[0]

    assert post(3000) == 413
    assert post(500) == 400, "reached the app, which refuses a title over 200 characters"
    assert "timeout = 40" in sandbox.ssh(host, "cat /etc/flasktodo/gunicorn.conf.py").stdout
    back = deployment.run("--limit", "staging")
    assert back.returncode == 0, back.output[-3000:]
    assert post(3000) == 400, "the site's 1m again"


def test_status_reads_each_host_with_one_command_and_says_what_runs_there(
        deployment: Deployment) -> None:
    """status.py: one command per host, nothing changed; each app's releases, program and
    health, the certificate's names and end, and the last go-live steps with who ran them,
    as the hosts themselves have them."""
    sandbox = deployment.sandbox
    run = deployment.run("--debug", entry="status.py")
    assert run.returncode == 0, run.output[-3000:]
    reads = re.findall(r"Running command on ([^:\s]+)", run.output)
    assert sorted(reads) == sorted(host["name"] for host in sandbox.hosts())
    status = run.output.split("\n--> Status\n", 1)[1]
    certificate, _key = tls_paths("wsgistack", PurePosixPath("/"))
    for host in sandbox.hosts():
        live = sandbox.ssh(host, "readlink /opt/flasktodo/current").stdout.strip()
        kept = sandbox.ssh(host, "ls /opt/flasktodo/releases").stdout.split()
        line = next(line for line in status.splitlines()
                    if line.startswith(f"    {host['name']}: flasktodo "))
        assert line.startswith(f"    {host['name']}: flasktodo {live.split('/')[-1]} live (kept")
        assert sorted(line.split("(kept ", 1)[1].split(")")[0].split(", ")) == sorted(kept)
        assert line.endswith(", RUNNING, healthy")
        ends = sandbox.ssh(host, f"date -u -d \"$(openssl x509 -noout -enddate -in {certificate}"
                                 " | cut -d= -f2)\" +%F").stdout.strip()
        names = ",".join(group_data(host["group"])["server_names"])
        assert f"    {host['name']}: certificate for {names}, ends {ends} (" in status
        steps = next(line for line in status.splitlines()
                     if line.startswith(f"    {host['name']}: last go-live steps: "))
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC root: switch flasktodo", steps)
        history = sandbox.ssh(host, "stat -c '%U %a' /var/log/wsgistack/history.log").stdout
        assert history.split() == ["root", "600"], "root's alone"


def kept_by_destroy(app: str) -> set[str]:
    """What destroy without purge leaves of a deploy: the app's data, its supervisor logs and
    its account (whose uid no other account may take while its files exist), and the
    deploy's history."""
    return {f"path /var/lib/{app} d {app} {app} 750",
            f"path /var/lib/{app}/backups d {app} {app} 750",
            f"path /var/lib/{app}/{app}.sqlite3 f {app} {app} 644",
            "path /var/log/supervisor d root adm 750",
            f"path /var/log/supervisor/{app}.err.log f root root 644",
            f"path /var/log/supervisor/{app}.out.log f root root 644",
            "path /var/log/wsgistack d root root 750",
            "path /var/log/wsgistack/history.log f root root 600"}


def test_destroy_takes_off_what_the_deploy_made_and_a_deploy_puts_it_back(
        deployment: Deployment) -> None:
    """destroy.py on staging: its preview is what it then removes; the host is then as bare
    but for the app's data (kept, and served again by the next deploy); a second run removes
    nothing; with purge=true the host is exactly as it was before the first deploy. Last
    the deploy puts it all back, as it found it."""
    sandbox = deployment.sandbox
    staging = sandbox.hosts("staging")[0]
    title = f"kept through destroy {time.time_ns()}"
    status, _, _ = http(staging["address"], f"{PREFIX}/api/items", SERVER_NAMES["staging"],
                        "POST", json.dumps({"title": title}).encode(),
                        {"Content-Type": "application/json"})
    assert status == 201
    destroy = ("--limit", "staging")
    dry = deployment.run(*destroy, "--dry", entry="destroy.py").succeeded()
    done = deployment.run(*destroy, entry="destroy.py").succeeded()
    (planned, planned_lines), (made, made_lines) = (
        dry.preview()[staging["name"]], done.preview()[staging["name"]])
    assert planned_lines == made_lines and planned == made and made["delete"] > 10
    assert "- Remove the account wsgistack-build" in made_lines
    assert any(line.startswith("- Purge the packages the deploy installed: ")
               and "nginx" in line for line in made_lines)
    left = footprint(sandbox, staging) - deployment.bare_staging
    accounts = {line for line in left if line.startswith(("user ", "group "))}
    assert left - accounts == kept_by_destroy("flasktodo")
    assert {line.split(":")[0] for line in accounts} == {"user flasktodo", "group flasktodo"}
    assert deployment.bare_staging - footprint(sandbox, staging) == set()
    again = deployment.run(*destroy, "--dry", entry="destroy.py").succeeded()
    assert again.preview()[staging["name"]][1] == [], "nothing left to remove"

    deployment.run("--limit", "staging").succeeded()
    assert title in http(staging["address"], f"{PREFIX}/", SERVER_NAMES["staging"])[2]
    deployment.run(*destroy, "--data", "purge=true", entry="destroy.py").succeeded()
    assert footprint(sandbox, staging) == deployment.bare_staging
    deployment.run("--limit", "staging").succeeded()
    assert title not in http(staging["address"], f"{PREFIX}/", SERVER_NAMES["staging"])[2]
