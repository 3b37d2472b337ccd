"""What the app's own user, another local user, or a second operator could make root do:
each attack from the review, tried on a real host, and the deploy holding.

A sandbox of its own (one staging host) is deployed with FlaskTODO; the tests then attack it
in this order, each leaving the host healthy for the next. Their releases are 9.x, above
any version the tree has.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.helpers import (
    Run,
    Sandbox,
    app_release,
    apps_data,
    deploy,
    deploy_command,
    http,
    own_sandbox,
)
from tests.polling import wait_for

NAME, SUBNET = "iatk", "10.186.0.0/24"
SERVER_NAME = "staging.flasktodo.test"
RUN_DIR = "/run/flasktodo"
GOLIVE = "/usr/local/lib/wsgistack/golive"


class Host:
    """The attacked host, and the deploys an operator runs against it."""

    def __init__(self, sandbox: Sandbox, secrets_dir: Path, releases: Path) -> None:
        self.sandbox, self.secrets_dir, self.releases = sandbox, secrets_dir, releases
        self.host = sandbox.hosts()[0]

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sandbox.ssh(self.host, command, check=check)

    def out(self, command: str) -> str:
        return self.ssh(command).stdout.strip()

    def as_app(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command run by the app's own user (what code in the app could do)."""
        return self.ssh(f"runuser -u flasktodo -- sh -c {shlex.quote(command)}", check=check)

    def arguments(self, version: str | None, *data: str) -> list[str]:
        release = [] if version is None else ["--data", apps_data(app_release(
            self.releases, version))]
        return ["-y", *release, *(arg for each in data for arg in ("--data", each))]

    def deploy(self, version: str | None = None, *data: str, timeout: float = 600) -> Run:
        return deploy(self.sandbox, *self.arguments(version, *data),
                      secrets_dir=self.secrets_dir, timeout=timeout)

    def start_deploy(self, version: str | None = None, *data: str) -> subprocess.Popen:
        command, env = deploy_command(self.sandbox, *self.arguments(version, *data),
                                      secrets_dir=self.secrets_dir)
        return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2],
                                env={**env, "PYTHONUNBUFFERED": "1"}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def healthz(self) -> dict:
        status, _headers, body = http(self.host["address"], "/flasktodo/healthz", SERVER_NAME)
        assert status == 200, body
        return json.loads(body)

    def live_workers(self) -> str:
        return self.out("grep '^workers' /etc/flasktodo/gunicorn.conf.py")

    def processes(self, step: str) -> list[str]:
        """Pids of golive's or the herder's python running `step` (e.g. "golive switch");
        anchored, so the shells pyinfra wraps commands in are not counted."""
        pattern = f"^(/usr/bin/)?python3 [^ ]* ?/usr/local/lib/wsgistack/{step}"
        return self.ssh(f"pgrep -f {shlex.quote(pattern)}", check=False).stdout.split()


