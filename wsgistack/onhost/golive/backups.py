"""Backups of an app's data before a new release, as the app's user: SQLite's online
backup, or pg_dump of the environment's PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
from pathlib import PurePosixPath

from .files import run, tail
from .layout import AppPaths
from .releases import RELEASE_COMMAND_TIMEOUT


def backup_database(paths: AppPaths, version: str, keep: int, url: str = "") -> None:
    """Back up the app's database to backups/, then keep the newest `keep`: with a
    PostgreSQL `url`, pg_dump's custom format; else SQLite's online backup (consistent
    while the app writes), if the app has a SQLite file. Runs as the app's user, in the
    app's own directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{paths.name}-{stamp}-before-{version}"
    if url:
        dump_postgresql(url, paths.backups / f"{name}.dump")
    elif os.path.isfile(paths.database):
        target = paths.backups / f"{name}.sqlite3"
        temporary = target.with_name(target.name + ".tmp")
        with sqlite3.connect(paths.database, timeout=30) as live, \
                sqlite3.connect(temporary) as copy:
            live.backup(copy)
        copy.close()
        live.close()
        os.replace(temporary, target)
    rotate_backups(paths.backups, f"{paths.name}-", keep)


def libpq_environment(url: str) -> dict[str, str]:
    """A postgresql:// URL as libpq's variables: the password never in argv."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    variables = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432),
                 "PGUSER": urllib.parse.unquote(parts.username or ""),
                 "PGPASSWORD": urllib.parse.unquote(parts.password or ""),
                 "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/")),
                 "PGSSLMODE": query.get("sslmode", ""),
                 "PGSSLROOTCERT": query.get("sslrootcert", ""), "PGCONNECT_TIMEOUT": "10"}
    return {name: value for name, value in variables.items() if value}


def dump_postgresql(url: str, target: PurePosixPath) -> None:
    """pg_dump of the app's database (custom format: pg_restore takes it) into `target`."""
    temporary = target.with_name(target.name + ".tmp")
    dumped = run(["pg_dump", "--format=custom", f"--file={temporary}"],
                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                      **libpq_environment(url)},
                 timeout=RELEASE_COMMAND_TIMEOUT)
    if dumped.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise OSError(f"pg_dump failed: {tail(dumped.stderr, 3)}")
    os.replace(temporary, target)


def rotate_backups(directory: PurePosixPath, prefix: str, keep: int) -> None:
    """Remove all but the newest `keep` backups: regular files named <prefix>*.sqlite3 or
    *.dump only, newest by name (a UTC time), whatever else the directory holds."""
    with os.scandir(directory) as entries:
        backups = sorted(entry.name for entry in entries
                         if entry.is_file(follow_symlinks=False)
                         and entry.name.startswith(prefix)
                         and entry.name.endswith((".sqlite3", ".dump")))
    for name in backups[:max(len(backups) - keep, 0)]:
        os.unlink(directory / name)
