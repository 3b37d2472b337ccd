"""Acting as another user: root never acts on a path in a dir another user can write; it
forks a child that is that user and nothing more (never able to gain privileges)."""

from __future__ import annotations

import contextlib
import ctypes
import grp
import json
import os
import pwd
import signal
import stat
from collections.abc import Callable
from pathlib import PurePosixPath

from .files import Refused, content_of, say, write_atomically
from .layout import AppPaths
from .protocol import account_comment

PR_SET_NO_NEW_PRIVS = 38  # prctl(2)


def no_new_privileges() -> None:
    """From here on, no setuid or file-capability program (sudo, su, passwd) can raise this
    process or its children above the user it is: for every process of an app's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def user_options(user: str, *groups: str) -> dict[str, object]:
    """subprocess options that run a command as `user` (as is, if we already are it), in
    its own group and `groups` only, never able to gain privileges."""
    account = pwd.getpwnam(user)
    if os.getuid() == account.pw_uid:
        return {"preexec_fn": no_new_privileges}
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": [grp.getgrnam(group).gr_gid for group in groups],
            "preexec_fn": no_new_privileges}


def made_by_the_deploy(name: str) -> bool:
    """Whether the account `name` is one the deploy made for an app (its comment says so)."""
    try:
        return pwd.getpwnam(name).pw_gecos == account_comment(name)
    except KeyError:
        return False


def become(account: pwd.struct_passwd) -> None:
    """Be `account` and nothing more (its group only), for good (as is, if already), unable
    to gain privileges."""
    if os.getuid() != account.pw_uid:
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    no_new_privileges()


def as_user(user: str, work: Callable[[], object]) -> object:
    """Call `work()` in a child process that is `user` and nothing more, and return what it
    returned (JSON): root never acts on a path in a dir another user can write. Raises
    Refused with the child's reason if it fails."""
    pid, answers = fork_as(pwd.getpwnam(user), work)
    return answer_of(pid, answers, user)


def fork_as(account: pwd.struct_passwd, work: Callable[[], object],
            close: tuple[int, ...] = ()) -> tuple[int, int]:
    """Fork a child that is `account` and nothing more (its copies of `close` closed first)
    and calls `work()`; returns its pid and the fd its answer comes on (answer_of)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        for descriptor in close:
            os.close(descriptor)
        code = 0
        try:
            become(account)
            answer = {"result": work()}
        except Refused as refusal:
            answer, code = {"refused": str(refusal)}, 1
        except Exception as error:  # reported to the parent, which refuses
            answer, code = {"refused": f"{type(error).__name__}: {error}"}, 1
        with contextlib.suppress(OSError, TypeError, ValueError):
            os.write(writer, json.dumps(answer).encode())
        os._exit(code)
    os.close(writer)
    return pid, reader


def answer_of(pid: int, answers: int, user: str) -> object:
    """What fork_as's child returned, once it has ended; Refused with its reason if it
    failed."""
    with os.fdopen(answers, "rb") as pipe:
        said = pipe.read()
    _pid, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(said)
    except ValueError:
        answer = {}
    if os.waitstatus_to_exitcode(status) != 0 or "result" not in answer:
        raise Refused(answer.get("refused") or f"a step as {user} failed")
    return answer["result"]


def kill_all_of(user: str) -> None:
    """End every process of `user` (kill(-1) as that user reaches its own only, and never
    the caller): nothing a build left running waits for the next one. Never for root or
    the caller's own user, whose kill(-1) would reach far more."""
    if pwd.getpwnam(user).pw_uid not in (0, os.getuid()):
        as_user(user, kill_every_other_process)


def kill_every_other_process() -> None:
    with contextlib.suppress(ProcessLookupError):  # none left
        os.kill(-1, signal.SIGKILL)


def write_file_as_user(path: PurePosixPath, content: bytes, mode: int) -> None:
    """Write `path` in one rename, as the user this process is (in a child of as_user)."""
    write_atomically(path, content, os.getuid(), os.getgid(), mode)


def read_file_as_user(path: PurePosixPath) -> str | None:
    """A small text file's content as the user this process is; None if it is missing."""
    content = content_of(path)
    return None if content is None else content.decode(errors="replace")


def data_dir(root: PurePosixPath, app: str, name: str) -> None:
    """Make the app's dir `name` in its data dir (0750), as the app's user: a link or a
    file there (the app's user put it) is refused in one line, never followed."""
    paths = AppPaths(app, root)
    path = paths.data_dir(name)

    def make() -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o750)
        try:
            opened = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # ELOOP, ENOTDIR: something else is there
            raise Refused(f"{paths.name}: {path} is {kind_of(os.lstat(path).st_mode)}, not a"
                          f" directory (the app's user put it there): move it away, as"
                          f" {paths.name}, and deploy again") from None
        try:
            os.fchmod(opened, 0o750)
        finally:
            os.close(opened)

    as_user(paths.name, make)
    say(f"{path} is {paths.name}'s dir")


def kind_of(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a regular file" if stat.S_ISREG(mode)
            else "a special file")