@pytest.fixture(scope="module")
def host(secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Host:
    with own_sandbox(NAME, SUBNET, "staging=1") as sandbox:
        host = Host(sandbox, secrets_dir, tmp_path_factory.mktemp("releases"))
        host.deploy().succeeded()
        yield host


def test_root_never_signals_a_pid_the_app_user_wrote(host: Host) -> None:
    """The app's user writes a root process's pid into gunicorn's pid file; the next deploy
    that swaps gunicorn refuses to signal it, and nothing goes live."""
    bystander = host.out("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
    master = host.out(f"cat {RUN_DIR}/gunicorn.pid")
    host.as_app(f"echo {bystander} > {RUN_DIR}/gunicorn.pid")
    try:
        run = host.deploy(None, "gunicorn_workers=3")
        assert run.returncode != 0
        assert "does not name a gunicorn master of this app" in run.output, run.output[-3000:]
        assert host.ssh(f"kill -0 {bystander}", check=False).returncode == 0, "still alive"
        assert host.out(f"stat -c %U /proc/{bystander}") == "root"
        assert host.live_workers() == "workers = 2", "the previous config is back"
    finally:
        host.as_app(f"echo {master} > {RUN_DIR}/gunicorn.pid")
        host.ssh(f"kill {bystander}", check=False)
    assert host.deploy().returncode == 0


def test_no_other_user_can_hold_or_redirect_the_deploy_lock(host: Host) -> None:
    """The lock used to be /run/lock/wsgistack.lock, which anyone can create and hold (and,
    without protected symlinks, point at a file root then truncated). Now it is root's, in
    a dir only root can enter, and nothing another user holds makes a deploy wait."""
    holder = subprocess.Popen(
        ["ssh", "-F", host.sandbox.ssh_config, host.host["name"],
         "runuser -u nobody -- flock /run/lock/wsgistack.lock sleep 120"])
    try:
        refused = host.ssh("runuser -u nobody -- flock -n /run/wsgistack/deploy.lock true",
                           check=False)
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
        lock = host.sandbox.testinfra(host.host).file("/run/wsgistack")
        assert (lock.user, lock.mode, lock.is_directory) == ("root", 0o700, True)
        started = time.monotonic()
        run = host.deploy(None, "gunicorn_workers=3", timeout=200)
        assert run.returncode == 0, run.output[-3000:]
        assert time.monotonic() - started < 120, "the deploy did not wait for nobody's lock"
        assert host.live_workers() == "workers = 3"
    finally:
        holder.kill()
        host.ssh("pkill -u nobody flock", check=False)


def test_a_deploy_never_reports_another_deploys_config_as_its_own(host: Host) -> None:
    """Two operators deploy at once: A (4 workers) writes its candidates, then B (5 workers)
    overwrites them before A goes live. A must not make B's config live and report its own
    success: it fails, naming the cause; B goes live."""
    hold = ("flock /run/wsgistack/deploy.lock sh -c"
            " 'touch /tmp/hold; while [ -e /tmp/hold ]; do sleep 0.2; done'")
    holder = subprocess.Popen(["ssh", "-F", host.sandbox.ssh_config, host.host["name"], hold])
    try:
        wait_for(lambda: host.ssh("test -e /tmp/hold", check=False).returncode == 0, 20,
                   "the lock to be held")
        first = host.start_deploy(None, "gunicorn_workers=4")
        candidate = "/etc/flasktodo/gunicorn.conf.py.next"
        wait_for(lambda: len(host.processes("golive switch")) >= 1, 300, "A waiting to go live")
        assert host.out(f"grep '^workers' {candidate}") == "workers = 4"
        second = host.start_deploy(None, "gunicorn_workers=5")
        wait_for(lambda: len(host.processes("golive switch")) >= 2, 300, "B waiting too")
        assert host.out(f"grep '^workers' {candidate}") == "workers = 5"
    finally:
        host.ssh("rm -f /tmp/hold", check=False)
        holder.wait(timeout=30)
    first_output, _ = first.communicate(timeout=300)
    second_output, _ = second.communicate(timeout=300)
    assert first.returncode != 0, first_output[-3000:]
    assert "is not the candidate this deploy wrote" in first_output
    assert second.returncode == 0, second_output[-3000:]
    assert host.live_workers() == "workers = 5"
    assert host.deploy().returncode == 0


def test_backup_rotation_is_never_led_by_the_apps_file_names(host: Host) -> None:
    """File names the app's user chose in its backups dir: one that word-splits into a
    path in root's working dir, one with a quote. The switch works and removes neither."""
    host.ssh("echo keep > /root/precious")
    crafted = ["precious zzz.sqlite3", "it's.sqlite3"]
    for name in crafted:
        host.as_app(f"cd /var/lib/flasktodo/backups && touch -d 2000-01-01 {shlex.quote(name)}")
    run = host.deploy("9.1.0", "keep_backups=1")
    assert run.returncode == 0, run.output[-3000:]
    assert host.out("cat /root/precious") == "keep"
    listed = host.out("ls -1 /var/lib/flasktodo/backups").splitlines()
    assert all(name in listed for name in crafted), listed
    assert len([name for name in listed if name.startswith("flasktodo-")]) == 1
    assert host.healthz()["version"] == "9.1.0"


def test_code_planted_in_the_data_dir_is_never_imported(host: Host) -> None:
    """The app's user can write its data dir: a package named like the app's, and a module
    named like one of its dependencies, must not be what gunicorn imports."""
    plant = "open('/var/lib/flasktodo/pwned', 'w').write('planted')\n"
    host.as_app("mkdir -p /var/lib/flasktodo/flasktodo && cd /var/lib/flasktodo"
                f" && printf %s {shlex.quote(plant)} > flasktodo/__init__.py"
                f" && printf %s {shlex.quote(plant)} > flask.py")
    run = host.deploy("9.2.0")
    assert run.returncode == 0, run.output[-3000:]
    host.ssh("supervisorctl restart flasktodo")
    wait_for(lambda: http(host.host["address"], "/flasktodo/healthz", SERVER_NAME)[0] == 200,
               30, "the app after a restart")
    assert host.healthz()["version"] == "9.2.0"
    assert host.ssh("test -e /var/lib/flasktodo/pwned", check=False).returncode != 0
    host.as_app("rm -rf /var/lib/flasktodo/flasktodo /var/lib/flasktodo/flask.py")


def slow_release(parent: Path, version: str) -> Path:
    """A release whose import takes 3 s: a reload long enough to be interrupted."""
    source = app_release(parent, version)
    wsgi = source / "src/flasktodo/wsgi.py"
    if "sleep" not in wsgi.read_text():
        wsgi.write_text("import time\ntime.sleep(3)\n" + wsgi.read_text())
    return source


def test_a_controller_killed_during_a_reload_leaves_a_consistent_host(host: Host) -> None:
    """The operator's machine dies while gunicorn is being swapped: the host finishes the
    step on its own, so the live config, `current` and the running gunicorn agree, and the
    next run has nothing to do."""
    data = apps_data(slow_release(host.releases, "9.3.0"))
    command, env = deploy_command(host.sandbox, "-y", "--data", data,
                                  secrets_dir=host.secrets_dir)
    deploy_process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: host.processes("gunicorn-herder reload"), 300, "the reload to start")
    os.killpg(deploy_process.pid, signal.SIGKILL)
    deploy_process.wait()
    assert host.processes("golive switch"), "killed while the step was running"
    wait_for(lambda: not host.processes("golive switch"), 60, "the step to finish")
    assert host.out("readlink /opt/flasktodo/current") == "releases/9.3.0"
    assert host.ssh("cmp /etc/flasktodo/config.py /etc/flasktodo/config.py.next"
                    " && cmp /etc/flasktodo/gunicorn.conf.py"
                    " /etc/flasktodo/gunicorn.conf.py.next", check=False).returncode == 0
    assert host.healthz()["version"] == "9.3.0"
    again = deploy(host.sandbox, "-y", "--data", data, secrets_dir=host.secrets_dir)
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-3000:]


