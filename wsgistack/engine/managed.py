"""What the deploy manages on a host, as data: directories, files, logs and absent files.

Each item names its path (read in the host state), says whether the host already has it
as declared, and applies itself. `ensure` applies an item only where the host differs, so a
converged host runs no operation and reads no fact for it, and a dry run lists exactly the
items a real run changes.

Since the host's read already said the item differs, its operation reads nothing again and
sends one command (a file: its transfer, then one): pyinfra's files.directory, files.file
and files.put read the path again and send up to three, each its own SSH round trip. Only
`--diff` uses files.put, which reads the live file to show what changes.

A file that holds a secret (an app's secret key, a TLS key) is never uploaded by files.put:
files.put prints the whole file with --diff, and the live one too.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined
from pyinfra import host, state
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, server

from wsgistack.engine.hoststate import HostState, PathState
from wsgistack.engine.preview import CREATE, DELETE, UPDATE
from wsgistack.engine.summary import declare, in_place
from wsgistack.paths import BUILD_DIR


@dataclass(frozen=True)
class Directory:
    name: str  # the operation's name in pyinfra's output
    path: str
    user: str
    group: str
    mode: str

    def in_place(self, seen: PathState | None) -> bool:
        return seen is not None and seen.matches("directory", self.user, self.group, self.mode)

    def apply(self) -> OperationMeta:
        return make_directory(name=self.name, path=self.path, user=self.user,
                              group=self.group, mode=self.mode)


@operation()
def make_directory(path: str, user: str, group: str, mode: str):
    """Make `path` a dir of `user`:`group` with `mode`, in one command; never through a
    link (chown and chmod would act on what it points to)."""
    quoted = QuoteString(path)
    yield StringCommand("[", "!", "-L", quoted, "]", "&&", "mkdir", "-p", quoted, "&&",
                        *owned(quoted, user, group, mode))


def owned(quoted: QuoteString, user: str, group: str, mode: str) -> list[object]:
    """The command bits that give `quoted` its owner, then its mode."""
    return ["chown", f"{user}:{group}", quoted, "&&", "chmod", mode, quoted]


@dataclass(frozen=True)
class OwnersDirectory:
    """A directory inside one its owner can write (the app's data dir), made by `command`
    as that owner (golive data-dir): never by root, whose mkdir, chmod and chown there a
    swapped link would turn onto any file of the host."""

    name: str
    path: str
    user: str
    mode: str
    command: str

    def in_place(self, seen: PathState | None) -> bool:
        return seen is not None and seen.matches("directory", self.user, self.user, self.mode)

    def apply(self) -> OperationMeta:
        return server.shell(name=self.name, commands=[self.command])


@functools.cache
def templates() -> Environment:
    """Templates loaded as pyinfra's files.template loads them (undefined names are errors,
    the trailing newline is kept), compiled once: their compiled code is kept under build/
    (keyed by each template's text), so a run renders them without compiling them again."""
    cache = BUILD_DIR / "templates"
    cache.mkdir(parents=True, exist_ok=True)
    return Environment(loader=FileSystemLoader("/"), undefined=StrictUndefined,
                       keep_trailing_newline=True,
                       bytecode_cache=FileSystemBytecodeCache(str(cache)))


@dataclass(frozen=True)
class File:
    """A file whose content is a template rendered on the controller, a local file, or
    text."""

    name: str
    path: str
    user: str
    group: str
    mode: str
    template: Path | None = None
    context: dict[str, Any] = field(default_factory=dict, hash=False)
    local: Path | None = None
    secret: bool = False  # its content never appears in any output, --diff included
    text: str | None = None
    versioned: bool = False  # its name says its version: in place once there, never hashed

    @cached_property
    def content(self) -> bytes:
        if self.text is not None:
            return self.text.encode()
        if self.local is not None:
            return self.local.read_bytes()
        return templates().get_template(str(self.template.resolve()).lstrip("/")).render(
            self.context).encode()

    def in_place(self, seen: PathState | None) -> bool:
        return (seen is not None
                and seen.matches("regular file", self.user, self.group, self.mode)
                and (self.versioned or seen.sha1 == hashlib.sha1(self.content).hexdigest()))

    def apply(self) -> OperationMeta:
        if self.local:  # sent as it is (a program, a key), never read into memory here
            return upload(name=self.name, source=str(self.local), dest=self.path,
                          user=self.user, group=self.group, mode=self.mode, secret=self.secret)
        if state.config.DIFF and not self.secret:  # shows what changes, read live
            return files.put(name=self.name, src=StringIO(self.content.decode()),
                             dest=self.path, user=self.user, group=self.group, mode=self.mode,
                             create_remote_dir=False)
        return upload(name=self.name, source=BytesIO(self.content), dest=self.path,
                      user=self.user, group=self.group, mode=self.mode, secret=self.secret)


@operation()
def upload(source: str | BytesIO, dest: str, user: str, group: str, mode: str,
           secret: bool = False):
    """Upload `source` (a local file, or content) beside `dest`, give it its owner and mode,
    and rename it into place: never seen half-written nor with another mode. A `secret` one
    is never read back nor shown, not even with --diff (which says only that it changes);
    its directory is root's and closed to others, so the upload is never readable by them."""
    if state.config.DIFF and secret:
        host.log(f"Will write {dest} (it holds a secret: its content is not shown)")
    directory, _, name = dest.rpartition("/")
    waiting = f"{directory}/.{name}.upload~"
    # Through sudo, the upload waits in the SSH user's own dir (_temp_dir, base.upload_dirs)
    # before root copies it beside `dest`: never in /tmp, where pyinfra would put it.
    private = host.current_op_global_arguments.get("_temp_dir") \
        if host.current_op_global_arguments else None
    yield FileUploadCommand(source, waiting, remote_temp_filename=host.get_temp_filename(
        dest, temp_directory=private) if private else None)
    yield StringCommand(*owned(QuoteString(waiting), user, group, mode), "&&", "mv", "-fT",
                        QuoteString(waiting), QuoteString(dest))


@dataclass(frozen=True)
class LogFile:
    """A log file made before its writer first opens it, so it is never born readable by
    all (nginx opens new logs 0644); its content is the writer's, never compared."""

    name: str
    path: str
    user: str
    group: str
    mode: str

    def in_place(self, seen: PathState | None) -> bool:
        return seen is not None and seen.matches("regular file", self.user, self.group,
                                                 self.mode)

    def apply(self) -> OperationMeta:
        return make_log(name=self.name, path=self.path, user=self.user, group=self.group,
                        mode=self.mode)


@operation()
def make_log(path: str, user: str, group: str, mode: str):
    """Make the log `path` (born closed to all but root), or keep the one there, with its
    owner and mode, in one command; never through a link."""
    yield log_command(path, user, group, mode)


def log_command(path: str, user: str, group: str, mode: str) -> StringCommand:
    quoted = QuoteString(path)
    return StringCommand("[", "!", "-L", quoted, "]", "&&", "{", "[", "-f", quoted, "]", "||",
                         "(", "umask", "077", "&&", ":", ">", quoted, ")", ";", "}", "&&",
                         *owned(quoted, user, group, mode))


@dataclass(frozen=True)
class Absent:
    """A file, or a link (`link`), the host must not have; removed by `command` where the
    tool that made it removes it with all that goes with it (e.g. `certbot delete`)."""

    name: str
    path: str
    link: bool = False
    command: str | None = None

    def in_place(self, seen: PathState | None) -> bool:
        return seen is None

    def apply(self) -> OperationMeta:
        if self.command:
            return server.shell(name=self.name, commands=[self.command])
        remove = files.link if self.link else files.file
        return remove(name=self.name, path=self.path, present=False)


Managed = Directory | OwnersDirectory | File | LogFile | Absent


def ensure(item: Managed, seen: HostState) -> OperationMeta | None:
    """Apply `item` if the host differs from it; None when it is already in place."""
    trusted = seen.settled or (isinstance(item, Absent) and item.command is not None)
    if trusted and item.in_place(seen.path(item.path)):  # what the tool that made it removes:
        in_place()  # no package this run installs makes it (certbot's certificate)
        return None
    kind = DELETE if isinstance(item, Absent) else CREATE if seen.path(item.path) is None \
        else UPDATE
    return declare(item.apply(), kind)


def ensure_all(items: list[Managed], seen: HostState) -> list[OperationMeta | None]:
    """Each item's operation is its own in pyinfra's order of operations (host.loop adds
    the item's place in `items` to it): one host changing a file and another a directory
    of the same list never order them both ways (pyinfra's "cycle detected")."""
    return [ensure(item, seen) for item in host.loop(items)]
