"""What the deploy manages on a host, as data: directories, files, logs and absent files.

Each item names its path (read in the host state), says whether the host already has it
as declared, and applies itself with pyinfra's own operation. `ensure` applies an item
only where the host differs, so a converged host runs no operation and reads no fact for it,
and a dry run lists exactly the items a real run changes.

A file that holds a secret (an app's secret key, a TLS key) is uploaded by `put_secret`,
never by files.put: files.put prints the whole file with --diff, and the live one too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, state
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.api.util import get_template
from pyinfra.facts.files import File as FileFact
from pyinfra.facts.files import Sha1File
from pyinfra.operations import files, server

from wsgistack.engine.hoststate import HostState, PathState
from wsgistack.engine.preview import CREATE, DELETE, UPDATE
from wsgistack.engine.summary import declare, in_place


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
        return files.directory(name=self.name, path=self.path, user=self.user,
                               group=self.group, mode=self.mode)


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
        # pyinfra's own loader, as files.template uses: StrictUndefined, trailing newline kept.
        return get_template(str(self.template)).render(self.context).encode()

    def in_place(self, seen: PathState | None) -> bool:
        return (seen is not None
                and seen.matches("regular file", self.user, self.group, self.mode)
                and (self.versioned or seen.sha1 == hashlib.sha1(self.content).hexdigest()))

    def apply(self) -> OperationMeta:
        if self.secret:
            return put_secret(name=self.name, content=BytesIO(self.content), dest=self.path,
                              user=self.user, group=self.group, mode=self.mode)
        source = str(self.local) if self.local else StringIO(self.content.decode())
        return files.put(name=self.name, src=source, dest=self.path, user=self.user,
                         group=self.group, mode=self.mode, create_remote_dir=False)


@operation()
def put_secret(content: BytesIO, dest: str, user: str, group: str, mode: str):
    """Upload a file that holds a secret: compared by its SHA-1, owner and mode only, never
    read back nor shown, not even with --diff (which says only that it changes). Its
    directory is root's and closed to others, so the upload is never readable by them."""
    present = host.get_fact(FileFact, path=dest)
    if (present and (present["user"], present["group"], present["mode"]) == (user, group,
                                                                              int(mode))
            and host.get_fact(Sha1File, path=dest)
            == hashlib.sha1(content.getvalue()).hexdigest()):
        host.noop(f"{dest} is up to date")
        return
    if state.config.DIFF:
        host.log(f"Will {'modify' if present else 'create'} {dest} (it holds a secret: its"
                 " content is not shown)")
    # Through sudo, the upload waits in the SSH user's own dir (_temp_dir, base.upload_dirs)
    # before root copies it into place: never in /tmp, where pyinfra would put it.
    private = host.current_op_global_arguments.get("_temp_dir") \
        if host.current_op_global_arguments else None
    yield FileUploadCommand(content, dest, remote_temp_filename=host.get_temp_filename(
        dest, temp_directory=private) if private else None)
    yield StringCommand("chown", f"{user}:{group}", dest)
    yield StringCommand("chmod", mode, dest)


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
        return files.file(name=self.name, path=self.path, user=self.user, group=self.group,
                          mode=self.mode, touch=False)


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
