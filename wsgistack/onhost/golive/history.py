"""What changed this host: every go-live step that changes the host appends a line to its
history (when, who logged in to run it, the step and its arguments, each app's live
release before and after, how it ended), root's alone. Every step reads and writes it, so
it imports little (golive's status, which reports it, is status.py)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import time
from pathlib import PurePosixPath

from .files import read_link
from .layout import AppPaths, history_log

SHOWN = 8  # the last steps status reports
UNSET_LOGIN = 4294967295  # /proc/self/loginuid of a process no login started


def login_user() -> str:
    """Who logged in to run this (the SSH user, through sudo or not), as the kernel's audit
    login uid says it; a process no login started, the sudo user it names, or root."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        with open("/proc/self/loginuid") as loginuid:
            uid = int(loginuid.read().strip())
        if uid != UNSET_LOGIN:
            return pwd.getpwuid(uid).pw_name
    return os.environ.get("SUDO_USER") or "root"


def live_release(root: PurePosixPath, app: str) -> str | None:
    """The app's live release (its `current` link's release), or None."""
    return PurePosixPath(read_link(AppPaths(app, root).current)).name or None


def record_step(root: PurePosixPath, step: str, arguments: dict[str, object],
                before: str | None, outcome: str) -> None:
    """One line more in the history (0600, in root's /var/log/wsgistack: no app reads it)."""
    app = arguments.get("app")
    entry = {"at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "user": login_user(),
             "step": step, "arguments": arguments, "outcome": outcome}
    if isinstance(app, str):
        entry.update(release_before=before, release_after=live_release(root, app))
    path = history_log(root)
    os.makedirs(path.parent, mode=0o750, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "a") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")


def last_steps(root: PurePosixPath, count: int = SHOWN) -> list[dict[str, object]]:
    try:
        with open(history_log(root)) as log:
            lines = log.readlines()[-count:]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.startswith("{")]
