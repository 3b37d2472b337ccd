"""An app's data off the host, and back: restic sends it, encrypted, to the environment's
backup host.

Root never reads the app's files: the app's own user writes its data dir as a tar into a
pipe (every SQLite database in it by SQLite's online backup, consistent while the app
writes; regular files and dirs only, links never followed), and root's restic reads the
pipe. Back the same way: restic's copy into a pipe, unpacked by the app's user (regular
files and dirs only, never through a link, never outside the data dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import BinaryIO

from .files import Refused, Staged, parse_expect, record, run, say, tail, write_atomically
from .layout import AppPaths, app_backups_unit, data_sent
from .users import answer_of, as_user, fork_as

SQLITE_HEADER = b"SQLite format 3\x00"
LOCAL_COPIES = "backups"  # the data dir's own copies before each release: not sent again
RESTIC_TIMEOUT = 3600


# --- as the app's user ---------------------------------------------------------------------

def is_sqlite(path: str) -> bool:
    """Whether a regular file (never through a link) is a SQLite database."""
    try:
        opened = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(opened, "rb") as file:
        return os.fstat(file.fileno()).st_size >= 100 and file.read(16) == SQLITE_HEADER


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # a live database's own: never sent back


def write_data_tar(data: PurePosixPath, out: BinaryIO) -> list[str]:
    """The data dir as a tar stream on `out` (names relative to it), its SQLite databases by
    SQLite's online backup (without their -wal, -shm, -journal files, which the copy has
    made whole); returns their names. As the app's user."""
    databases = []
    scratch = tempfile.mkdtemp(prefix=".offsite-", dir=data / LOCAL_COPIES)
    try:
        with tarfile.open(fileobj=out, mode="w|") as tar:
            for top, dirs, files in os.walk(data, followlinks=False):
                relative = os.path.relpath(top, data)
                if relative == ".":
                    dirs[:] = [name for name in dirs if name != LOCAL_COPIES]
                for name in sorted(dirs):
                    path = os.path.join(top, name)
                    if not os.path.islink(path):
                        tar.add(path, os.path.normpath(os.path.join(relative, name)),
                                recursive=False)
                sqlite = {name for name in files if is_sqlite(os.path.join(top, name))}
                for name in sorted(files):
                    path = os.path.join(top, name)
                    member = os.path.normpath(os.path.join(relative, name))
                    if name in sqlite:
                        copy = os.path.join(scratch, "copy")
                        online_copy(path, copy)
                        tar.add(copy, member)
                        os.unlink(copy)
                        databases.append(member)
                    elif not any(name == base + side for base in sqlite
                                 for side in SQLITE_SIDE_FILES) \
                            and os.path.isfile(path) and not os.path.islink(path):
                        tar.add(path, member)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return databases


def online_copy(database: str, copy: str) -> None:
    """A consistent copy of a live SQLite database (SQLite's online backup API)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True,
                                            timeout=30)) as live, \
            contextlib.closing(sqlite3.connect(copy)) as target:
        live.backup(target)


def unpack_data_tar(data: PurePosixPath, source: BinaryIO) -> int:
    """Unpack a tar stream of write_data_tar's into the data dir, over what is there: dirs
    and regular files only, each written in one rename, never through a link, never outside
    the dir. As the app's user. Returns the files written."""
    written = 0
    with tarfile.open(fileobj=source, mode="r|") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not parts or member.name.startswith("/") or ".." in parts:
                raise Refused(f"the backup holds a path outside the data dir: {member.name!r}")
            target = data.joinpath(*parts)
            if any(os.path.islink(data.joinpath(*parts[:depth]))
                   for depth in range(1, len(parts))):
                raise Refused(f"{target.parent} is a link: move it away and restore again")
            if member.isdir():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(target, 0o750)
            elif member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                temporary = target.with_name(f".{target.name}.restoring")
                with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                  | os.O_NOFOLLOW, member.mode & 0o777), "wb") as file:
                    shutil.copyfileobj(extracted, file)
                os.replace(temporary, target)
                if is_sqlite(str(target)):  # a live one's -wal would be replayed onto it
                    for side in SQLITE_SIDE_FILES:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(f"{target}{side}")
                written += 1
    return written


# --- as root: the pipe between the app's user and restic -------------------------------------

class UnfinishedStream(Refused):
    """The user's end of the pipe failed: why, and what the command did meanwhile."""

    def __init__(self, reason: str, done: subprocess.CompletedProcess[bytes]) -> None:
        super().__init__(reason)
        self.done = done


