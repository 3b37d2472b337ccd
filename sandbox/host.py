"""One host's disk and life: an overlay root, its identity, and systemd-nspawn booting it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.network import netns_path
from sandbox.spec import HostSpec, SandboxSpec
from sandbox.system import run, succeeds


class HostDisk:
    """Where a host's files live under the sandbox's state dir."""

    def __init__(self, spec: SandboxSpec, host: HostSpec) -> None:
        self.dir = spec.state_dir / "hosts" / host.name
        self.upper = self.dir / "upper"
        self.work = self.dir / "work"
        self.root = self.dir / "root"
        self.pid_file = self.dir / "nspawn.pid"
        self.log = self.dir / "nspawn.log"
        self.host_keys = self.dir / "host_keys"


def is_mounted(path: Path) -> bool:
    return succeeds(["mountpoint", "-q", str(path)])


def mount_root(disk: HostDisk, image: Path) -> None:
    for path in (disk.upper, disk.work, disk.root):
        path.mkdir(parents=True, exist_ok=True)
    if not is_mounted(disk.root):
        options = f"lowerdir={image},upperdir={disk.upper},workdir={disk.work}"
        run(["mount", "-t", "overlay", "overlay", "-o", options, str(disk.root)])


def unmount_root(disk: HostDisk) -> None:
    if is_mounted(disk.root):
        run(["umount", str(disk.root)])


def personalise(disk: HostDisk, host: HostSpec, authorized_key: str, login: str) -> None:
    """Give a new host its name, DNS, its own SSH host keys, and the SSH key of `login`:
    root, or a sudo user as on a cloud image (root's SSH login then refused)."""
    root = disk.root
    machine_id = root / "etc/machine-id"
    if not machine_id.read_text().strip():
        machine_id.write_text(f"{uuid.uuid4().hex}\n")
    (root / "etc/hostname").write_text(f"{host.name}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{host.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    if login == "root":
        authorize(root / "root", authorized_key, 0, 0)
    else:
        make_sudo_user(root, login, authorized_key)
    if not list((root / "etc/ssh").glob("ssh_host_*_key")):
        run(["ssh-keygen", "-A", "-f", str(root)])
    package_as_containers_do(root)


def package_as_containers_do(root: Path) -> None:
    """dpkg and apt as Debian's container images set them: no fsync per unpacked file (a
    sandbox host's disk is thrown away, never power-cut) and no translations fetched.
    Measured on a fresh host: apt's update and the stack's packages 19.7 s -> 17.2 s,
    15.9 -> 14.5 CPU-s."""
    (root / "etc/dpkg/dpkg.cfg.d/wsgistack-sandbox").write_text("force-unsafe-io\n")
    (root / "etc/apt/apt.conf.d/90wsgistack-sandbox").write_text('Acquire::Languages "none";\n')


def authorize(home: Path, authorized_key: str, uid: int, gid: int) -> None:
    """The sandbox's key as the only one in `home`'s authorized_keys."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(authorized_key)
    for path, mode in ((ssh_dir, 0o700), (keys, 0o600)):
        os.chown(path, uid, gid)
        os.chmod(path, mode)


def make_sudo_user(root: Path, user: str, authorized_key: str) -> None:
    """As Debian's cloud images come: `user` with passwordless sudo and the SSH key, and
    root's SSH login refused."""
    if not (root / "home" / user).is_dir():
        run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash",
             "--groups", "sudo", user])
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.startswith(f"{user}:"))
    authorize(root / "home" / user, authorized_key, int(entry[2]), int(entry[3]))
    sudoers = root / "etc/sudoers.d" / f"90-{user}"
    sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
    os.chmod(sudoers, 0o440)
    (root / "root/.ssh/authorized_keys").unlink(missing_ok=True)
    (root / "etc/ssh/sshd_config.d/60-wsgistack-sandbox.conf").write_text(
        "# A cloud image's: no root login over SSH (the sandbox's sudo user logs in)\n"
        "PermitRootLogin no\n")


def host_public_keys(disk: HostDisk) -> list[str]:
    """The host's real public host keys, read from its disk (for known_hosts)."""
    return [path.read_text().split()[0] + " " + path.read_text().split()[1]
            for path in sorted((disk.root / "etc/ssh").glob("ssh_host_*_key.pub"))]


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_dirs(host: HostSpec) -> list[Path]:
    """The host's own cgroup in each hierarchy systemd uses.

    With no systemd on the controller, nspawn --keep-unit hands the container the cgroup
    it was started in. Shared by several containers, their systemds fight over it (units
    fail with 219/CGROUP), so each host starts in one of its own.
    """
    if (CGROUP_ROOT / "cgroup.controllers").exists():  # pure cgroup v2
        hierarchies = [CGROUP_ROOT]
    else:  # v1 or hybrid: systemd's named hierarchy, and the unified one if mounted
        hierarchies = [h for h in (CGROUP_ROOT / "systemd", CGROUP_ROOT / "unified")
                       if (h / "cgroup.procs").exists()]
    return [h / "wsgistack-sandbox" / host.name for h in hierarchies]


