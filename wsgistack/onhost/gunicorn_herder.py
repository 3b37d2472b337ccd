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

    gunicorn-herder reload --pidfile P --workers N [--timeout S] [--log F]
        Run by a deploy, as root. Sends USR2, waits until the new master's N workers have
        loaded the app (each worker appends its pid to ready.<master pid> beside the pid
        file, from gunicorn's post_worker_init hook), then stops the old master with TERM:
        its workers finish the requests in flight while the new workers take new ones on
        the same socket. If the new master fails, it is stopped, the old master keeps
        serving, and the reload exits 1 with the end of gunicorn's log.

Exit status of reload: 0 swapped (or nothing running: supervisor starts the new release),
1 failed (the old master still serves).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def parent_of(pid: int) -> int | None:
    """The parent pid of a live (non-zombie) process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[1])


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
    try:
        return len((pidfile.parent / f"ready.{master}").read_text().split())
    except OSError:
        return 0


def stop(pid: int, timeout: float) -> None:
    """TERM (gunicorn's graceful stop), then KILL after `timeout`; wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
    except ProcessLookupError:
        pass


def log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None:
        return ""
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\nlast lines of {log}:\n    " + "\n    ".join(text)


def forget_ready_files(pidfile: Path) -> None:
    for path in pidfile.parent.glob("ready.*"):
        if not alive(int(path.suffix[1:]) if path.suffix[1:].isdigit() else None):
            path.unlink(missing_ok=True)


def reload(pidfile: Path, workers: int, timeout: float, graceful: float,
           log: Path | None) -> str:
    old = read_pid(pidfile)
    if not alive(old):
        return "gunicorn is not running: nothing to swap (supervisor starts the new release)"
    half_done = read_pid(successor_pidfiles(pidfile)[1])
    if alive(half_done) and half_done != old:
        # A swap an interrupted deploy left unconfirmed: start it again from the old master.
        stop(half_done, graceful)
    forget_ready_files(pidfile)
    os.kill(old, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    new = None
    while new is None or ready_workers(pidfile, new) < workers:
        if time.monotonic() > deadline:
            if new is not None:
                stop(new, graceful)
            raise ReloadFailed(f"the new gunicorn master did not get {workers} workers ready"
                               f" within {timeout:.0f}s; the old master {old} still serves"
                               + log_tail(log))
        if new is None:
            pid = read_pid(successor_pidfiles(pidfile)[1])
            new = pid if alive(pid) and pid != old else None
        elif not alive(new):
            raise ReloadFailed(f"the new gunicorn master {new} exited; the old master {old}"
                               f" still serves" + log_tail(log))
        time.sleep(0.05)
    stop(old, graceful + 10)
    promoted = time.monotonic() + 10
    while read_pid(pidfile) != new and time.monotonic() < promoted:
        time.sleep(0.05)  # the new master renames P.2 to P once it sees its parent gone
    return f"gunicorn swapped gracefully: master {old} -> {new}, {workers} workers ready"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gunicorn-herder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    run_parser = commands.add_parser("run", help="run gunicorn under supervisor")
    run_parser.add_argument("--pidfile", type=Path, required=True)
    run_parser.add_argument("command", nargs="+")
    reload_parser = commands.add_parser("reload", help="swap to a new master gracefully")
    reload_parser.add_argument("--pidfile", type=Path, required=True)
    reload_parser.add_argument("--workers", type=int, required=True)
    reload_parser.add_argument("--timeout", type=float, default=60,
                               help="seconds the new master gets to have its workers ready")
    reload_parser.add_argument("--graceful-timeout", type=float, default=30,
                               help="gunicorn's graceful_timeout")
    reload_parser.add_argument("--log", type=Path, help="gunicorn's log, shown on failure")
    args = parser.parse_args(argv)
    if args.action == "run":
        return Herder(args.pidfile, args.command).run()
    try:
        print(reload(args.pidfile, args.workers, args.timeout, args.graceful_timeout, args.log))
    except ReloadFailed as failure:
        print(f"gunicorn-herder: reload failed: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
