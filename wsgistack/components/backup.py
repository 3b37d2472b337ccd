"""Backups that leave the host: an environment's backup host, and its database host's
continuous archiving there with pgBackRest (README "Backups and restore").

On the backup host: an SFTP-only account per sender (today the database host), made by
the deploy, with no shell, chrooted to a root-owned store whose `repository` dir is all it
can write; let in by its key alone, from its own address.

On the database host: pgBackRest and sshfs from Debian; postgres mounts the repository
from the backup host (the backup host pinned by the key the controller knows it by) and
pgBackRest writes it encrypted with the environment's secret BACKUP_PASSPHRASE, which never
reaches the backup host. PostgreSQL archives each WAL segment there as it fills and at
least every `backup_archive_timeout` seconds; timers take full and differential backups.
The key pair the database host logs in with is the controller's, made once in
<secrets_dir>/<group>/backup/.
"""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pyinfra import host, state
from pyinfra.api import FactBase
from pyinfra.operations import server, systemd

from wsgistack.components import base
from wsgistack.config.environment import Environment, Member
from wsgistack.config.secrets import Owner, secrets_of
from wsgistack.config.settings import Settings, SettingsError
from wsgistack.engine.changes import refuse, will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.facts import InstalledPackages, ServiceStates, SystemAccount, is_on
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Directory, File, Managed, ensure_all
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import (
    DATABASE_SENDER,
    ROOT,
    archiving_unit,
    backup_dir,
    backup_store,
    backup_store_unit,
    repository_mount,
)
from wsgistack.paths import TEMPLATES

PASSPHRASE = "BACKUP_PASSPHRASE"  # the environment's: $<GROUP>_BACKUP_PASSPHRASE
ARCHIVING_PACKAGES = ("pgbackrest", "sshfs")
NOLOGIN = "/usr/sbin/nologin"
SENDER_COMMENT = "wsgistack database backups, SFTP only"
AUTHORIZED_KEYS = PurePosixPath("/etc/ssh/wsgistack-backups")
UNIT_DIR = PurePosixPath("/etc/systemd/system")
REPOSITORY_SERVICE = "wsgistack-pgbackrest-repository.service"
TIMERS = ("wsgistack-pgbackrest-full.timer", "wsgistack-pgbackrest-diff.timer")
UNITS = (REPOSITORY_SERVICE, "wsgistack-pgbackrest@.service", *TIMERS)


def archives(environment: Environment) -> bool:
    """Whether the environment's database is archived to a backup host."""
    return environment.backup is not None and environment.database is not None


def passphrase(settings: Settings) -> str:
    """The key the repository is encrypted with: the controller's, never invented for
    production (without it the backups cannot be read)."""
    return secrets_of(settings, Owner.environment(settings, "backups"), (PASSPHRASE,))[
        PASSPHRASE]


# --- the database host's key pair, on the controller ---------------------------------------

MAKE_LOCK = threading.Lock()  # the hosts of a run are prepared in parallel greenlets


@dataclass(frozen=True)
class SenderKey:
    """The database host's SSH key pair for the backup host, kept on the controller in
    <secrets_dir>/<group>/backup/database_ed25519{,.pub}; made once."""

    private: Path

    @classmethod
    def of(cls, settings: Settings) -> SenderKey:
        return cls(settings.secrets_dir / settings.group / "backup" / "database_ed25519")

    @property
    def public(self) -> Path:
        return self.private.with_suffix(".pub")

    def made(self, group: str) -> SenderKey:
        with MAKE_LOCK:
            if not (self.private.exists() and self.public.exists()):
                self.private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                f"wsgistack {group} database backups", "-f", str(self.private)],
                               check=True, capture_output=True)
        return self