def cgroup_pids(top: Path) -> set[int]:
    """Every process still in a cgroup or one below it."""
    return {int(pid) for procs in top.rglob("cgroup.procs")
            for pid in procs.read_text().split()}


def empty_cgroup(top: Path, timeout: float = 10) -> None:
    """Wait out the host's last processes, killing any left.

    The host's processes outlive its systemd-nspawn by a moment while the kernel tears its
    pid namespace down; until they are gone their cgroups cannot be removed (EBUSY). They
    are the stopped host's own: nothing else is ever put in its cgroup.
    """
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(top):
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {sorted(pids)} stay in {top} after its host stopped")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def remove_cgroups(host: HostSpec) -> None:
    for top in cgroup_dirs(host):
        if top.exists():
            empty_cgroup(top)
            for directory in sorted(top.rglob("*/"), key=lambda p: -len(p.parts)):
                if directory.is_dir():
                    directory.rmdir()
            top.rmdir()
        if top.parent.exists() and not any(p.is_dir() for p in top.parent.iterdir()):
            top.parent.rmdir()


def nspawn_pid(disk: HostDisk, host: HostSpec) -> int | None:
    """The pid of this host's systemd-nspawn, if it is running."""
    try:
        pid = int(disk.pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError):
        return None
    return pid if f"--machine={host.name}".encode() in cmdline else None


# Every booted host's systemd takes about a dozen inotify instances, all counted against
# the controller's root user; Debian's limit (128) stops the tenth host's path units.
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES_NEEDED = 1024


def allow_inotify_for_many_hosts() -> None:
    """Raise the controller's inotify instance limit for many hosts; never lower it."""
    if int(INOTIFY_INSTANCES.read_text()) < INOTIFY_INSTANCES_NEEDED:
        INOTIFY_INSTANCES.write_text(f"{INOTIFY_INSTANCES_NEEDED}\n")


FUSE = Path("/dev/fuse")


def open_fuse_to_users() -> None:
    """/dev/fuse as Debian's udev makes it (0666: users mount their own FUSE filesystems,
    e.g. postgres its backup repository), where this controller left it root's alone. The
    hosts share this node (--bind)."""
    if FUSE.exists() and FUSE.stat().st_mode & 0o777 != 0o666:
        FUSE.chmod(0o666)


def boot(disk: HostDisk, host: HostSpec) -> None:
    """Start systemd-nspawn detached, booting the host's systemd in its own namespace."""
    open_fuse_to_users()
    command = [
        "systemd-nspawn", "-q", "-D", str(disk.root), f"--machine={host.name}",
        "--register=no", "--keep-unit", f"--network-namespace-path={netns_path(host)}",
        "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--console=read-only", "-b",
        # A firewall of its own, as a server has (the database host's nftables table): the
        # capability acts only on the host's own network namespace.
        "--capability=CAP_NET_ADMIN",
        # FUSE, as a server has: the database host mounts its backup repository with sshfs.
        "--bind=/dev/fuse",
    ]
    cgroups = cgroup_dirs(host)
    for cgroup in cgroups:
        cgroup.mkdir(parents=True, exist_ok=True)

    def enter_own_cgroup() -> None:
        for cgroup in cgroups:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    with open(disk.log, "ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            preexec_fn=enter_own_cgroup,
        )
    disk.pid_file.write_text(f"{process.pid}\n")


def wait_running(host: HostSpec, ssh: list[str], timeout: float = 60) -> None:
    """Wait until the host's systemd reports `running` over SSH."""
    deadline = time.monotonic() + timeout
    state = "unreachable"
    while time.monotonic() < deadline:
        result = subprocess.run(
            [*ssh, host.name, "systemctl", "is-system-running", "--wait"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        state = result.stdout.strip() or "unreachable"
        if state in ("running", "degraded"):
            if state == "degraded":
                failed = subprocess.run(
                    [*ssh, host.name, "systemctl --failed --plain --no-legend;"
                     " for u in $(systemctl --failed --plain --no-legend | cut -d\" \" -f1); do"
                     " journalctl -b --no-pager -n 8 -u $u; done"],
                    capture_output=True, text=True).stdout
                raise SandboxError(f"host {host.name} booted degraded: {failed.strip()}")
            return
        time.sleep(0.3)
    raise SandboxError(f"host {host.name} did not boot within {timeout:.0f}s ({state});"
                       f" see its log under the sandbox state dir")


def stop(disk: HostDisk, host: HostSpec, timeout: float = 30) -> None:
    """Shut the host down (SIGTERM makes nspawn power it off), killing it if it hangs."""
    pid = nspawn_pid(disk, host)
    if pid is None:
        remove_cgroups(host)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while nspawn_pid(disk, host) and time.monotonic() < deadline:
        time.sleep(0.1)
    if nspawn_pid(disk, host):
        os.killpg(pid, signal.SIGKILL)
        while nspawn_pid(disk, host):
            time.sleep(0.1)
    disk.pid_file.unlink(missing_ok=True)
    remove_cgroups(host)
