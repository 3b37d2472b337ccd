#!/usr/bin/python3
"""gunicorn-herder: keeps one app's gunicorn under supervisor across graceful binary swaps.

Installed by wsgistack as /usr/local/lib/wsgistack/gunicorn-herder (python3 stdlib only).

    gunicorn-herder run --pidfile P -- PYTHON GUNICORN --config C
        supervisor's program. Starts gunicorn and stays in the foreground while a gunicorn
        master of this app serves. A binary swap (USR2) makes the old master start a new
        one; when the old master exits, the new one becomes the herder's child (the herder
        is a child subreaper) and the herder follows it. supervisor watches one process
        throughout, and never "restarts" a gunicorn that was swapped on purpose. Signals
        the herder gets (TERM, HUP, ...) go to the current master.

    gunicorn-herder reload --pidfile P --supervised-pid H --user U --workers N
                           [--timeout S]
        Run by a deploy (golive switch), as the app's user. Sends USR2 to the running master, waits
        until the new master's N workers have loaded the app (each worker appends its pid
        to ready.<master pid> beside the pid file, from gunicorn's post_worker_init hook),
        then stops the old master with TERM: its workers finish the requests in flight
        while the new workers take new ones on the same socket. If the new master fails,
        it is stopped, the old master keeps serving, and the reload exits 1 (golive adds
        the end of gunicorn's log, which is root's).

        The pid files are written by gunicorn, as the app's user, in a directory that user
        owns: they are never believed alone. A pid is signalled only if that process is
        the app user's and sits where it must in the process tree: the old master is a
        child of the herder supervisor runs (H, asked of supervisor by the deploy), the
        new master a child of the old one. Signals go through a pidfd opened before the
        check, so a pid reused in between is never hit. Files there are opened without
        following links and without blocking, and only regular files are read.

Prior art: unicornherder (alphagov) starts gunicorn daemonized (-D) and polls its pid file
with psutil to follow the master across USR2; gunicorn #1670 shows why something is
needed (under supervisor, the new master is orphaned when the old one exits, and
supervisor starts another gunicorn; see also supervisor #166 and #889), and rainbow-saddle
was one answer. The herder differs: it is a child subreaper, so the new master becomes its
child and is waited on (no daemonizing, no polling, no orphan); it forwards supervisor's
signals to the live master; and the deploy side waits for the new workers' readiness
rather than a fixed sleep, and verifies every pid it signals (above).

Exit status of reload: 0 swapped (or nothing running: supervisor starts the new release),
1 failed (the old master still serves).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import re
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


def read_small(path: Path, limit: int = 65536) -> str | None:
    """A small regular file's text, opened without following a link or blocking on a FIFO
    (the app's user writes these files); None if it is anything else or missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def read_pid(path: Path) -> int | None:
    text = read_small(path, 64)
    try:
        pid = int((text or "").strip())
    except ValueError:
        return None
    return pid if pid > 1 else None


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields


def parent_of(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, else None."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[1])


def owner_of(pid: int) -> int | None:
    """The real uid of a process, else None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"(?m)^Uid:\s+(\d+)", status)
    return int(found.group(1)) if found else None


def alive(pid: int | None) -> bool:
    return pid is not None and parent_of(pid) is not None


def successor_pidfiles(pidfile: Path) -> list[Path]:
    """Where a new master writes its pid: P.2 while the old one lives, then P."""
    return [pidfile, pidfile.with_name(pidfile.name + ".2")]


# --- run: supervisor's program --------------------------------------------------------

class Herder:
    def __init__(self, pidfile: Path, command: list[str]) -> None:
        self.pidfile = pidfile
        self.command = command
        self.master = 0

    def forward(self, signum: int, _frame: object) -> None:
        if self.master:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.master, signum)

    def successor(self, old: int) -> int | None:
        """The new master an exiting master leaves behind (now our child), if any."""
        for path in successor_pidfiles(self.pidfile):
            pid = read_pid(path)
            if pid not in (None, old) and parent_of(pid) == os.getpid():
                return pid
        return None

    def run(self) -> int:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            print("gunicorn-herder: cannot become a child subreaper", file=sys.stderr)
            return 1
        # gunicorn, its workers and all they start can never gain privileges (sudo, su,
        # any setuid program): a bug in the app stays the app's user.
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            print("gunicorn-herder: cannot set no_new_privs", file=sys.stderr)
            return 1
        for signum in FORWARDED:
            signal.signal(signum, self.forward)
        self.master = os.fork()
        if self.master == 0:
            os.execv(self.command[0], self.command)
        while True:
            pid, status = os.wait()
            if pid != self.master:
                continue  # a worker orphaned by a master that died: reaped, nothing more
            successor = self.successor(pid)
            if successor is None:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) \
                    else 128 + os.WTERMSIG(status)
            print(f"gunicorn-herder: master {pid} exited; following master {successor}",
                  file=sys.stderr, flush=True)
            self.master = successor


# --- reload: run by a deploy ----------------------------------------------------------

class ReloadFailed(Exception):
    pass


def ready_workers(pidfile: Path, master: int) -> int:
    return len((read_small(pidfile.parent / f"ready.{master}") or "").split())


@dataclass(frozen=True)
class Master:
    """A gunicorn master the reload may signal: verified, and held by a pidfd."""

    pid: int
    fd: int

    @classmethod
    def verified(cls, pid: int | None, parent: int, uid: int) -> Master | None:
        """The process `pid` if it is `uid`'s and a child of `parent`, else None. The pidfd
        is opened first and the check made after, so the pidfd is that process."""
        if pid is None:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        if parent_of(pid) == parent and owner_of(pid) == uid:
            return cls(pid, fd)
        os.close(fd)
        return None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.fd, signum)

    @property
    def alive(self) -> bool:
        return alive(self.pid)

    def stop(self, timeout: float) -> None:
        """TERM (gunicorn's graceful stop), then KILL after `timeout`; wait until gone."""
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive:
            if time.monotonic() > deadline:
                self.signal(signal.SIGKILL)
            time.sleep(0.05)

    def close(self) -> None:
        os.close(self.fd)


def forget_ready_files(pidfile: Path) -> None:
    """Remove ready files of masters that are gone (unlink never follows a link)."""
    for path in pidfile.parent.glob("ready.*"):
        if not alive(int(path.suffix[1:]) if path.suffix[1:].isdigit() else None):
            path.unlink(missing_ok=True)


def reload(pidfile: Path, supervised: int, uid: int, workers: int, timeout: float,
           graceful: float) -> str:
    old = Master.verified(read_pid(pidfile), supervised, uid)
    if old is None:
        if parent_of(supervised) is None:
            return "gunicorn is not running: nothing to swap (supervisor starts the new release)"
        raise ReloadFailed(f"{pidfile} does not name a gunicorn master of this app (a child of"
                           f" its herder, pid {supervised}, owned by uid {uid}): not signalling"
                           " it; restart the program (supervisorctl restart) to recover")
    half_done = Master.verified(read_pid(successor_pidfiles(pidfile)[1]), old.pid, uid)
    if half_done is not None:
        # A swap an interrupted deploy left unconfirmed: start it again from the old master.
        half_done.stop(graceful)
        half_done.close()
    forget_ready_files(pidfile)
    old.signal(signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    new = None
    while new is None or ready_workers(pidfile, new.pid) < workers:
        if time.monotonic() > deadline:
            if new is not None:
                new.stop(graceful)
            raise ReloadFailed(f"the new gunicorn master did not get {workers} workers ready"
                               f" within {timeout:.0f}s; the old master {old.pid} still serves")
        if new is None:
            new = Master.verified(read_pid(successor_pidfiles(pidfile)[1]), old.pid, uid)
        elif not new.alive:
            raise ReloadFailed(f"the new gunicorn master {new.pid} exited; the old master"
                               f" {old.pid} still serves")
        time.sleep(0.05)
    old.stop(graceful + 10)
    promoted = time.monotonic() + 10
    while read_pid(pidfile) != new.pid and time.monotonic() < promoted:
        # The new master renames P.2 to P once it sees its parent gone, which it looks for
        # each time it wakes: at a signal, else once a second. SIGCHLD wakes it now (it
        # reaps no worker then: none exited).
        new.signal(signal.SIGCHLD)
        time.sleep(0.05)
    return f"gunicorn swapped gracefully: master {old.pid} -> {new.pid}, {workers} workers ready"


def say(text: str, stream: int) -> None:
    """Write a line; a reader that went away never changes the outcome."""
    with contextlib.suppress(OSError):
        os.write(stream, (text + "\n").encode(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gunicorn-herder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run gunicorn under supervisor")
    run_parser.add_argument("--pidfile", type=Path, required=True)
    run_parser.add_argument("command", nargs="+")
    reload_parser = commands.add_parser("reload", help="swap to a new master gracefully")
    reload_parser.add_argument("--pidfile", type=Path, required=True)
    reload_parser.add_argument("--supervised-pid", type=int, required=True,
                               help="the herder supervisor runs for this app")
    reload_parser.add_argument("--user", required=True, help="the app's user")
    reload_parser.add_argument("--workers", type=int, required=True)
    reload_parser.add_argument("--timeout", type=float, default=60,
                               help="seconds the new master gets to have its workers ready")
    reload_parser.add_argument("--graceful-timeout", type=float, default=30,
                               help="gunicorn's graceful_timeout")
    args = parser.parse_args(argv)
    if args.action == "run":
        return Herder(args.pidfile, args.command).run()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        uid = pwd.getpwnam(args.user).pw_uid
        say(reload(args.pidfile, args.supervised_pid, uid, args.workers, args.timeout,
                   args.graceful_timeout), 1)
    except (ReloadFailed, KeyError) as failure:
        say(f"gunicorn-herder: reload failed: {failure}", 2)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
