"""The sandbox makes real, separate, reachable Debian hosts, and removes every trace of them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.integration.helpers import REPO, STATE_ROOT, Sandbox, sandbox_cli

NAME, SUBNET = "isbx", "10.179.0.0/24"


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sandbox = Sandbox.up(NAME, SUBNET, "staging=1,production=1")
    yield sandbox
    sandbox_cli(NAME, "down")


def traces(name: str) -> dict[str, list[str]]:
    """Everything a sandbox can leave on the controller, by kind."""
    def lines(*command: str) -> list[str]:
        return subprocess.run(command, capture_output=True, text=True).stdout.splitlines()

    nspawn = [line for line in lines("ps", "-ww", "-eo", "args")
              if "systemd-nspawn" in line and f"--machine={name}-" in line]
    return {
        "namespaces": [n for n in lines("ip", "netns", "list") if n.startswith(f"{name}-")],
        "mounts": [m for m in lines("mount") if str(STATE_ROOT / name) in m],
        "veths": [v for v in lines("ip", "-br", "link") if v.startswith(f"v{name}")],
        "processes": nspawn,
        "nft tables": [t for t in lines("nft", "list", "tables") if f"sandbox_{name}" in t],
        "files": [str(STATE_ROOT / name)] if (STATE_ROOT / name).exists() else [],
        "cgroups": [str(c) for c in Path("/sys/fs/cgroup").glob(f"*/wsgistack-sandbox/{name}-*")],
    }


def test_ssh_works_with_the_written_key_and_known_hosts(sandbox: Sandbox) -> None:
    for host in sandbox.hosts():
        assert sandbox.ssh(host, "hostname").stdout.strip() == host["name"]


def test_host_key_checking_is_on(sandbox: Sandbox, tmp_path: Path) -> None:
    host = sandbox.hosts()[0]
    config = Path(sandbox.ssh_config).read_text()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    strict = tmp_path / "ssh_config"
    strict.write_text(config.replace(sandbox.manifest["known_hosts"], str(empty)))
    result = subprocess.run(["ssh", "-F", str(strict), host["name"], "true"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "Host key verification failed" in result.stderr


def test_systemd_is_running_on_every_host(sandbox: Sandbox) -> None:
    for host in sandbox.hosts():
        assert sandbox.ssh(host, "systemctl is-system-running").stdout.strip() == "running"


def test_hosts_are_bare_like_a_cloud_image(sandbox: Sandbox) -> None:
    for host in sandbox.hosts():
        check = sandbox.testinfra(host)
        assert check.package("openssh-server").is_installed
        assert check.package("python3").is_installed
        assert check.package("sudo").is_installed, "as on Debian's cloud images"
        for package in ("nginx", "supervisor", "python3-venv", "curl"):
            assert not check.package(package).is_installed, package


def test_hostnames_addresses_and_machine_ids_are_distinct(sandbox: Sandbox) -> None:
    seen = {"hostname": set(), "address": set(), "machine-id": set(), "host key": set()}
    for host in sandbox.hosts():
        seen["hostname"].add(sandbox.ssh(host, "hostname").stdout.strip())
        seen["address"].add(sandbox.ssh(host, "ip -4 -br addr show eth0").stdout.split()[2])
        seen["machine-id"].add(sandbox.ssh(host, "cat /etc/machine-id").stdout.strip())
        seen["host key"].add(sandbox.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub")
                             .stdout.split()[1])
    for kind, values in seen.items():
        assert len(values) == len(sandbox.hosts()), kind


def test_each_host_has_its_own_loopback(sandbox: Sandbox) -> None:
    one, other = sandbox.hosts()
    probe = ("python3 -c 'import socket; s = socket.create_connection((\"127.0.0.1\", 8999),"
             " timeout=3); print(\"open\")'")
    sandbox.ssh(one, "systemd-run --unit=loopback-probe python3 -m http.server"
                     " --bind 127.0.0.1 8999")
    try:
        sandbox.ssh(one, "for i in $(seq 50); do ss -ltn | grep -q 127.0.0.1:8999 && exit 0;"
                         " sleep 0.1; done; exit 1")
        assert sandbox.ssh(one, probe).stdout.strip() == "open"
        refused = sandbox.ssh(other, probe, check=False)
        assert refused.returncode != 0 and "ConnectionRefusedError" in refused.stderr
    finally:
        sandbox.ssh(one, "systemctl stop loopback-probe", check=False)


def test_up_again_leaves_the_same_hosts(sandbox: Sandbox) -> None:
    def identity() -> tuple:
        pids = sorted((STATE_ROOT / NAME / "hosts").glob("*/nspawn.pid"))
        return ([p.read_text() for p in pids], sandbox.manifest,
                Path(sandbox.manifest["known_hosts"]).read_text())

    before = identity()
    sandbox_cli(NAME, "up", "--subnet", SUBNET, "--hosts", "staging=1,production=1")
    assert identity() == before


def test_restart_is_a_reboot_that_keeps_the_disk(sandbox: Sandbox) -> None:
    host = sandbox.hosts()[0]
    token = uuid.uuid4().hex
    sandbox.ssh(host, f"echo {token} > /root/kept")
    boot = sandbox.ssh(host, "stat -c %Z /proc/1").stdout
    sandbox_cli(NAME, "restart", "staging1")
    assert sandbox.ssh(host, "cat /root/kept").stdout.strip() == token
    assert sandbox.ssh(host, "stat -c %Z /proc/1").stdout != boot, "PID 1 is a new one"
    assert sandbox.ssh(host, "systemctl is-system-running").stdout.strip() == "running"


@pytest.fixture
def readable_copy() -> Path:
    """The sandbox package where an unprivileged user can read it."""
    directory = Path(tempfile.mkdtemp())
    os.chmod(directory, 0o755)
    shutil.copytree(REPO / "sandbox", directory / "sandbox",
                    ignore=shutil.ignore_patterns("__pycache__"))
    yield directory
    shutil.rmtree(directory)


def refused(name: str, *args: str, env: dict | None = None, prefix: tuple = (),
            cwd: Path = REPO) -> str:
    """Run `sandbox up` expecting a clean refusal: exit 2, one line, nothing left behind."""
    command = [*prefix, sys.executable if not prefix else "/usr/bin/python3", "-m", "sandbox",
               "--name", name, "up", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("sandbox: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not any(traces(name).values()), traces(name)
    return result.stderr


def test_not_root_is_refused(readable_copy: Path) -> None:
    message = refused("ibad", prefix=("setpriv", "--reuid=65534", "--regid=65534",
                                      "--clear-groups"), cwd=readable_copy)
    assert "needs root" in message


def test_missing_nspawn_is_refused(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nft", "debootstrap", "ssh", "ssh-keygen", "mountpoint"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    message = refused("ibad", env={**os.environ, "PATH": str(bin_dir)})
    assert "apt-get install -y systemd-container" in message


def test_unreachable_mirror_is_refused(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: bookworm\n"
                       "Components: main\n")
    message = refused("ibad", "--subnet", "10.189.0.0/24",
                      env={**os.environ, "WSGISTACK_SANDBOX_APT_SOURCES": str(sources)})
    assert "mirror is unreachable" in message


def test_used_subnet_is_refused() -> None:
    subprocess.run(["ip", "link", "add", "wsgtest0", "type", "veth", "peer", "name", "wsgtest1"],
                   check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.181.0.1/24", "dev", "wsgtest0"], check=True)
        subprocess.run(["ip", "link", "set", "wsgtest0", "up"], check=True)
        message = refused("ibad", "--subnet", "10.181.0.0/24")
        assert "10.181.0.0/24 is already used" in message and "--subnet" in message
    finally:
        subprocess.run(["ip", "link", "del", "wsgtest0"], check=True)


def test_down_leaves_nothing_behind(sandbox: Sandbox) -> None:
    assert all(traces(NAME).values()), "the sandbox is up before"
    sandbox_cli(NAME, "down")
    assert traces(NAME) == {kind: [] for kind in traces(NAME)}
