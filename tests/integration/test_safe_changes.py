"""Safe changes on real hosts: nothing broken goes live, and users never see a deploy.

A sandbox of its own (1 staging, 2 production) is deployed with FlaskTODO as it is; the tests
then redeploy it under HTTP load, with broken input, interrupted, with a failing host and
with a host down, in this order. Their releases are 9.x, above any version the tree has.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.helpers import (
    FLASKTODO_VERSION,
    REPO,
    Run,
    Sandbox,
    app_release,
    apps_data,
    deploy,
    deploy_command,
    http,
    own_sandbox,
    repo_copy,
    sandbox_cli,
    wait_for_http_ok,
)
from tests.integration.load import Load

NAME, SUBNET = "isafe", "10.182.0.0/24"
HEALTHZ = "/flasktodo/healthz"
SERVER_NAMES = {"staging": "staging.flasktodo.test", "production": "flasktodo.test"}
LOCK = "/run/wsgistack/deploy.lock"  # golive's


class Stack:
    """The safe-changes sandbox, deployed, and ways to redeploy and look at it."""

    def __init__(self, sandbox: Sandbox, secrets_dir: Path, releases: Path) -> None:
        self.sandbox, self.secrets_dir, self.releases = sandbox, secrets_dir, releases

    def deploy(self, *args: str, repo: Path = REPO) -> Run:
        return deploy(self.sandbox, *args, "-y", secrets_dir=self.secrets_dir, repo=repo)

    def release(self, version: str, broken: bool = False) -> str:
        return apps_data(app_release(self.releases, version, broken))

    def host(self, short_name: str) -> dict:
        return self.sandbox.host(short_name)

    def ssh(self, host: dict, command: str) -> str:
        return self.sandbox.ssh(host, command).stdout.strip()

    def healthz(self, host: dict) -> dict:
        status, _headers, body = http(host["address"], HEALTHZ, SERVER_NAMES[host["group"]])
        assert status == 200, body
        return json.loads(body)

    def supervised_pid(self, host: dict) -> str:
        """supervisor's process for the app (gunicorn-herder): new only if restarted."""
        return self.ssh(host, "supervisorctl pid flasktodo")

    def master_pid(self, host: dict) -> str:
        return self.ssh(host, "cat /run/flasktodo/gunicorn.pid")


