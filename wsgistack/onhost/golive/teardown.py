"""What the deploy puts on a host and destroy takes back off: Debian's packages, installed
with a record of what dpkg gained by them (install-packages) and taken off by that record
alone (remove-packages); and the deploy's own paths (remove-paths), each removed only where
every dir above it is root's alone."""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import pwd
import re
import stat
from pathlib import PurePosixPath

from .files import Refused, remove_path, run, say, tail, write_atomically
from .layout import installed_accounts, installed_packages, installed_paths
from .protocol import HOLDS_DATA
from .users import as_user

DPKG_STATUS = "var/lib/dpkg/status"
APT = ("apt-get", "-q", "-y", "-o", "Dpkg::Options::=--force-confdef",
       "-o", "Dpkg::Options::=--force-confold")
APT_ENVIRONMENT = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8",
                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
# What a package's maintainer scripts made and its purge leaves behind, taken off with it:
# files (a pattern, rotated copies too) unlinked, dirs removed only where empty, and the dirs
# above each where that leaves them empty. Never a tree: PostgreSQL's clusters stay where
# its server was removed, not purged (its dirs go once the last of its packages is purged).
# By package, a pattern.
LEFT_BY = {"nginx-common": ("var/www/html/index.nginx-debian.html",),
           "supervisor": ("var/log/supervisor/supervisord.log*",),
           "pgbackrest": ("var/log/pgbackrest/*.log*",),
           "postgresql-common|postgresql-[0-9]+": ("etc/postgresql", "var/lib/postgresql",
                                                   "var/log/postgresql")}
# What a package changes that the host may have had before: each path as it was before the
# deploy's first install is recorded, and put back so once the package is purged (trixie's
# images link /etc/default/locale, which locales' postinst writes and its purge deletes;
# bookworm's have none).
PUT_BACK = {"locales": ("etc/default/locale",)}
SIMULATED = re.compile(r"^(?:Purg|Remv) ([^\s:]+)", re.MULTILINE)


def states(root: PurePosixPath) -> dict[str, tuple[str, str]]:
    """Each package dpkg knows: (what is wanted, its state), from dpkg's status file."""
    try:
        with open(root / DPKG_STATUS, encoding="utf-8", errors="replace") as status:
            text = status.read()
    except FileNotFoundError:
        return {}
    found = {}
    for paragraph in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in paragraph.splitlines()
                      if ": " in line and not line.startswith(" "))
        words = fields.get("Status", "").split()
        if "Package" in fields and len(words) == 3:
            found[fields["Package"]] = (words[0], words[2])
    return found


def installed(root: PurePosixPath) -> set[str]:
    """The packages dpkg has installed (wanted installed, or held)."""
    return {name for name, (want, state) in states(root).items()
            if want in ("install", "hold") and state == "installed"}


def configured(root: PurePosixPath) -> set[str]:
    """The packages removed but not purged: their config (and data) left."""
    return {name for name, (_, state) in states(root).items() if state == "config-files"}


def read_lines(path: PurePosixPath) -> set[str]:
    try:
        with open(path, encoding="utf-8") as record:
            return {line.strip() for line in record if line.strip()}
    except FileNotFoundError:
        return set()


def write_lines(path: PurePosixPath, lines: set[str]) -> None:
    """A record of root's, a line each, sorted."""
    write_record(path, "".join(f"{line}\n" for line in sorted(lines)).encode(), 0o644)


def write_record(path: PurePosixPath, content: bytes, mode: int) -> None:
    """A record of root's in its own dir, in one rename; none where it would be empty."""
    if not content:
        remove_path(path)
        return
    os.makedirs(path.parent, 0o755, exist_ok=True)
    write_atomically(path, content, 0, 0, mode)


def recorded(root: PurePosixPath) -> set[str]:
    """What the deploy's installs gained on this host so far."""
    return read_lines(installed_packages(root))


def remember(root: PurePosixPath, names: set[str]) -> None:
    write_lines(installed_packages(root), names)


def apt_get(*arguments: str) -> str:
    """apt-get, never asking; its output, or a refusal with its last lines."""
    done = run([*APT, *arguments], env=APT_ENVIRONMENT)
    if done.returncode != 0:
        raise Refused(f"apt-get {arguments[0]} failed: " + tail(done.stdout + done.stderr, 5))
    return done.stdout


