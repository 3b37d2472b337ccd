"""up, down, restart and status: the sandbox's whole life, each safe to repeat."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sandbox import ca, network
from sandbox import host as hosts
from sandbox.access import AccessFiles, existing_sandboxes, load_spec, save_spec
from sandbox.errors import SandboxError
from sandbox.image import check_reachable, controller_mirrors, ensure_image
from sandbox.spec import STATE_ROOT, HostSpec, SandboxSpec

REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mountpoint": "util-linux",
}


# Held while a sandbox is made or removed: what sandboxes share on the controller
# (ip_forward, the state root) is never changed by two of them at once (tests run several).
LOCK = Path("/run/wsgistack-sandbox.lock")


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def preflight(spec: SandboxSpec, fresh: bool) -> None:
    """Check everything that can be checked before anything is made."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (namespaces, mounts, nftables): run it as root")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    if missing:
        raise SandboxError(f"missing tools: apt-get install -y {' '.join(missing)}")
    if fresh:
        network.check_subnet_free(spec)
        for other in existing_sandboxes():
            other_spec = load_spec(other)
            if other_spec and other_spec.network.overlaps(spec.network):
                raise SandboxError(
                    f"subnet {spec.subnet} overlaps sandbox {other!r} ({other_spec.subnet}):"
                    " choose another with --subnet"
                )
    check_reachable(controller_mirrors(), spec.suite)


def up(spec: SandboxSpec) -> None:
    """Create and boot every host of the sandbox; hosts already up are left as they are."""
    existing = load_spec(spec.name)
    if existing is not None and existing != spec:
        raise SandboxError(
            f"sandbox {spec.name!r} already exists as {existing.suite} {existing.subnet}"
            f" {existing.groups}: run `python -m sandbox --name {spec.name} down` first"
        )
    preflight(spec, fresh=existing is None)
    image = ensure_image(spec.suite, controller_mirrors())
    with machine_lock():
        try:
            save_spec(spec)
            start_all(spec, image)
        except BaseException:
            if existing is None:
                remove(spec.name)  # a sandbox this call began is removed whole
            raise


def start_all(spec: SandboxSpec, image) -> None:
    files = AccessFiles(spec.state_dir)
    public_key = files.ensure_key()
    network.ensure_nat(spec)
    hosts.allow_inotify_for_many_hosts()
    host_keys = {}
    for host in spec.hosts:
        disk = hosts.HostDisk(spec, host)
        network.ensure_link(spec, host)
        hosts.mount_root(disk, image)
        hosts.personalise(disk, host, public_key, spec.login)
        if host.group == ca.GROUP:
            ca.write_config(spec, disk.root)
        host_keys[host.name] = hosts.host_public_keys(disk)
    files.write(spec, host_keys)
    for host in spec.hosts:
        disk = hosts.HostDisk(spec, host)
        if hosts.nspawn_pid(disk, host) is None:
            hosts.boot(disk, host)
    for host in spec.hosts:
        hosts.wait_running(host, files.ssh_command())
        network.bring_up_loopback(host)
    if ca.ca_host(spec):
        ca.provision(spec, files.ssh_command())


def restart(spec: SandboxSpec, host: HostSpec) -> None:
    """Reboot one host, keeping its disk (its overlay's upper dir)."""
    disk = hosts.HostDisk(spec, host)
    hosts.stop(disk, host)
    network.ensure_link(spec, host)
    hosts.boot(disk, host)
    hosts.wait_running(host, AccessFiles(spec.state_dir).ssh_command())
    network.bring_up_loopback(host)


def stop_host(spec: SandboxSpec, host: HostSpec) -> None:
    """Power one host off, keeping its disk; `restart` boots it again."""
    hosts.stop(hosts.HostDisk(spec, host), host)


def replace_host(spec: SandboxSpec, host: HostSpec) -> None:
    """A lost host replaced: its disk thrown away, a new bare one booted at the same address
    (new host keys, which the sandbox's known_hosts records)."""
    image = ensure_image(spec.suite, controller_mirrors())
    with machine_lock():
        disk = hosts.HostDisk(spec, host)
        hosts.stop(disk, host)
        hosts.unmount_root(disk)
        shutil.rmtree(disk.dir)
        start_all(spec, image)


def down(name: str) -> bool:
    """Remove everything the sandbox made: processes, mounts, links, NAT, files.

    Returns False when there was no such sandbox.
    """
    with machine_lock():
        return remove(name)


def remove(name: str) -> bool:
    spec = load_spec(name)
    if spec is None:
        return False
    for host in spec.hosts:
        disk = hosts.HostDisk(spec, host)
        hosts.stop(disk, host)
        hosts.unmount_root(disk)
        network.remove_link(host)
    network.remove_nat(spec)
    shutil.rmtree(spec.state_dir)
    if not existing_sandboxes():
        network.restore_forwarding()
        if STATE_ROOT.exists() and not any(STATE_ROOT.iterdir()):
            STATE_ROOT.rmdir()
    return True


def status(spec: SandboxSpec) -> list[tuple[HostSpec, str, bool]]:
    """(host, address, running) for each host of the sandbox."""
    return [
        (host, str(spec.address(host)), is_running(spec, host))
        for host in spec.hosts
    ]


def is_running(spec: SandboxSpec, host: HostSpec) -> bool:
    return hosts.nspawn_pid(hosts.HostDisk(spec, host), host) is not None
