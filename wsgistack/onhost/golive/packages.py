"""Debian's packages installed in the background (install-packages --background): apt
runs in a process of its own, in a session of its own, while the deploy goes on with what
needs no package (on a fresh web host: uv, the apps' users, dirs, config and releases);
wait-packages waits for it to end and records what dpkg gained, as a plain install-packages
does (teardown.py).

A run under way is noted in root's own dir: what the host had before it (pending.json, at
layout.packages_pending) and how it ended (outcome.json). The background process holds run.lock
from before install-packages returns until it ends, however it ends: wait-packages takes
the lock to know it has ended, without polling.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import PurePosixPath

from .files import Refused, remove_path, say
from .layout import packages_pending
from .protocol import account_comment
from .teardown import apt_install, installed_line, record_gain, write_record

OUTCOME, LOCK = "outcome.json", "run.lock"


def start(root: PurePosixPath, missing: list[str], before: set[str], had: set[str]) -> None:
    """Note what the host has, then fork the process that installs `missing` (holding the
    run's lock) and return."""
    pending = packages_pending(root)
    run = pending.parent
    os.makedirs(run, 0o700, exist_ok=True)
    note = {"packages": missing, "before": sorted(before), "accounts": sorted(had)}
    write_record(pending, json.dumps(note).encode(), 0o600)
    remove_path(run / OUTCOME)
    lock = open_lock(run)
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.fork() == 0:
        status = 1
        try:
            detach(keep=lock)
            write_record(run / OUTCOME, json.dumps(outcome(missing)).encode(), 0o600)
            status = 0
        finally:
            os._exit(status)
    os.close(lock)


def detach(keep: int) -> None:
    """The background process: a session of its own (no SIGHUP when the SSH session ends),
    its input and output /dev/null, and no descriptor of the caller's but `keep` (not the
    deploy lock, which the steps that follow take)."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def outcome(missing: list[str]) -> dict[str, object]:
    try:
        apt_install(missing)
    except Refused as refusal:
        return {"ok": False, "error": str(refusal)}
    return {"ok": True}


def open_lock(run: PurePosixPath) -> int:
    return os.open(run / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def read_note(path: PurePosixPath) -> dict | None:
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as note:
        return json.load(note)
    return None


def wait(root: PurePosixPath) -> None:
    """Wait for the background install to end; record what dpkg gained; refuse with apt's
    reason if it failed."""
    pending = packages_pending(root)
    run = pending.parent
    note = read_note(pending)
    if note is None:
        say("no packages are being installed")
        return
    lock = open_lock(run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the background install's, until it ends
    finally:
        os.close(lock)
    ended = read_note(run / OUTCOME) or {
        "ok": False, "error": "the background install ended without an outcome (killed?)"}
    gained = record_gain(root, set(note["before"]), set(note["accounts"]) | apps_own(root))
    for path in (pending, run / OUTCOME):
        remove_path(path)
    if not ended["ok"]:
        raise Refused(str(ended["error"]))
    say(installed_line(note["packages"], gained))


def apps_own(root: PurePosixPath) -> set[str]:
    """The apps' accounts, marked as the deploy's by their comment: the deploy makes them
    while apt runs, and they are not its packages' (destroy keeps them with the apps'
    data)."""
    own = set()
    with contextlib.suppress(FileNotFoundError), open(root / "etc/passwd") as users:
        for line in users:
            name, *fields = line.split(":")
            if len(fields) >= 4 and fields[3] == account_comment(name):
                own |= {f"user {name}", f"group {name}"}
    return own


def wait_for_any(root: PurePosixPath) -> None:
    """An install a killed deploy started and never waited for: waited for, recorded."""
    if os.path.exists(packages_pending(root)):
        with contextlib.suppress(Refused):
            wait(root)