def install_packages(root: PurePosixPath, packages: list[str], background: bool = False
                     ) -> None:
    """apt-get update and install of those missing; with `background`, in a process of its
    own, which wait-packages waits for (packages.py)."""
    from .packages import start, wait_for_any  # here: packages.py imports this module

    wait_for_any(root)  # one a killed deploy started: recorded first
    before = installed(root)
    missing = [name for name in packages if name not in before]
    if not missing:
        say(f"{', '.join(packages)}: installed already")
        return
    had = accounts(root)
    remember_paths(root)
    if background:
        start(root, missing, before, had)
        say(f"installing {', '.join(missing)} in the background (golive wait-packages)")
        return
    try:
        apt_install(missing)
    finally:  # what a failed install did gain is the deploy's too
        gained = record_gain(root, before, had)
    say(installed_line(missing, gained))


def apt_install(missing: list[str]) -> None:
    apt_get("update")
    apt_get("install", "--no-install-recommends", *missing)


def record_gain(root: PurePosixPath, before: set[str], had: set[str]) -> set[str]:
    """Add what dpkg gained since `before`, and the accounts made since `had`, to the
    record (destroy's); what it gained."""
    gained = installed(root) - before
    remember(root, recorded(root) | gained)
    write_lines(installed_accounts(root), read_lines(installed_accounts(root))
                | (accounts(root) - had))
    return gained


def installed_line(missing: list[str], gained: set[str]) -> str:
    return f"installed {', '.join(missing)} ({len(gained)} packages with their dependencies)"


def remove_packages(root: PurePosixPath, purge: bool) -> None:
    from .packages import wait_for_any

    wait_for_any(root)  # an install a killed deploy started: in the record first
    ours = recorded(root)
    present = sorted(ours & installed(root))
    left = sorted(ours & configured(root)) if purge else []
    if present:
        others = sorted(set(SIMULATED.findall(apt_get("-s", "purge", *present))) - ours)
        if others:
            raise Refused(f"taking off the packages the deploy installed would remove"
                          f" {', '.join(others)} too, which it did not install: remove those"
                          " first, or keep the deploy's")
    kept = [] if purge else [name for name in present if HOLDS_DATA.match(name)]
    if kept:
        apt_get("remove", *kept)
    purged = [name for name in present + left if name not in kept]
    if purged:
        apt_get("purge", *purged)
        put_back(root, [path for name in purged for path in PUT_BACK.get(name, ())])
        for left in sorted({left for name in purged for packages, lefts in LEFT_BY.items()
                            if re.fullmatch(packages, name) for left in lefts}):
            remove_left(root, left)
    remember(root, ours & (installed(root) | configured(root)))
    if not recorded(root):  # every package gone: what they made and changed too
        remove_accounts(root)
        put_back(root, list(recorded_paths(root)))
    say(f"purged {len(purged)} packages"
        + (f"; removed {', '.join(kept)}, keeping its data" if kept else ""))


def remember_paths(root: PurePosixPath) -> None:
    """Each PUT_BACK path as it is now, where the record has none yet (before the deploy's
    first install of its package, then): a link's target, a file's content and mode, or
    None where there is none."""
    record = recorded_paths(root)
    for each in (path for paths in PUT_BACK.values() for path in paths if path not in record):
        path = root / each
        if os.path.islink(path):
            record[each] = {"link": os.readlink(path)}
        elif os.path.isfile(path):
            with open(path, "rb") as file:
                record[each] = {"file": base64.b64encode(file.read()).decode(),
                                "mode": stat.S_IMODE(os.stat(path).st_mode)}
        else:
            record[each] = None
    write_paths(root, record)


def put_back(root: PurePosixPath, paths: list[str]) -> None:
    """Each of `paths` as the record says it was before the deploy's first install: made
    again where a purge removed it, removed where the host had none."""
    record = recorded_paths(root)
    for each in paths:
        if each not in record:
            continue
        path, was = root / each, record.pop(each)
        if was is None:
            remove_path(path)
        elif not os.path.lexists(path) and "link" in was:
            os.symlink(was["link"], path)
        elif not os.path.lexists(path):
            write_atomically(path, base64.b64decode(was["file"]), 0, 0, was["mode"])
    write_paths(root, record)