def known_host_lines(backup: Member) -> str:
    """The backup host's keys as the controller knows them (the known_hosts file pyinfra
    checks it against): the database host pins the same, never trusting a first answer."""
    data = state.inventory.get_host(backup.name).data
    known = Path(str(data.get("ssh_known_hosts_file") or "~/.ssh/known_hosts")).expanduser()
    found = subprocess.run(["ssh-keygen", "-F", backup.address, "-f", str(known)],
                           capture_output=True, text=True)
    lines = [line for line in found.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise SettingsError([f"{backup.name}: the backup host's key is not in {known}: the"
                             " database host must know it; connect to it once (ssh"
                             f" {backup.address}) and check the key you accept"])
    return "\n".join(lines) + "\n"


# --- the backup host ------------------------------------------------------------------------

class BackupStore(Component):
    """The backup host: the database host's SFTP-only account and its store."""

    title = "Backup host"

    def __init__(self, settings: Settings, environment: Environment) -> None:
        self.settings, self.environment = settings, environment

    def store_files(self) -> list[Managed]:
        store = backup_store(ROOT)
        database = self.environment.database
        assert database is not None
        key = SenderKey.of(self.settings).made(self.settings.group).public.read_text().strip()
        return [
            Directory(f"Create {store.parent}", str(store.parent), "root", "root", "755"),
            Directory(f"Create {store} (the database host's chroot, root's)", str(store),
                      "root", "root", "755"),
            Directory(f"Create {store / 'repository'} ({DATABASE_SENDER}'s, closed to others)",
                      str(store / "repository"), DATABASE_SENDER, DATABASE_SENDER, "700"),
            Directory(f"Create {AUTHORIZED_KEYS}", str(AUTHORIZED_KEYS), "root", "root", "755"),
            File(f"Let the database host in as {DATABASE_SENDER}, by its key, from its address",
                 str(AUTHORIZED_KEYS / DATABASE_SENDER), "root", "root", "644",
                 text=f'from="{database.address}",restrict {key}\n'),
        ]

    def candidate(self) -> File:
        [drop_in] = backup_store_unit().files
        return File("Write the candidate sshd drop-in (the senders: SFTP only, chrooted)",
                    str(candidate(drop_in)), "root", "root", "644",
                    template=TEMPLATES / "etc/ssh/sshd_config.d/wsgistack-backups.conf.j2",
                    context={"group": self.settings.group, "sender": DATABASE_SENDER,
                             "store": backup_store(ROOT),
                             "authorized_keys": AUTHORIZED_KEYS / "%u"})

    def managed(self) -> list[Managed]:
        if not archives(self.environment):
            return []
        return [*base.tools(), *self.store_files(), self.candidate()]

    def reads(self) -> list[Read]:
        return [Read.of(SystemAccount, user=DATABASE_SENDER),
                Read.of(StagedState, unit=backup_store_unit())]

    def prepare(self, seen: HostState) -> list[GoLive]:
        if not archives(self.environment):
            return []
        assert self.environment.database is not None
        Summary.of(state).role(host.name, f"backup host: {self.settings.group}'s database"
                               f" from {self.environment.database.name}")
        create_sender(seen)
        ensure_all([*base.tools(), *self.store_files()], seen)
        written = ensure_all([self.candidate()], seen)
        if will_change(*written) or is_due(seen.get(StagedState, unit=backup_store_unit())):
            server.shell(name="Make the backup store's sshd drop-in live (sshd -t first)",
                         commands=[golive("backup-store", expect=expect(
                             backup_store_unit(), expected_digests([self.candidate()])))])
        return []


def create_sender(seen: HostState) -> None:
    """The database host's account: made by the deploy and marked so, never one it found."""
    account = seen.get(SystemAccount, user=DATABASE_SENDER)
    if account.get("comment") == SENDER_COMMENT and account.get("shell") == NOLOGIN:
        return
    if account:
        refuse(name=f"Refuse to take over the account {DATABASE_SENDER}",
               message=f"the account {DATABASE_SENDER} exists on this host and the deploy did"
                       " not make it: remove it, or the database host has no account here")
        return
    server.user(name=f"Create {DATABASE_SENDER}, the database host's SFTP-only account",
                user=DATABASE_SENDER, system=True, shell=NOLOGIN, home="/nonexistent",
                ensure_home=False, comment=SENDER_COMMENT)


# --- the database host ----------------------------------------------------------------------

class ArchiveCheck(FactBase[dict[str, Any]]):
    """golive's report of archiving: the WAL's age, whether it fails, each backup unit's
    last result (offsite.archive_state); {} before golive or PostgreSQL are there."""

    default = dict

    def command(self) -> str:
        return f"{golive('archive-check')} 2>/dev/null || true"

    def process(self, output: list[str]) -> dict[str, Any]:
        try:
            return dict(json.loads(output[-1])) if output else {}
        except ValueError:
            return {}


def archive_report(found: dict[str, Any]) -> str:
    """What the deploy summary says of archiving, as the host read found it."""
    if not found:
        return "archiving to the backup host from this run on"
    age, failed = found.get("wal_age"), []
    wal = ("WAL archiving FAILING (PostgreSQL's log says why)" if found.get("wal_failing")
           else "no WAL archived yet" if age is None else f"WAL archived {age} s ago")
    done = []  # (when, kind): systemd's "Sun 2026-12-06 02:30:04 UTC" sorts by its date
    for kind in ("full", "diff"):
        unit = found.get(kind) or {}
        if unit.get("result") not in (None, "", "success"):
            failed.append(f"{kind} backup FAILED ({unit.get('at') or 'never done'}):"
                          f" journalctl -u wsgistack-pgbackrest@{kind}")
        elif unit.get("at"):
            done.append((unit["at"].partition(" ")[2], kind))
    newest = "newest backup: {1} at {0}".format(*max(done)) if done else ""
    return "; ".join(filter(None, [wal, newest, *failed]))

@dataclass(frozen=True)
class Archiving:
    """On the database host: what archiving to the backup host takes. Part of
    DatabaseServer, which knows the PostgreSQL version the templates need."""

    settings: Settings
    environment: Environment

    def context(self, version: str) -> dict[str, object]:
        backup = self.environment.backup
        assert backup is not None
        return {"settings": self.settings, "group": self.settings.group, "backup": backup,
                "backup_host": f"[{backup.address}]" if backup.is_ipv6 else backup.address,
                "version": version, "mount": repository_mount(ROOT),
                "backup_dir": backup_dir(ROOT), "sender": DATABASE_SENDER,
                "unit_dir": UNIT_DIR, "repository_service": REPOSITORY_SERVICE,
                "passphrase_name": f"{self.settings.group.upper()}_{PASSPHRASE}"}

    def files(self) -> list[Managed]:
        """What the host read covers; the config's candidate is the same path for every
        PostgreSQL version."""
        assert self.environment.backup is not None
        directory, key = backup_dir(ROOT), SenderKey.of(self.settings)
        context = self.context("")
        return [
            Directory(f"Create {directory} (pgBackRest's config and key, closed to others)",
                      str(directory), "root", "postgres", "750"),
            File("Upload the database host's key for the backup host (postgres reads it)",
                 str(directory / "ssh_key"), "root", "postgres", "640",
                 local=key.made(self.settings.group).private, secret=True),
            File("Pin the backup host's key, as the controller knows it",
                 str(directory / "known_hosts"), "root", "postgres", "644",
                 text=known_host_lines(self.environment.backup)),
            *(File(f"Install {UNIT_DIR / name}", str(UNIT_DIR / name), "root", "root", "644",
                   template=TEMPLATES / "etc/systemd/system" / f"{name}.j2", context=context)
              for name in UNITS),
        ]

    def candidate(self, version: str) -> File:
        [config] = archiving_unit().files
        return File("Write pgBackRest's candidate config (the repository's key: never shown)",
                    str(candidate(config)), "root", "postgres", "640",
                    template=TEMPLATES / "etc/wsgistack/backup/pgbackrest.conf.j2",
                    context={**self.context(version), "passphrase": passphrase(self.settings)},
                    secret=True)

    def managed(self) -> list[Managed]:
        return [*self.files(), self.candidate("")] if archives(self.environment) else []

    def reads(self) -> list[Read]:
        if not archives(self.environment):
            return []
        return [Read.of(InstalledPackages, packages=ARCHIVING_PACKAGES),
                Read.of(ServiceStates, services=(REPOSITORY_SERVICE, *TIMERS)),
                Read.of(StagedState, unit=archiving_unit()), Read.of(ArchiveCheck)]

    def prepare(self, seen: HostState, version: str) -> list[GoLive]:
        """Everything but what needs the backup host: that is the go-live step, which runs
        once the backup host is converged (deploy.py)."""
        if not archives(self.environment):
            return []
        Summary.of(state).add_to_role(host.name, archive_report(seen.get(ArchiveCheck)))
        units = ensure_all(self.files(), seen)
        written = ensure_all([self.candidate(version)], seen)
        if will_change(*units):
            systemd.daemon_reload(name="Reload systemd: the archiving units changed")
        services = seen.get(ServiceStates, services=(REPOSITORY_SERVICE, *TIMERS))
        for timer in TIMERS:
            if not is_on(services.get(timer)):
                systemd.service(name=f"Keep {timer} on, and at boot", service=timer,
                                running=True, enabled=True)
        if services.get(REPOSITORY_SERVICE, ("", ""))[1] != "enabled":
            systemd.service(name="Mount the repository at boot", service=REPOSITORY_SERVICE,
                            running=None, enabled=True)
        due = (will_change(*written, *units) or is_due(seen.get(StagedState,
                                                                unit=archiving_unit()))
               or services.get(REPOSITORY_SERVICE, ("", ""))[0] != "running")
        return [GoLive(f"Archive {self.settings.group}'s database to its backup host: the"
                       " stanza checked, a first full backup where there is none",
                       golive("archiving", stanza=self.settings.group,
                              expect=expect(archiving_unit(), expected_digests(
                                  [self.candidate(version)])))
                       if due else "", Stage.LAST)]
