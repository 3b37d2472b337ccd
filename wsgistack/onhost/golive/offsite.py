"""Backups that leave the host: the backup host's store, the database host's pgBackRest
stanza on it, and a point-in-time restore from it.

- The backup host lets each sender in as an SFTP-only account, chrooted to its own store
  (sshd's drop-in, checked by `sshd -t` before sshd reloads; put back if refused).
- The database host's postgres mounts its repository from there (sshfs) and pgBackRest
  writes it encrypted: the key never reaches the backup host. Its config goes live once
  the stanza checks out (`stanza-create`, `check`, a first full backup where there is none).
- A restore stops the cluster, restores (to a time, or the latest WAL) and starts it.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import PurePosixPath

from .appdata import moment
from .files import Refused, Staged, parse_expect, record, run, say, tail, write_atomically
from .layout import (
    archiving_unit,
    backup_dir,
    backup_outcome,
    backup_store_unit,
    repository_mount,
    stamps_dir,
)
from .protocol import BACKUP_KINDS
from .users import user_options

POSTGRES = "postgres"
REPOSITORY_SERVICE = "wsgistack-pgbackrest-repository.service"
SFTP_SERVICE = "wsgistack-backup-sftp.service"  # the backup host's sshd for its senders
# What pgBackRest says when the repository holds another cluster's backups: this host's
# PostgreSQL is new where the environment's was (restore.py brings its data back).
OTHER_CLUSTER = "do not match the database"
# ...and when its key does not decrypt the repository's info files
UNREADABLE = "unable to load info file"


def backup_store(root: PurePosixPath, expect: list[str]) -> None:
    """Make the candidate configs live, if sshd takes both, and reload both sshds."""
    unit = backup_store_unit(root)
    own, drop_in = unit.files
    staged = Staged.verified(unit, parse_expect(expect))
    try:
        staged.make_live()
        for checked, config in ((run(["sshd", "-t", "-f", str(own)]), own),
                                (run(["sshd", "-t"]), drop_in)):
            if checked.returncode != 0:
                staged.put_back()
                raise Refused(f"sshd refused the candidate {config}; the previous one is"
                              f" back:\n{tail(checked.stderr, 5)}")
        for service in ("ssh.service", SFTP_SERVICE):
            reloaded = run(["systemctl", "reload-or-restart", service])
            if reloaded.returncode != 0:
                raise Refused(f"{service} did not reload: {tail(reloaded.stderr, 3)}")
    finally:
        staged.clean_up()
    record(unit)
    say("the backup store's accounts are live: SFTP only on their own port, each chrooted to"
        " its own store")


def pgbackrest_run(root: PurePosixPath, stanza: str, *args: str, timeout: float = 600
                   ) -> subprocess.CompletedProcess[str]:
    """pgBackRest as postgres with our config (its key is there, never in argv)."""
    return run(["pgbackrest", f"--config={backup_dir(root) / 'pgbackrest.conf'}",
                f"--stanza={stanza}", "--log-level-console=warn", "--log-level-stderr=off",
                *args], cwd="/", timeout=timeout, errors="replace", **user_options(POSTGRES))


def pgbackrest(root: PurePosixPath, stanza: str, *args: str, timeout: float = 600
               ) -> tuple[int, str]:
    """(pgBackRest's exit status, its last error line or its output's end)."""
    done = pgbackrest_run(root, stanza, *args, timeout=timeout)
    errors = [line.split("ERROR:", 1)[1].strip() for line in done.stdout.splitlines()
              if "ERROR:" in line]
    return done.returncode, (errors[-1] if errors else tail(done.stdout + done.stderr, 3))


def backups_in(root: PurePosixPath, stanza: str) -> list[dict[str, object]]:
    """The stanza's backups in the repository, oldest first (pgBackRest's own JSON)."""
    done = pgbackrest_run(root, stanza, "--output=json", "info")
    try:
        stanzas = json.loads(done.stdout) if done.returncode == 0 else []
    except ValueError:
        return []
    return list(stanzas[0].get("backup", [])) if stanzas else []


def mount_repository(root: PurePosixPath, again: bool = False) -> None:
    """The repository mounted from the backup host (its service is postgres's sshfs), at a
    mount point of postgres's in root's dir (only postgres sees into the mount)."""
    mount = repository_mount(root)
    try:  # (root cannot even stat a mounted one: the mount is postgres's alone)
        os.mkdir(mount, 0o700)
    except FileExistsError:
        pass
    else:
        account = pwd.getpwnam(POSTGRES)
        os.chown(mount, account.pw_uid, account.pw_gid, follow_symlinks=False)
    started = run(["systemctl", "restart" if again else "start", REPOSITORY_SERVICE])
    if started.returncode != 0 or not is_mounted(repository_mount(root)):
        status = run(["systemctl", "status", "--no-pager", "-n", "5", REPOSITORY_SERVICE])
        raise Refused(f"the backup host's repository is not mounted at"
                      f" {repository_mount(root)}:\n{tail(status.stdout, 5)}")


def is_mounted(path: PurePosixPath) -> bool:
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == str(path) for line in mounts)


def archiving(root: PurePosixPath, stanza: str, expect: list[str], remount: bool = False
              ) -> None:
    """Make pgBackRest's candidate config live if the repository takes it: the stanza
    (made once), archiving checked end to end, a first full backup where there is none.
    Where the repository holds another cluster's backups (this PostgreSQL is new where the
    environment's was), refused, but the config stays live for restore.py. `remount`: the
    mount's unit changed, so it is mounted again with it."""
    unit = archiving_unit(root)
    staged = Staged.verified(unit, parse_expect(expect))
    mount_repository(root, again=remount)
    try:
        staged.make_live()
        status, said = pgbackrest(root, stanza, "stanza-create")
        if status != 0 and OTHER_CLUSTER in said:
            raise Refused(f"archiving is NOT on: the backup host holds {stanza}'s backups of"
                          " another PostgreSQL cluster, and this one is new: bring them back"
                          f" with `pyinfra inventory.py restore.py --limit {stanza}"
                          " --data restore_to=latest`, then deploy again")
        if status == 0:
            status, said = pgbackrest(root, stanza, "check", timeout=120)
        if status != 0:
            staged.put_back()
            if UNREADABLE in said:
                said = (f"this key does not open it: is {stanza.upper()}_BACKUP_PASSPHRASE the"
                        " one its backups were made with?")
            raise Refused(f"pgBackRest refused {stanza}'s repository on the backup host (the"
                          f" previous config is back): {said}")
    finally:
        staged.clean_up()
    if not backups_in(root, stanza):
        take_backup(root, stanza, "full")
    record(unit)
    say(f"{stanza}: WAL archived to the backup host, {len(backups_in(root, stanza))}"
        " backup(s) there")


def take_backup(root: PurePosixPath, stanza: str, kind: str) -> None:
    """A `kind` (full, diff) backup to the backup host, now (its timer's unit, or the
    deploy's first); how it went kept for the deploy summary (archive-check)."""
    if kind not in BACKUP_KINDS:
        raise Refused(f"{kind!r} is not a kind of backup: {', '.join(BACKUP_KINDS)}")
    status, said = pgbackrest(root, stanza, f"--type={kind}", "backup", timeout=6 * 3600)
    outcome = {"result": "success" if status == 0 else "failed",
               "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    os.makedirs(stamps_dir(root), mode=0o755, exist_ok=True)
    write_atomically(backup_outcome(kind, root), json.dumps(outcome).encode(),
                     0, 0, 0o644)
    if status != 0:
        raise Refused(f"the {kind} backup of {stanza} failed: {said}")
    say(f"{stanza}: {kind} backup taken")


def archive_state(root: PurePosixPath) -> dict[str, object]:
    """How archiving fares, read-only: seconds since PostgreSQL last archived a WAL segment
    (None: never), whether its last try failed, and each kind of backup's last result and
    when it ended ({}: never taken)."""
    asked = run(["psql", "-X", "-A", "-t", "-d", "postgres", "-c",
                 "SELECT extract(epoch FROM now() - last_archived_time)::int, coalesce("
                 "last_failed_time > coalesce(last_archived_time, '-infinity'), false)"
                 " FROM pg_stat_archiver"], cwd="/", **user_options(POSTGRES))
    age, _, failing = asked.stdout.strip().partition("|")
    state: dict[str, object] = {"wal_age": int(age) if age.isdigit() else None,
                                "wal_failing": failing == "t"}
    for kind in BACKUP_KINDS:
        try:
            with open(backup_outcome(kind, root)) as stamp:
                state[kind] = json.load(stamp)
        except (OSError, ValueError):
            state[kind] = {}
    return state


def archive_check(root: PurePosixPath) -> None:
    say(json.dumps(archive_state(root)))


def restore_database(root: PurePosixPath, stanza: str, version: str, to: str) -> None:
    """Stop the cluster, restore the stanza's newest backup and replay its WAL up to `to`
    ("latest": all of it), then start the cluster and wait until it takes writes."""
    cluster = f"postgresql@{version}-main.service"
    mount_repository(root)
    target = [] if to == "latest" else ["--type=time", f"--target={to}",
                                        "--target-action=promote"]
    stopped = run(["systemctl", "stop", cluster])
    if stopped.returncode != 0:
        raise Refused(f"{cluster} did not stop: {tail(stopped.stderr, 3)}")
    status, said = pgbackrest(root, stanza, "--delta", *target, "restore", timeout=3600)
    if status != 0:
        run(["systemctl", "start", cluster])
        raise Refused(f"pgBackRest could not restore {stanza} to {to}: {said}")
    started = run(["systemctl", "start", cluster])
    if started.returncode != 0:
        raise Refused(f"{cluster} did not start after the restore: {tail(started.stderr, 3)}")
    wait_for_writes(cluster)
    # PostgreSQL 15's checkpointer slept through the promotion with recovery's timeout, and
    # keeps no archive_timeout until it next wakes (measured: a write 40 s later still not
    # archived): a checkpoint wakes it, and the recovery point is archive_timeout again.
    checkpoint = run(["psql", "-X", "-q", "-d", "postgres", "-c", "CHECKPOINT"], cwd="/",
                     **user_options(POSTGRES))
    if checkpoint.returncode != 0:
        raise Refused(f"{cluster} restored, but did not take a checkpoint:"
                      f" {tail(checkpoint.stderr, 3)}")
    say(f"{stanza}: PostgreSQL {version} restored to {to}")


def restore_plan(root: PurePosixPath, stanza: str, to: str) -> None:
    """What restore-database would do, changing nothing (JSON): the backup pgBackRest would
    start from (the newest that ended before `to`), the WAL it would replay, and what the
    cluster holds now, which it replaces whole."""
    if not is_mounted(repository_mount(root)):
        raise Refused(f"the backup host's repository is not mounted at"
                      f" {repository_mount(root)}: deploy first")
    backups = backups_in(root, stanza)
    if to != "latest":
        before = moment(to).timestamp()
        backups = [each for each in backups
                   if each["timestamp"]["stop"] <= before]  # type: ignore[index]
    if not backups:
        raise Refused(f"{stanza}: the backup host holds no backup of its database"
                      f"{'' if to == 'latest' else ' that ended before ' + to}")
    newest = backups[-1]
    asked = run(["psql", "-X", "-A", "-t", "-d", "postgres", "-c",
                 "SELECT string_agg(datname, ' ' ORDER BY datname),"
                 " pg_size_pretty(sum(pg_database_size(datname))) FROM pg_database"
                 " WHERE NOT datistemplate"], cwd="/", **user_options(POSTGRES))
    databases, _, size = asked.stdout.strip().partition("|")
    say(json.dumps({"backup": newest["label"], "type": newest["type"],
                    "ended": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(
                        newest["timestamp"]["stop"])),  # type: ignore[index]
                    "databases": databases.split(), "size": size}))


def wait_for_writes(cluster: str, timeout: float = 300) -> None:
    """Until recovery has ended and the cluster takes writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        asked = run(["psql", "-X", "-A", "-t", "-d", "postgres", "-c",
                     "SELECT pg_is_in_recovery()"], cwd="/", **user_options(POSTGRES))
        if asked.stdout.strip() == "f":
            return
        time.sleep(0.5)
    raise Refused(f"{cluster} is still recovering after {timeout:.0f} s: see its log")
