"""A new release's build commands (e.g. collectstatic), as the build user, and the copy of
what they made into the release's root-owned build/, within the build limits: a file the
live release's build/ holds with the same bytes is a hard link to it, stored once."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath

from .files import Refused, read_link, say
from .layout import BUILD_USER, AppPaths, candidate
from .releases import Config, app_environment, read_environment, run_app_commands
from .users import as_user, kill_all_of, user_options

BUILD_DIR_ENV = "WSGISTACK_BUILD_DIR"  # where build commands write (e.g. STATIC_ROOT)
# What one release's build may make, at most: bytes (as files claim them, sparse or not),
# files and dirs, and the depth of dirs. Past either, the release is not installed.
BUILD_LIMITS = {"bytes": 1 << 30, "files": 100_000, "depth": 64}


def build(root: PurePosixPath, app: str, version: str, config: str | None,
          config_env: str | None, prefix: str, build_commands: list[list[str]],
          build_user: str = BUILD_USER) -> None:
    """Run the build commands of a newly installed release (e.g. Django's collectstatic)
    as the build user (never the app's, which the running app is: it must not reach what
    the next release is built from), in the app's group to read its candidate config, with
    its environment, writing into a fresh dir of the build user's own in root's build dir
    ($WSGISTACK_BUILD_DIR, its HOME beside it); then copy what they made, regular files and
    dirs only and within BUILD_LIMITS, into the release's root-owned build/ (read-only to
    the app, served by nginx), linking each file the live release built the same. The
    build user's processes and dir go when it ends."""
    paths, user = AppPaths(app, root), build_user
    scratch, builder = paths.build_scratch, pwd.getpwnam(user)
    output = paths.release(version).build
    fresh_dir(scratch, builder)
    made = scratch / "out"
    try:
        environment = {**read_environment(candidate(paths.env_file)),
                       **app_environment(paths, version, Config(config, config_env), ".next",
                                         prefix),
                       "HOME": str(scratch), "USER": user, BUILD_DIR_ENV: str(made)}
        run_builds(paths, version, environment, build_commands, user, made)
        if os.path.lexists(output):
            shutil.rmtree(output)
        try:
            copy_tree(made, output, live_build(paths, version))
        except BuildTooLarge as too_large:
            shutil.rmtree(output, ignore_errors=True)
            raise Refused(f"{paths.name} {version}: its build commands made {too_large}; the"
                          " release was not installed") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # fd-based: never follows a link
    say(f"built {paths.name} {version} into {output}")


def live_build(paths: AppPaths, version: str) -> PurePosixPath | None:
    """The live release's build/, which a new release's unchanged files link to."""
    live = read_link(paths.current)
    if not live or PurePosixPath(live).name == version:
        return None
    return paths.home / live / "build"


def run_builds(paths: AppPaths, version: str, environment: dict[str, str],
               commands: list[list[str]], user: str, made: PurePosixPath) -> None:
    """The build commands as `user`, in the app's group, writing into `made`; every process
    of `user` is ended after them, whatever happened, so nothing changes what is copied."""
    try:
        as_user(user, lambda: os.mkdir(made, 0o755))
        run_app_commands(paths, version, environment, commands, "build command",
                         "the release was not installed", user_options(user, paths.name))
    finally:
        kill_all_of(user)


def fresh_dir(path: PurePosixPath, owner: pwd.struct_passwd) -> None:
    """A new empty dir (0700) of `owner`'s, in a parent that only root can write."""
    os.makedirs(path.parent, mode=0o755, exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o700)
    os.chown(path, owner.pw_uid, owner.pw_gid)


class BuildTooLarge(Exception):
    """A build made more than BUILD_LIMITS allows; says what."""