def through_pipe(user: str, work: Callable[[BinaryIO], object], command: list[str],
                 user_writes: bool) -> tuple[subprocess.CompletedProcess[bytes], object]:
    """Run `command` (as root) and `work` (in a child that is `user` and nothing more),
    joined by a pipe: `work` writes what the command reads (`user_writes`), or reads what
    it writes. Returns the command's result and what `work` returned; Refused with the
    child's reason if it failed."""
    reader, writer = os.pipe()
    users_end, own_end = (writer, reader) if user_writes else (reader, writer)

    def work_on_pipe() -> object:
        with os.fdopen(users_end, "wb" if user_writes else "rb") as end:
            return work(end)

    pid, answers = fork_as(pwd.getpwnam(user), work_on_pipe, close=(own_end,))
    os.close(users_end)
    with os.fdopen(own_end, "rb" if user_writes else "wb") as end:
        done = subprocess.run(command, stdin=end if user_writes else subprocess.DEVNULL,
                              stdout=subprocess.PIPE if user_writes else end,
                              stderr=subprocess.PIPE, timeout=RESTIC_TIMEOUT, check=False)
    try:
        return done, answer_of(pid, answers, user)
    except Refused as refused:
        raise UnfinishedStream(str(refused), done) from None


def restic(config: dict[str, object], *args: str) -> list[str]:
    """restic's command line for the host's repository (its password from root's file)."""
    cache = ["--cache-dir", str(config["cache_dir"])] if "cache_dir" in config else []
    return ["restic", "--repo", str(config["repository"]), "--password-file",
            str(config["password_file"]), "--option", f"sftp.command={config['sftp_command']}",
            *cache, *args]


def load_config(path: PurePosixPath) -> dict[str, object]:
    with open(path) as file:
        return dict(json.load(file))


def send_app(config: dict[str, object], app: str, root: PurePosixPath) -> str:
    """The app's data dir, now, to the backup host; what was sent. A stream its user could
    not finish leaves no snapshot behind."""
    paths = AppPaths(app, root)
    command = restic(config, "backup", "--stdin", "--stdin-filename", f"{app}.tar", "--tag",
                     app, "--host", str(config["host"]), "--json")
    try:
        done, databases = through_pipe(app, lambda out: write_data_tar(paths.data, out),
                                       command, user_writes=True)
    except UnfinishedStream as unfinished:
        for line in unfinished.done.stdout.decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                if json.loads(line).get("message_type") == "summary":
                    run(restic(config, "forget", json.loads(line)["snapshot_id"]),
                        timeout=RESTIC_TIMEOUT)
        raise
    if done.returncode != 0:
        raise Refused(f"{app}: restic could not send its data to the backup host:"
                      f" {tail(done.stderr.decode(errors='replace'), 3)}")
    sent = data_sent(app, root)
    os.makedirs(sent.parent, mode=0o755, exist_ok=True)
    write_atomically(sent, time.strftime("%Y-%m-%d %H:%M UTC\n", time.gmtime()).encode(), 0, 0,
                     0o644)
    return f"{app}: data sent to the backup host ({', '.join(databases) or 'no'} SQLite)"


def send_off_host(root: PurePosixPath, app: str) -> str:
    """Before a switch to another release: the app's data to the backup host, where this
    host sends it there (its restic.json is live and names the app); what was sent, or ""."""
    path = app_backups_unit(root).files[0]
    if not os.path.exists(path) or app not in load_config(path)["apps"]:  # type: ignore[operator]
        return ""
    return send_app(load_config(path), app, root)


def ensure_repository(config: dict[str, object]) -> None:
    """The host's restic repository on the backup host, made once; refused if its key does
    not open it."""
    opened = run(restic(config, "cat", "config"), timeout=RESTIC_TIMEOUT)
    if opened.returncode == 0:
        return
    if "wrong password" in opened.stderr:
        raise Refused(f"restic refused {config['host']}'s repository on the backup host (the"
                      " previous config is back): this key does not open it: is"
                      f" {str(config['group']).upper()}_BACKUP_PASSPHRASE the one its backups"
                      " were made with?")
    made = run(restic(config, "init"), timeout=RESTIC_TIMEOUT)
    if made.returncode != 0:
        raise Refused(f"restic could not make or open this host's repository on the backup"
                      f" host: {tail(made.stderr, 3)}")


def app_backups(root: PurePosixPath, expect: list[str]) -> None:
    """Make the candidate restic.json live, the repository made once, and each app's data
    sent (the deploy, where the config changed)."""
    unit = app_backups_unit(root)
    staged = Staged.verified(unit, parse_expect(expect))
    try:
        staged.make_live()
        config = load_config(unit.files[0])
        try:
            ensure_repository(config)
        except Refused:
            staged.put_back()
            raise
    finally:
        staged.clean_up()
    if not os.path.exists(unit.stamp) and snapshots_of(config):
        raise Refused(f"the backup host holds {config['host']}'s app data from before this"
                      " host (a new one where it was): bring it back with `pyinfra"
                      f" inventory.py restore.py --limit {config['group']} --data"
                      " restore_to=latest`, then deploy again;"
                      " nothing was sent over it")
    for app in config["apps"]:  # type: ignore[attr-defined]
        say(send_app(config, str(app), root))
    record(unit)


def send_apps(root: PurePosixPath) -> None:
    """Every app's data to the backup host (its timer): each tried, the failures said;
    nothing before a deploy has made restic's config live."""
    unit = app_backups_unit(root)
    if not os.path.exists(unit.stamp):
        say("nothing sent: no deploy has set this host's backups up yet")
        return
    config = load_config(unit.files[0])
    failed = []
    for app in config["apps"]:  # type: ignore[attr-defined]
        try:
            say(send_app(config, str(app), root))
        except (Refused, OSError) as error:
            failed.append(str(error))
    if failed:
        raise Refused("; ".join(failed))
    say(forget_old(config))