# A release command: records, as whoever runs it, what `current` was and what it was given.
RECORD = ("import json, os; open('/var/lib/flasktodo/release-command.json', 'w').write("
          "json.dumps({'current': os.readlink('/opt/flasktodo/current'),"
          " 'names': os.environ['WSGISTACK_SERVER_NAMES'], 'user': os.environ['USER']}))")


def test_release_commands_run_before_the_switch_and_a_failure_switches_nothing(
        host: Host) -> None:
    """release_commands of a new release run on the host as the app's user, with the new
    release and its environment, before it goes live; one that fails stops the host with
    the app's name and its output, and the old release keeps serving."""
    entry = json.loads(apps_data(app_release(host.releases, "9.4.0")).split("=", 1)[1])[0]
    entry["release_commands"] = [["python", "-c", RECORD]]
    run = host.deploy(None, "apps=" + json.dumps([entry]))
    assert run.returncode == 0, run.output[-3000:]
    record = "/var/lib/flasktodo/release-command.json"
    assert json.loads(host.out(f"cat {record}")) == {
        "current": "releases/9.3.0", "names": SERVER_NAME, "user": "flasktodo"}
    assert host.out(f"stat -c %U {record}") == "flasktodo"
    assert host.healthz()["version"] == "9.4.0"
    failing = json.loads(apps_data(app_release(host.releases, "9.5.0")).split("=", 1)[1])[0]
    failing["release_commands"] = [["python", "-c", "raise SystemExit('no such table: items')"]]
    refused = host.deploy(None, "apps=" + json.dumps([failing]))
    assert refused.returncode != 0
    assert "flasktodo 9.5.0: the release command `python -c" in refused.output
    assert "no such table: items" in refused.output
    assert host.out("readlink /opt/flasktodo/current") == "releases/9.4.0"
    assert host.healthz()["version"] == "9.4.0"


# --- the second review: an app compromise must never become root --------------------------

SHADOW = "stat -c '%U %G %a' /etc/shadow; sha256sum /etc/shadow"
BACKUPS = "/var/lib/flasktodo/backups"
# The app's user, polling as fast as it can: every time a real dir stands where its
# backups belong (the deploy just made it), it swaps it for a link to /etc/shadow. Bounded.
SWAPPER = """
import os, time
os.chdir("/var/lib/flasktodo")
end, moved = time.monotonic() + 120, 0
while time.monotonic() < end:
    try:
        if not os.path.islink("backups") and os.path.isdir("backups"):
            moved += 1
            os.rename("backups", f"swapped-{moved}")
            os.symlink("/etc/shadow", "backups")
    except OSError:
        pass
"""