def copy_tree(source: PurePosixPath, target: PurePosixPath,
              unchanged_from: PurePosixPath | None = None) -> None:
    """Copy a tree another user owns into a new root-owned one (dirs 0755, files 0644),
    reading it through directory descriptors with O_NOFOLLOW: links, devices and FIFOs are
    skipped, never followed, however the tree changes meanwhile. Within BUILD_LIMITS
    (BuildTooLarge): its depth bounds the recursion and the descriptors held. A file whose
    bytes are those of the same path in root's tree `unchanged_from` is a hard link to it."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    budget = {"bytes": BUILD_LIMITS["bytes"], "files": BUILD_LIMITS["files"]}
    top = os.open(source, flags | os.O_DIRECTORY)
    earlier = open_in(None, str(unchanged_from), flags | os.O_DIRECTORY) \
        if unchanged_from else None
    try:
        copy_dir(top, target, flags, budget, 0, earlier)
    finally:
        os.close(top)
        if earlier is not None:
            os.close(earlier)


def copy_dir(directory: int, target: PurePosixPath, flags: int, budget: dict[str, int],
             depth: int, earlier: int | None) -> None:
    if depth > BUILD_LIMITS["depth"]:
        raise BuildTooLarge(f"dirs deeper than {BUILD_LIMITS['depth']}")
    os.mkdir(target, 0o755)
    os.chmod(target, 0o755)  # whatever the umask
    for name, opened in entries(directory, flags):
        try:
            spend(budget, "files", 1, f"more than {BUILD_LIMITS['files']} files")
            kind = os.fstat(opened)
            if stat.S_ISDIR(kind.st_mode):
                below = open_in(earlier, name, flags | os.O_DIRECTORY)
                try:
                    copy_dir(opened, target / name, flags, budget, depth + 1, below)
                finally:
                    if below is not None:
                        os.close(below)
            elif stat.S_ISREG(kind.st_mode):
                spend(budget, "bytes", max(kind.st_size, kind.st_blocks * 512),
                      f"more than {BUILD_LIMITS['bytes']} bytes")
                if not link_unchanged(opened, kind.st_size, earlier, name, target / name,
                                      flags):
                    copy_file(opened, target / name)
        finally:
            os.close(opened)


def open_in(directory: int | None, name: str, flags: int) -> int | None:
    """`name` in the open dir `directory` (or a path where None), or None if it is not
    there (or is a link)."""
    try:
        return os.open(name, flags, dir_fd=directory)
    except OSError:
        return None


def link_unchanged(opened: int, size: int, earlier: int | None, name: str,
                   target: PurePosixPath, flags: int) -> bool:
    """Hard-link `target` to `name` in `earlier` if that is a regular file of the same bytes
    as `opened`; whether it did. `opened` is read from its start again after."""
    if earlier is None:
        return False
    old = open_in(earlier, name, flags)
    if old is None:
        return False
    try:
        known = os.fstat(old)
        if not (stat.S_ISREG(known.st_mode) and known.st_size == size
                and same_bytes(opened, old)):
            return False
        os.link(name, target, src_dir_fd=earlier, follow_symlinks=False)
        return True
    finally:
        os.close(old)
        os.lseek(opened, 0, os.SEEK_SET)


def same_bytes(one: int, other: int) -> bool:
    while True:
        chunk = os.read(one, 1 << 20)
        if chunk != os.read(other, 1 << 20):
            return False
        if not chunk:
            return True


def entries(directory: int, flags: int) -> Iterator[tuple[str, int]]:
    """Each entry of an open dir, opened without following it; links and entries gone
    since are skipped."""
    for entry in os.scandir(directory):
        try:
            yield entry.name, os.open(entry.name, flags, dir_fd=directory)
        except OSError:  # a link (ELOOP), or gone since
            continue


def spend(budget: dict[str, int], what: str, amount: int, said: str) -> None:
    budget[what] -= amount
    if budget[what] < 0:
        raise BuildTooLarge(said)


def copy_file(opened: int, target: PurePosixPath) -> None:
    written = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(written, "wb") as out:
        while chunk := os.read(opened, 1 << 20):
            out.write(chunk)
    os.chmod(target, 0o644)