def forget_old(config: dict[str, object]) -> str:
    """Snapshots of this host older than its retention forgotten, and their data pruned
    (after a timed run: the newest is always kept)."""
    days = int(config["keep_days"])  # type: ignore[call-overload]
    done = run(restic(config, "forget", "--host", str(config["host"]), "--keep-within",
                      f"{days}d", "--keep-last", "1", "--prune", "--quiet"),
               timeout=RESTIC_TIMEOUT)
    if done.returncode != 0:
        raise Refused(f"restic could not forget this host's backups older than {days} days:"
                      f" {tail(done.stderr, 3)}")
    return f"backups older than {days} days forgotten and pruned"


def snapshots_of(config: dict[str, object], *tag: str) -> list[dict[str, str]]:
    """This host's snapshots (of one app: `--tag APP`), oldest first."""
    listed = run(restic(config, "snapshots", "--json", "--host", str(config["host"]), *tag),
                 timeout=RESTIC_TIMEOUT)
    if listed.returncode != 0:
        raise Refused(f"restic could not list this host's backups: {tail(listed.stderr, 3)}")
    return sorted(json.loads(listed.stdout or "[]") or [], key=lambda each: each["time"])


def moment(text: str) -> datetime:
    """A time as restic or the operator writes it (RFC 3339, nanoseconds, "Z", " UTC" or no
    zone: UTC), comparable."""
    text = text.replace("Z", "+00:00").replace(" UTC", "")
    head, dot, rest = text.partition(".")
    if dot:  # at most microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def snapshot_at(config: dict[str, object], app: str, to: str) -> dict[str, str]:
    """The app's newest snapshot taken at or before `to` ("latest": newest)."""
    snapshots = snapshots_of(config, "--tag", app)
    if to != "latest":
        snapshots = [each for each in snapshots if moment(each["time"]) <= moment(to)]
    if not snapshots:
        raise Refused(f"{app}: the backup host holds no backup of its data"
                      f"{'' if to == 'latest' else ' from before ' + to}")
    return snapshots[-1]


def restore_app(root: PurePosixPath, app: str, to: str) -> None:
    """The app's data dir as its newest backup at or before `to` (its program stopped)."""
    config = load_config(app_backups_unit(root).files[0])
    snapshot = snapshot_at(config, app, to)["id"]
    paths = AppPaths(app, root)
    done, written = through_pipe(app, lambda source: unpack_data_tar(paths.data, source),
                                 restic(config, "dump", snapshot, f"/{app}.tar"),
                                 user_writes=False)
    if done.returncode != 0:
        raise Refused(f"{app}: restic could not read backup {snapshot}:"
                      f" {tail(done.stderr.decode(errors='replace'), 3)}")
    record(app_backups_unit(root))  # this host's data is the one backed up: send it again
    say(f"{app}: {written} files restored from backup {snapshot}")


def restore_plan(root: PurePosixPath, app: str, to: str) -> None:
    """What restore-app would do, changing nothing (JSON): the backup it would take, the
    files it holds, and how many of them replace the data dir's, are new, or leave the
    data dir's others as they are."""
    config = load_config(app_backups_unit(root).files[0])
    snapshot = snapshot_at(config, app, to)
    backed_up = files_in_backup(config, app, snapshot["id"])
    present = set(as_user(app, lambda: files_in(AppPaths(app, root).data)))  # type: ignore[arg-type]
    say(json.dumps({"backup": snapshot["short_id"],
                    "time": moment(snapshot["time"]).strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "files": len(backed_up), "bytes": sum(backed_up.values()),
                    "replaced": len(present & backed_up.keys()),
                    "added": len(backed_up.keys() - present),
                    "kept": len(present - backed_up.keys())}))


def files_in_backup(config: dict[str, object], app: str, snapshot: str) -> dict[str, int]:
    """Each regular file in the app's backup, and its size (read from restic's stream: the
    data never lands on the disk)."""
    with subprocess.Popen(restic(config, "dump", snapshot, f"/{app}.tar"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as dump:
        assert dump.stdout is not None
        with tarfile.open(fileobj=dump.stdout, mode="r|") as tar:
            files = {member.name: member.size for member in tar if member.isfile()}
        _, error = dump.communicate(timeout=RESTIC_TIMEOUT)
    if dump.returncode != 0:
        raise Refused(f"{app}: restic could not read backup {snapshot}:"
                      f" {tail(error.decode(errors='replace'), 3)}")
    return files


def files_in(data: PurePosixPath) -> list[str]:
    """The data dir's regular files, relative to it, as the tar names them (its own copies
    before each release are no part of a backup); links never followed. As the app's user."""
    found = []
    for top, dirs, names in os.walk(data):
        if top == str(data):
            dirs[:] = [name for name in dirs if name != LOCAL_COPIES]
        for name in names:
            path = os.path.join(top, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.append(os.path.relpath(path, data))
    return found
