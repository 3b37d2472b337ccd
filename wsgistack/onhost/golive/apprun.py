"""golive run: a command as the app's user in its live release, never on the caller's
terminal (a pty of its own in a new session, relayed)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import pwd
import select
import signal
import termios
import tty
from collections.abc import Callable
from pathlib import PurePosixPath

from .files import Refused, read_link, say
from .layout import AppPaths
from .releases import Config, app_environment, read_environment
from .users import become


def run_in_app(root: PurePosixPath, app: str, config: str | None, config_env: str | None,
               prefix: str, passed: list[str], argv: list[str]) -> int:
    """Run `argv` (e.g. `django-admin createsuperuser`) as the app's user, in its live
    release with its environment and config, plus the caller's variables named in `passed`;
    return its exit status. It never gets the caller's terminal: where the caller has one,
    the command gets a pty of its own in a new session, relayed here (as `su --pty`);
    otherwise a new session without a terminal. Takes no lock."""
    paths = AppPaths(app, root)
    version = read_link(paths.current).removeprefix("releases/")
    if not version:
        raise Refused(f"{paths.name} has no live release on this host")
    terminal = any(os.isatty(fd) for fd in (0, 1, 2))
    environment = {**read_environment(paths.env_file),
                   **app_environment(paths, version, Config(config, config_env), "", prefix),
                   **{name: os.environ[name] for name in passed if name in os.environ},
                   **({"TERM": os.environ.get("TERM", "xterm")} if terminal else {})}
    account = pwd.getpwnam(paths.name)

    def child() -> None:
        try:
            os.chdir(paths.release(version).path)
            become(account)
            os.execvpe(argv[0], argv, environment)
        except OSError as error:
            say(f"golive run: {argv[0]}: {error.strerror}", err=True)
        os._exit(127)

    if terminal:
        return relay_through_pty(child)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        child()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def relay_through_pty(child: Callable[[], None]) -> int:
    """Start `child` in a new session on a pty of its own, relay the caller's terminal to
    and from it (raw, the window's size followed) until it exits; its exit status."""
    pid, master = pty.fork()
    if pid == 0:
        child()
    saved = termios.tcgetattr(0) if os.isatty(0) else None

    def resize(*_: object) -> None:
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(0 if saved else 1, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    resize()
    signal.signal(signal.SIGWINCH, resize)
    try:
        if saved:
            tty.setraw(0)
        relay(master)
    finally:
        if saved:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        os.close(master)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def relay(master: int) -> None:
    """Copy the caller's input to the pty and the pty's output to the caller's, until the
    pty closes (the command and all it started have exited)."""
    sources = [0, master]
    while True:
        try:
            ready, _w, _x = select.select(sources, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the pty's other end is closed
                return
            if not data:
                return
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(master, data)
            else:
                sources.remove(0)
