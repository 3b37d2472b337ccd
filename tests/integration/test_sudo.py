"""Hosts as Debian's cloud images come (`sandbox up --login admin`): the deploy logs in as
`admin`, a sudo user, root's SSH login refused. Everything an operator does goes through
sudo as it does as root: the first deploy of staging and production (its database host
too), the no-op, a secret change, a new release, a rollback, drift repair, removal, and
last production's destroy.

Through sudo, pyinfra would upload each file as `admin` to /tmp/pyinfra-<sha1 of its
destination> (0644) and copy it into place as root: another user on the host could read
it, or create that file first. Here another local user polls /tmp and /var/tmp through a
deploy that changes a secret, and owns files at every name pyinfra would use there.

A sandbox of its own; the tests run in order, each leaving the hosts converged, but the
last, which destroys production.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.helpers import (
    FLASKTODO_VERSION,
    Deployed,
    Sandbox,
    app_release,
    apps_data,
    deploy_environment,
    footprint,
    http,
    left_by_destroy,
    own_sandbox,
)

NAME, SUBNET = "isudo", "10.192.0.0/24"
HOSTS = "staging=1,production=2,production-db=1"
UPLOADS = "/var/lib/wsgistack/uploads/admin"
# The files a secret change uploads, each holding the secret
SECRET_FILES = ("/etc/flasktodo/config.py.next", "/etc/flasktodo/env.next")
SPY = "mallory"
# Another user's loop, as fast as it goes: every file it may read under /tmp and /var/tmp
# (and the upload dir, which it may not), appended to its own log, until told to stop.
POLL = ("while [ ! -e ~/stop ]; do find /tmp /var/tmp /var/lib/wsgistack -xdev -type f"
        " -readable -exec cat {} + >> ~/seen 2>/dev/null; done")


@dataclass
class Cloud(Deployed):
    bare: dict[str, set[str]] = field(default_factory=dict)  # production's, before its deploy

    @property
    def staging(self) -> dict:
        return self.sandbox.host("staging1")

    def version(self, host: dict) -> str:
        status, _headers, body = http(host["address"], "/flasktodo/healthz",
                                      host_header="staging.flasktodo.test")
        assert status == 200, body
        return json.loads(body)["version"]


@pytest.fixture(scope="module")
def cloud(secrets_dir: Path) -> Iterator[Cloud]:
    with own_sandbox(NAME, SUBNET, HOSTS, options=("--login", "admin")) as sandbox:
        bare = {host["name"]: footprint(sandbox, host) for host in production(sandbox)}
        yield Cloud(sandbox, secrets_dir, deploy_environment(sandbox, secrets_dir, "-y"), bare)


def production(sandbox: Sandbox) -> list[dict]:
    """Its two web hosts and its database host (behind the first)."""
    return [*sandbox.hosts("production"), *sandbox.hosts("production-db")]


def test_root_may_not_log_in_and_the_first_deploy_goes_through_sudo(cloud: Cloud) -> None:
    cloud.first.succeeded()
    for host in cloud.sandbox.hosts():
        refused = subprocess.run(["ssh", "-F", cloud.sandbox.ssh_config, "-o", "User=root",
                                  host["name"], "true"], capture_output=True, text=True,
                                 check=False)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
        state = cloud.sandbox.testinfra(host)
        uploads = state.file(UPLOADS)
        assert (uploads.user, uploads.mode) == ("admin", 0o700)
        assert cloud.ssh(host, f"ls -A {UPLOADS}") == "", "each upload removed once in place"
        assert cloud.ssh(host, "find /tmp /var/tmp -name 'pyinfra-*'") == ""
    assert re.search(r"isudo-production-db1: PostgreSQL 15 at \S+ for flasktodo  ok",
                     cloud.first.output)


def test_a_second_run_changes_nothing_and_reads_each_host_once(cloud: Cloud) -> None:
    assert cloud.deploy("-y").succeeded().changed_ops() == []
    dry = cloud.deploy("--dry", "--debug").succeeded()
    assert dry.planned_changes() == []
    reads = re.findall(r"Running command on ([^:\s]+)", dry.output)
    assert sorted(reads) == sorted(host["name"] for host in cloud.sandbox.hosts()), \
        "one command per host: its state read"


def predicted(directory: str, destination: str) -> str:
    """Where pyinfra puts an upload through sudo by default: a name anyone can compute."""
    return f"{directory}/pyinfra-{hashlib.sha1(destination.encode()).hexdigest()}"


def test_a_secret_change_leaks_nothing_to_another_user_and_writes_nothing_of_theirs(
        cloud: Cloud) -> None:
    host = cloud.staging
    cloud.ssh(host, f"id {SPY} >/dev/null 2>&1 || useradd --create-home {SPY}")
    baits = [predicted(directory, destination) for directory in ("/tmp", "/var/tmp")
             for destination in SECRET_FILES]
    as_spy = f"runuser -u {SPY} --"
    cloud.ssh(host, " && ".join(
        [f"{as_spy} sh -c 'echo bait > {bait} && chmod 666 {bait}'" for bait in baits]
        + [f"{as_spy} sh -c 'echo bait > ~/target && chmod 666 ~/target'",
           f"{as_spy} ln -s /home/{SPY}/target /tmp/pyinfra-{SPY}-link"]))
    cloud.ssh(host, f"rm -f /home/{SPY}/stop /home/{SPY}/seen; setsid {as_spy} sh -c"
                    f" '{POLL}' </dev/null >/dev/null 2>&1 &")
    secret = "changed-staging-secret-0123456789-abcdefghijklmnop"
    (cloud.secrets_dir / "staging" / "flasktodo.secret_key").write_text(secret)
    try:
        run = cloud.deploy("--limit", "staging", "-y").succeeded()
    finally:
        cloud.ssh(host, f"touch /home/{SPY}/stop; sleep 1")
    assert secret not in run.output
    assert secret in cloud.ssh(host, "cat /etc/flasktodo/config.py"), "the change is live"
    seen = cloud.ssh(host, f"cat /home/{SPY}/seen")
    assert "bait" in seen, "the spy read /tmp throughout the deploy"
    assert secret not in seen
    for bait in [*baits, f"/home/{SPY}/target"]:
        assert cloud.ssh(host, f"stat -c '%U %a' {bait}; cat {bait}") == f"{SPY} 666\nbait\n"
    denied = cloud.sandbox.ssh(host, f"{as_spy} ls {UPLOADS}", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr


def test_a_new_release_then_a_rollback_through_sudo(cloud: Cloud, tmp_path: Path) -> None:
    release = apps_data(app_release(tmp_path, "9.1.0"))
    cloud.deploy("--limit", "staging", "--data", release, "-y").succeeded()
    assert cloud.version(cloud.staging) == "9.1.0"
    cloud.deploy("--limit", "staging", "-y", entry="rollback.py").succeeded()
    assert cloud.version(cloud.staging) == FLASKTODO_VERSION
    assert cloud.deploy("--limit", "staging", "-y").succeeded().changed_ops() == []


def test_drift_is_repaired_through_sudo(cloud: Cloud) -> None:
    host = cloud.staging
    cloud.ssh(host, "chmod 644 /etc/flasktodo/env.next"
                    " && echo '# drift' >> /usr/local/lib/wsgistack/golive")
    planned = cloud.deploy("--limit", "staging", "--dry").succeeded().planned_operations()
    repaired = cloud.deploy("--limit", "staging", "-y").succeeded()
    assert repaired.changed_operations() == planned, "the dry run said exactly this"
    assert any("Install golive" in name for name in planned), planned
    assert any("candidate environment" in name for name in planned), planned
    state = cloud.sandbox.testinfra(host)
    assert state.file("/etc/flasktodo/env.next").mode == 0o640
    assert b"# drift" not in state.file("/usr/local/lib/wsgistack/golive").content
    assert cloud.ssh(host, f"ls -A {UPLOADS}") == ""
    assert cloud.deploy("--limit", "staging", "-y").succeeded().changed_ops() == []


def test_an_app_is_removed_through_sudo_and_comes_back(cloud: Cloud) -> None:
    host = cloud.staging
    gone = "apps=" + json.dumps([{"name": "flasktodo", "state": "absent"}])
    cloud.deploy("--limit", "staging", "--data", gone, "-y").succeeded()
    state = cloud.sandbox.testinfra(host)
    assert not state.file("/opt/flasktodo").exists
    assert not state.file("/etc/supervisor/conf.d/flasktodo.conf").exists
    assert state.file("/var/lib/flasktodo").is_directory, "its data is kept"
    cloud.deploy("--limit", "staging", "-y").succeeded()
    assert cloud.version(host) == FLASKTODO_VERSION


def test_production_is_destroyed_through_sudo_and_its_jump_host(cloud: Cloud) -> None:
    """destroy.py through sudo, the database host through its jump host: previewed exactly,
    the data kept; with purge, each host as it was before the first deploy."""
    dry = cloud.deploy("--limit", "production", "--dry", entry="destroy.py").succeeded()
    done = cloud.deploy("--limit", "production", "-y", entry="destroy.py").succeeded()
    assert dry.preview() == done.preview()
    for host in production(cloud.sandbox):
        assert left_by_destroy(cloud.bare[host["name"]], footprint(cloud.sandbox, host),
                               ["flasktodo"]) == set(), host["name"]
    again = cloud.deploy("--limit", "production", "--dry", entry="destroy.py").succeeded()
    assert all(lines == [] for _counts, lines in again.preview().values())
    cloud.deploy("--limit", "production", "-y", "--data", "purge=true",
                 entry="destroy.py").succeeded()
    for host in production(cloud.sandbox):
        assert footprint(cloud.sandbox, host) == cloud.bare[host["name"]], host["name"]