def recorded_paths(root: PurePosixPath) -> dict[str, dict | None]:
    try:
        with open(installed_paths(root), encoding="utf-8") as record:
            return dict(json.load(record))
    except FileNotFoundError:
        return {}


def write_paths(root: PurePosixPath, record: dict[str, dict | None]) -> None:
    write_record(installed_paths(root),
                 json.dumps(record, indent=1, sort_keys=True).encode() if record else b"", 0o600)


def remove_left(root: PurePosixPath, pattern: str) -> None:
    """What a purged package left (LEFT_BY): each file matching `pattern` unlinked (a link
    itself, never its target), each dir removed if empty, as the owner of the dir it is in
    where that is not root's alone (pgBackRest's logs, postgres's); then the dirs above,
    below `root`, that this leaves empty."""
    for found in sorted(glob.glob(str(root / pattern))):
        path = PurePosixPath(found)
        if root_alone(path.parent, root):
            unlink_or_rmdir(path)
        else:
            with contextlib.suppress(KeyError):  # an owner with no account: left alone
                owner = pwd.getpwuid(os.lstat(path.parent).st_uid).pw_name
                as_user(owner, lambda path=path: unlink_or_rmdir(path))
        for directory in path.parents:
            if directory == root or not directory.is_relative_to(root):
                break
            try:
                os.rmdir(directory)
            except OSError:  # not empty (or not there): it stays, and those above it
                break


def unlink_or_rmdir(path: PurePosixPath) -> None:
    """A file or link unlinked, or a dir removed if empty (a dir not empty stays)."""
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)


def accounts(root: PurePosixPath) -> set[str]:
    """Each user ("user NAME") and group ("group NAME") the host has."""
    found = set()
    for kind, database in (("user", "etc/passwd"), ("group", "etc/group")):
        with contextlib.suppress(FileNotFoundError), open(root / database) as lines:
            found |= {f"{kind} {line.split(':', 1)[0]}" for line in lines if ":" in line}
    return found


def remove_accounts(root: PurePosixPath) -> None:
    """The accounts the recorded packages made (a system user such as postgres), once none
    of those packages is left: users first, then groups."""
    made = sorted(read_lines(installed_accounts(root)), key=lambda each: each[0] != "u")
    for each in made:
        kind, name = each.split(" ", 1)
        if each in accounts(root):
            done = run(["userdel" if kind == "user" else "groupdel", name])
            if done.returncode != 0:
                raise Refused(f"{done.args[0]} {name}: {done.stderr.strip()}")
    remove_path(installed_accounts(root))


def root_alone(directory: PurePosixPath, root: PurePosixPath) -> bool:
    """Whether `directory` and every dir above it (up to `root`) are real dirs only this
    user (root) can write."""
    for each in (directory, *directory.parents):
        if not each.is_relative_to(root):
            break
        info = os.lstat(each)
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return False
    return True


def mount_points() -> list[PurePosixPath]:
    """Where something is mounted on this host (the kernel's list, its octal escapes read)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        return [PurePosixPath(re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)),
                                     line.split()[4])) for line in mounts]


def remove_paths(root: PurePosixPath, paths: list[str], empty_dirs: list[str]) -> None:
    mounted = mount_points()
    for each in paths:
        path = under(root, each)
        inside = [mount for mount in mounted if mount.is_relative_to(path)]
        if inside:  # removing it would reach into another file system (a backup host's)
            raise Refused(f"{path}: {inside[0]} is mounted there: not removing it")
        try:
            alone = root_alone(path.parent, root)
        except FileNotFoundError:
            continue
        if not alone:
            raise Refused(f"{path}: a dir above it is not root's alone: not removing it as"
                          " root")
        remove_path(path)
    for each in empty_dirs:
        directory = under(root, each)
        if os.path.isdir(directory) and not os.path.islink(directory):
            with contextlib.suppress(OSError):  # not empty: it stays
                os.rmdir(directory)
    say(f"removed {len(paths)} paths")


def under(root: PurePosixPath, each: str) -> PurePosixPath:
    """An absolute path of the host, below `root`; refused if it names no path of ours."""
    path = root / PurePosixPath(each).relative_to("/")
    if ".." in path.parts or path == root:
        raise Refused(f"{each}: not a path destroy removes")
    return path