def test_the_app_swapping_its_backups_dir_for_a_link_never_reaches_roots_hands(
        host: Host) -> None:
    """Root used to make the app's backups dir with mkdir, chmod and chown as separate
    commands inside the app's own dir: the app swapped in a link between them and got
    /etc/shadow. Now the app's user makes it; /etc/shadow stays root's through many tries,
    and a link left there stops the host with one line naming the app and the path."""
    shadow = host.out(SHADOW)
    swapper = subprocess.Popen(["ssh", "-F", host.sandbox.ssh_config, host.host["name"],
                                f"runuser -u flasktodo -- python3 -c {shlex.quote(SWAPPER)}"])
    try:
        for _try in range(6):
            host.as_app(f"rm -rf {BACKUPS}")  # missing: the deploy makes it again
            run = host.deploy()
            assert host.out(SHADOW) == shadow, run.output[-3000:]
            assert "Traceback" not in run.output
        assert host.out("ls /var/lib/flasktodo").count("swapped-") >= 1, "the app did swap"
    finally:
        swapper.kill()
        host.ssh("pkill -u flasktodo -f swapped-", check=False)
        host.as_app(f"rm -rf {BACKUPS} /var/lib/flasktodo/swapped-*")
    host.as_app(f"ln -s /etc/shadow {BACKUPS}")
    try:
        refused = host.deploy()
        assert refused.returncode != 0
        assert (f"flasktodo: {BACKUPS} is a symbolic link, not a directory (the app's user put"
                " it there): move it away, as flasktodo, and deploy again") in refused.output
    finally:
        host.as_app(f"rm -f {BACKUPS}")
    assert host.deploy().returncode == 0
    backups = host.sandbox.testinfra(host.host).file(BACKUPS)
    assert (backups.is_directory, backups.user, backups.mode) == (True, "flasktodo", 0o750)
    assert host.out(SHADOW) == shadow


