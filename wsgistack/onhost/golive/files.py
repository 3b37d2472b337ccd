"""What every step does with files: output that never decides the outcome, the deploy
lock, atomic writes and links, candidates verified and staged as <file>.new, and stamps."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from .layout import Unit, candidate, lock_dir


def say(text: str, err: bool = False) -> None:
    """Print a line; if the controller is gone (a broken pipe), the step goes on regardless."""
    with contextlib.suppress(OSError):
        os.write(2 if err else 1, (text.rstrip("\n") + "\n").encode(errors="replace"))


class Refused(Exception):
    """The step cannot go on; the live state is as it was. The message says why."""


def keep_going_without_the_controller() -> None:
    """A deploy killed mid-step closes the SSH channel: finish the step, not half of it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


LOCK_WAIT = 300  # seconds a step waits for another deploy's step on this host


@contextlib.contextmanager
def deploy_lock(root: PurePosixPath, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the host's deploy lock: a file in a root-only dir, opened without following
    links, so no other user can hold it, replace it, or point it elsewhere."""
    directory = lock_dir(root)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Refused(f"{directory} is not a directory only this user can write: not"
                      " taking the deploy lock there")
    fd = os.open(directory / "deploy.lock",
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Refused(f"another deploy held {directory}/deploy.lock for"
                                  f" {wait:.0f}s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def write_atomically(path: PurePosixPath, content: bytes, uid: int, gid: int, mode: int) -> None:
    """Write `path` in one rename, with its owner and mode set before it appears."""
    temporary = path.with_name(f".{path.name}.golive")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(content)
        if os.getuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def parse_expect(pairs: list[str]) -> dict[PurePosixPath, str]:
    expected = {}
    for pair in pairs:
        path, _, sha256 = pair.rpartition("=")
        if path and sha256 == "missing":
            raise Refused(f"{path} is missing: a deploy writes it (run deploy.py first)")
        if not path or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise Refused(f"--expect {pair!r}: expected FILE=SHA256")
        expected[PurePosixPath(path)] = sha256
    return expected


@dataclass(frozen=True)
class Staged:
    """A unit's candidates as verified, staged beside the live files as <file>.new."""

    unit: Unit

    def new(self, path: PurePosixPath) -> PurePosixPath:
        return path.with_name(path.name + ".new")

    def previous(self, path: PurePosixPath) -> PurePosixPath:
        return path.with_name(path.name + ".prev")

    @classmethod
    def verified(cls, unit: Unit, expected: dict[PurePosixPath, str]) -> Staged:
        """Read each candidate once and stage exactly the bytes whose digest this deploy
        expects; refuse if any differs (another deploy wrote it since)."""
        if set(expected) != set(unit.candidates):
            raise Refused(f"{unit.name}: expected digests for {sorted(map(str, expected))},"
                          f" not the unit's candidates {sorted(map(str, unit.candidates))}")
        staged = cls(unit)
        for path in unit.files:
            source = candidate(path)
            try:
                with open(source, "rb") as file:
                    info = os.fstat(file.fileno())
                    content = file.read()
            except OSError as error:
                raise Refused(f"cannot read the candidate {source}: {error.strerror}") from None
            if hashlib.sha256(content).hexdigest() != expected[source]:
                raise Refused(f"{source} is not the candidate this deploy wrote (another deploy"
                              " changed it since): nothing was made live; run the deploy again")
            write_atomically(staged.new(path), content, info.st_uid, info.st_gid,
                             stat.S_IMODE(info.st_mode))
        return staged

    @classmethod
    def of_content(cls, unit: Unit, contents: dict[PurePosixPath, tuple[bytes, int]]
                   ) -> Staged:
        """Stage content this step made itself (root's, each with its mode)."""
        staged = cls(unit)
        for path in unit.files:
            content, mode = contents[path]
            write_atomically(staged.new(path), content, 0, 0, mode)
        return staged

    def make_live(self) -> None:
        """Keep each live file as <file>.prev (a hard link: the live file never goes
        missing), then rename each staged file over it."""
        for path in self.unit.files:
            previous = self.previous(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(previous)
            with contextlib.suppress(FileNotFoundError):
                os.link(path, previous)
            os.replace(self.new(path), path)

    def put_back(self) -> None:
        """Each live file as it was before make_live: the previous one, or none."""
        for path in self.unit.files:
            try:
                os.replace(self.previous(path), path)
            except FileNotFoundError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def clean_up(self) -> None:
        for path in self.unit.files:
            for leftover in (self.new(path), self.previous(path)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


def link_atomically(link: PurePosixPath, target: str) -> None:
    temporary = link.with_name(f".{link.name}.golive")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def read_link(path: PurePosixPath) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def remove_path(path: PurePosixPath) -> None:
    """Remove a file, link or tree without following links (rmtree is fd-based on Linux)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; a `timeout` that passes raises TimeoutError."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, **options)
    except subprocess.TimeoutExpired:
        raise TimeoutError(command[0]) from None


def tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def content_of(path: PurePosixPath) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


def digest(unit: Unit) -> str:
    """The digest of the unit's live state. wsgistack/staged.py reads the same digest with
    shell (`sha256sum`, `readlink`, `find -printf`); tests prove they agree."""
    text = b""
    for path in unit.files:  # as `sha256sum FILE...` prints them; a missing file says nothing
        try:
            with open(path, "rb") as file:
                text += f"{hashlib.sha256(file.read()).hexdigest()}  {path}\n".encode()
        except OSError:
            pass
    for link in unit.links:
        with contextlib.suppress(OSError):
            text += os.fsencode(os.readlink(link)) + b"\n"
    if unit.listing is not None:
        with contextlib.suppress(OSError):
            text += b"".join(sorted(listing_line(entry) for entry in os.scandir(unit.listing)))
    return hashlib.sha256(text).hexdigest()


def listing_line(entry: os.DirEntry) -> bytes:
    target = os.readlink(entry.path) if entry.is_symlink() else ""
    return os.fsencode(f"{entry.name} {target}\n")


def record(unit: Unit) -> None:
    """Write the unit's stamp, last, once its live state has been applied."""
    os.makedirs(unit.stamp.parent, mode=0o755, exist_ok=True)
    write_atomically(unit.stamp, (digest(unit) + "\n").encode(), os.getuid(), os.getgid(),
                     0o644)