@pytest.fixture(scope="module")
def stack(secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    with own_sandbox(NAME, SUBNET, "staging=1,production=2") as sandbox:
        stack = Stack(sandbox, secrets_dir, tmp_path_factory.mktemp("releases"))
        stack.deploy().succeeded()
        yield stack


def deploy_under_load(stack: Stack, host: dict, *args: str) -> tuple[Run, Load, float]:
    """Deploy while clients keep asking /healthz; returns when the deploy ended."""
    with Load(host["address"], HEALTHZ, SERVER_NAMES[host["group"]]) as load:
        run = stack.deploy("--limit", host["name"], *args)
        finished = time.monotonic()
    return run, load, finished


def assert_no_failed_request(load: Load) -> None:
    result = load.result
    assert result.requests > 200, "the load really ran"
    assert result.failures == 0, (result.statuses, result.errors)


def test_a_new_version_reaches_users_without_one_failed_request(stack: Stack) -> None:
    host = stack.host("staging1")
    supervised = stack.supervised_pid(host)
    run, load, finished = deploy_under_load(stack, host, "--data", stack.release("9.1.0"))
    assert run.returncode == 0, run.output[-5000:]
    assert_no_failed_request(load)
    versions = sorted(load.result.versions)
    assert versions[0][1] == f"{FLASKTODO_VERSION}", "the load started on the old version"
    assert {v for when, v in versions if when > finished} == {"9.1.0"}
    assert stack.healthz(host)["version"] == "9.1.0"
    # A graceful swap under the same supervised process, not a supervisor restart.
    assert stack.supervised_pid(host) == supervised
    assert stack.ssh(host, "readlink /opt/flasktodo/current") == "releases/9.1.0"


def test_a_gunicorn_setting_reaches_users_without_one_failed_request(stack: Stack) -> None:
    host = stack.host("staging1")
    supervised, master = stack.supervised_pid(host), stack.master_pid(host)
    run, load, _ = deploy_under_load(stack, host, "--data", stack.release("9.1.0"),
                                     "--data", "gunicorn_workers=3")
    assert run.returncode == 0, run.output[-5000:]
    assert_no_failed_request(load)
    new_master = stack.master_pid(host)
    assert new_master != master and stack.supervised_pid(host) == supervised
    workers = stack.ssh(host, f"ps --no-headers --ppid {new_master} -o pid").split()
    assert len(workers) == 3


def test_a_broken_nginx_template_never_goes_live(stack: Stack, tmp_path: Path) -> None:
    host = stack.host("staging1")
    site = "/etc/nginx/sites-available/wsgistack"
    live_before = stack.ssh(host, f"sha256sum {site}")
    broken = repo_copy(tmp_path)
    template = broken / "templates/etc/nginx/sites-available/site.j2"
    template.write_text(template.read_text().replace(
        "    client_max_body_size", "    client_max_body_sise", 1))
    release = ("--data", stack.release("9.1.0"), "--data", "gunicorn_workers=3")
    run = stack.deploy("--limit", host["name"], *release, repo=broken)
    assert run.returncode != 0
    assert f"{site}.next fails nginx -t; the live site is unchanged" in run.output
    assert f'unknown directive "client_max_body_sise" in {site}.next:' in run.output
    assert stack.ssh(host, f"sha256sum {site}") == live_before
    assert stack.ssh(host, "nginx -t 2>&1; echo rc=$?").endswith("rc=0"), \
        "no broken file left for the next restart"
    assert stack.healthz(host)["status"] == "ok"
    fixed = stack.deploy("--limit", host["name"], *release)
    assert fixed.returncode == 0, fixed.output[-3000:]
    assert stack.ssh(host, f"cmp {site}.next {site} && echo same") == "same"


def test_a_broken_release_fails_and_the_old_one_keeps_serving(stack: Stack) -> None:
    host = stack.host("staging1")
    master = stack.master_pid(host)
    run = stack.deploy("--limit", host["name"], "--data", stack.release("9.2.0", broken=True),
                       "--data", "gunicorn_workers=3")
    assert run.returncode != 0
    assert "flasktodo 9.2.0 failed its load check; nothing was switched" in run.output
    assert "RuntimeError: a broken release" in run.output
    assert stack.ssh(host, "readlink /opt/flasktodo/current") == "releases/9.1.0"
    assert stack.healthz(host)["version"] == "9.1.0"
    assert stack.master_pid(host) == master
    assert "RUNNING" in stack.ssh(host, "supervisorctl status flasktodo")


def test_an_interrupted_deploy_is_finished_by_the_next_run(stack: Stack) -> None:
    """Killed after the upload and before the reload: the next run still reloads."""
    host = stack.host("staging1")
    master = stack.master_pid(host)
    change = ("--limit", host["name"], "--data", stack.release("9.1.0"),
              "--data", "gunicorn_workers=3", "--data", "gunicorn_timeout=33")
    # Hold the host's deploy lock: the deploy uploads everything, then waits at go-live.
    holder = subprocess.Popen(["ssh", "-F", stack.sandbox.ssh_config, host["name"],
                               f"exec flock {LOCK} sleep 300"])
    try:
        command, env = deploy_command(stack.sandbox, *change, "-y",
                                      secrets_dir=stack.secrets_dir)
        deploy_run = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while "/usr/local/lib/wsgistack/golive switch" not in stack.ssh(host, "ps -eo args"):
            assert time.monotonic() < deadline and deploy_run.poll() is None
            time.sleep(0.2)
        deploy_run.send_signal(signal.SIGKILL)
        deploy_run.wait()
        # The killed run's step, still waiting for the lock: stopped before it began (a
        # step that began runs to its end without the controller: test_attacks).
        stack.ssh(host, "pkill -f '^python3 -I /usr/local/lib/wsgistack/golive switch'"
                        " || true")
    finally:
        holder.kill()
        stack.ssh(host, "pkill -f '[s]leep 300' || true")
    config = "/etc/flasktodo/gunicorn.conf.py"
    assert "timeout = 33" in stack.ssh(host, f"cat {config}.next"), "uploaded"
    assert "timeout = 33" not in stack.ssh(host, f"cat {config}"), "not live"
    assert stack.master_pid(host) == master, "not reloaded"
    run = stack.deploy(*change)
    assert run.returncode == 0, run.output[-3000:]
    switched = [line for line in run.output.splitlines() if "Switch flasktodo" in line]
    assert switched and "timeout = 33" in stack.ssh(host, f"cat {config}")
    assert stack.master_pid(host) != master, "reloaded by the next run"
    assert stack.deploy(*change).changed_ops() == []


def test_a_failed_health_check_stops_the_production_rollout(stack: Stack) -> None:
    first, second = stack.host("production1"), stack.host("production2")
    # An operator's stray server for the site's name, read before ours (conf.d comes first):
    # production1 answers 503 through nginx, so it will fail its health check.
    stray = "/etc/nginx/conf.d/stray.conf"
    stack.ssh(first, f"echo 'server {{ listen 443 ssl; server_name {SERVER_NAMES['production']};"
                     " ssl_certificate /etc/ssl/wsgistack/wsgistack.crt;"
                     " ssl_certificate_key /etc/ssl/wsgistack/private/wsgistack.key;"
                     f" return 503; }}' > {stray} && systemctl reload nginx")
    try:
        run = stack.deploy("--limit", "production", "--data", stack.release("9.1.0"),
                           "--data", "health_timeout=3")
    finally:
        stack.ssh(first, f"rm {stray} && systemctl reload nginx")
    assert run.returncode != 0
    assert "health check failed: flasktodo through nginx" in run.output
    assert f"rollout of production stopped: {first['name']} failed" in run.output
    assert stack.ssh(second, "readlink /opt/flasktodo/current") == f"releases/{FLASKTODO_VERSION}"
    assert stack.healthz(second)["version"] == f"{FLASKTODO_VERSION}", "the rest keeps serving"
    resumed = stack.deploy("--limit", "production", "--data", stack.release("9.1.0"))
    assert resumed.returncode == 0, resumed.output[-3000:]
    assert [stack.healthz(h)["version"] for h in (first, second)] == ["9.1.0", "9.1.0"]


def test_a_host_down_is_named_and_the_others_converge(stack: Stack) -> None:
    down = stack.host("production1")
    sandbox_cli(NAME, "stop", "production1")
    try:
        run = stack.deploy("--data", stack.release("1.3.0"))
    finally:
        sandbox_cli(NAME, "up", "--subnet", SUBNET, "--hosts", "staging=1,production=2")
    assert run.returncode != 0
    summary = run.output.split("--> Deploy summary", 1)[1]
    assert f"{down['name']}: UNREACHABLE: not deployed" in summary
    for other in ("staging1", "production2"):
        host = stack.host(other)
        url = f"https://{SERVER_NAMES[host['group']]}/flasktodo/ ({host['address']})"
        assert f"{host['name']}: {url}  flasktodo 1.3.0  healthy" in summary
        assert stack.healthz(host)["version"] == "1.3.0"
    wait_for_http_ok(down["address"], HEALTHZ, 60, host_header=SERVER_NAMES["production"])
    assert stack.healthz(down)["version"] == "9.1.0", "untouched while it was down"