def test_golive_run_never_hands_roots_terminal_to_the_app(host: Host) -> None:
    """`golive run` over `ssh -t`: the app's command gets a pty of its own in a new session
    (TIOCSTI from it reaches its own input, never root's shell), and can never gain
    privileges, not even through a sudoers rule that allows it everything."""
    show = ("import os; print('APP', os.ttyname(0), os.getsid(0) == os.getpid(),"
            " open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])")
    host.ssh("echo 'flasktodo ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/flasktodo-test")
    try:
        ran = subprocess.run(
            ["ssh", "-tt", "-F", host.sandbox.ssh_config, host.host["name"],
             f"echo CALLER $(tty); {GOLIVE} run flasktodo -- python3 -c {shlex.quote(show)};"
             f" {GOLIVE} run flasktodo -- sudo -n id; echo SUDO $?"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
        words = ran.stdout.split()
        callers, its = words[words.index("CALLER") + 1], words[words.index("APP") + 1]
        assert its.startswith("/dev/pts/") and its != callers, ran.stdout
        assert words[words.index("APP") + 2:words.index("APP") + 4] == ["True", "1"]
        assert words[words.index("SUDO") + 1] != "0" and "uid=0" not in ran.stdout, ran.stdout
    finally:
        host.ssh("rm -f /etc/sudoers.d/flasktodo-test")


def test_gunicorn_and_its_workers_can_never_gain_privileges(host: Host) -> None:
    pids = host.out("pgrep -u flasktodo -f 'venv/bin/gunicorn'").split()
    assert len(pids) >= 3, "the master and its workers"
    for pid in pids:
        assert host.out(f"grep NoNewPrivs /proc/{pid}/status").split() == ["NoNewPrivs:", "1"]


def test_an_app_never_takes_over_an_account_the_deploy_did_not_make(host: Host) -> None:
    """An app named after an account the host already has (here an operator's): the host
    stops with one line, and the account is as it was."""
    host.ssh("id shopkeeper || useradd --create-home --shell /bin/bash shopkeeper")
    before = host.out("getent passwd shopkeeper; id shopkeeper")
    entry = json.loads(apps_data(app_release(host.releases, "9.4.0")).split("=", 1)[1])[0]
    shop = {**entry, "name": "shopkeeper", "port": 8099, "prefix": "/shop"}
    refused = host.deploy(None, "apps=" + json.dumps([entry, shop]))
    assert refused.returncode != 0
    assert ("apps[shopkeeper]: the account shopkeeper exists on this host and the deploy did"
            " not make it") in refused.output, refused.output[-3000:]
    assert host.out("getent passwd shopkeeper; id shopkeeper") == before
    assert host.ssh("test -e /opt/shopkeeper", check=False).returncode != 0
    assert host.out("getent passwd flasktodo").split(":")[4] == "wsgistack app flasktodo"


# A build command: records who runs it and whether it can gain privileges or write the app's
# data.
WHO_BUILDS = ("id -un > \"$WSGISTACK_BUILD_DIR/who\";"
              " grep NoNewPrivs /proc/self/status >> \"$WSGISTACK_BUILD_DIR/who\";"
              " touch /var/lib/flasktodo/by-the-build 2>/dev/null || echo data-closed"
              " >> \"$WSGISTACK_BUILD_DIR/who\"")


def test_builds_run_as_the_build_user_out_of_the_running_apps_reach(host: Host) -> None:
    """Build commands ran as the app's user, so the live app could rewrite the next
    release's build output. Now they run as wsgistack-build (in the app's group, to read
    its config), in root's build dir, which the app cannot enter."""
    entry = json.loads(apps_data(app_release(host.releases, "9.6.0")).split("=", 1)[1])[0]
    entry["build_commands"] = [["sh", "-c", WHO_BUILDS]]
    run = host.deploy(None, "apps=" + json.dumps([entry]))
    assert run.returncode == 0, run.output[-3000:]
    assert host.out("cat /opt/flasktodo/releases/9.6.0/build/who").split() == [
        "wsgistack-build", "NoNewPrivs:", "1", "data-closed"]
    assert host.as_app("touch /var/lib/wsgistack/build/x", check=False).returncode != 0
    assert host.out("getent passwd wsgistack-build").split(":")[4] == "wsgistack build user"
    assert host.ssh("pgrep -u wsgistack-build", check=False).returncode != 0, "none left"
    sparse = {**entry, "build_commands": [
        ["sh", "-c", "truncate -s 2G \"$WSGISTACK_BUILD_DIR/huge\""]]}
    refused = host.deploy(None, "apps=" + json.dumps(
        [{**sparse, "source": str(app_release(host.releases, "9.6.1"))}]))
    assert refused.returncode != 0
    assert ("flasktodo 9.6.1: its build commands made more than 1073741824 bytes; the release"
            " was not installed") in refused.output, refused.output[-3000:]
    assert host.healthz()["version"] == "9.6.0"


def test_the_release_install_imports_nothing_from_roots_working_dir(host: Host) -> None:
    """pyinfra's commands run in the SSH user's home: a venv.py there was imported by
    `python3 -m venv` as root. The install runs Python with -I."""
    host.ssh("printf %s \"open('/tmp/imported-from-home', 'w')\" > ~/venv.py")
    try:
        run = host.deploy("9.7.0")
        assert run.returncode == 0, run.output[-3000:]
        assert host.ssh("test -e /tmp/imported-from-home", check=False).returncode != 0
    finally:
        host.ssh("rm -f ~/venv.py /tmp/imported-from-home")


def test_an_apps_declared_data_dirs_are_made_by_it_and_kept_across_releases(
        host: Host) -> None:
    """An app that needs dirs of its own in its data dir (pypiserver's packages/) declares
    them; its user makes them, and they outlive its releases."""
    entry = json.loads(apps_data(app_release(host.releases, "9.8.0")).split("=", 1)[1])[0]
    entry["data_dirs"] = ["packages"]
    assert host.deploy(None, "apps=" + json.dumps([entry])).returncode == 0
    packages = host.sandbox.testinfra(host.host).file("/var/lib/flasktodo/packages")
    assert (packages.is_directory, packages.user, packages.mode) == (True, "flasktodo", 0o750)
    host.as_app("echo kept > /var/lib/flasktodo/packages/one.whl")
    entry["source"] = str(app_release(host.releases, "9.8.1"))
    run = host.deploy(None, "apps=" + json.dumps([entry]))
    assert run.returncode == 0, run.output[-3000:]
    assert host.out("cat /var/lib/flasktodo/packages/one.whl") == "kept"
    assert host.healthz()["version"] == "9.8.1"
