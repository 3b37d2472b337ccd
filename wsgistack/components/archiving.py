"""The database host's continuous archiving to its environment's backup host, with
pgBackRest (README "Backups and restore"): part of DatabaseServer.

pgBackRest and sshfs from Debian; postgres mounts its repository from the backup host
(wsgistack.components.backup) and pgBackRest writes it encrypted with a key derived from
the environment's BACKUP_PASSPHRASE, which never reaches the backup host. PostgreSQL
archives each WAL segment there as it fills and at least every `backup_archive_timeout`
seconds; timers take full and differential backups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pyinfra import host, state
from pyinfra.api import FactBase
from pyinfra.operations import systemd

from wsgistack.components import base
from wsgistack.components.backup import (
    PASSPHRASE,
    Sender,
    database_sender,
    derived_key,
    sender_files,
)
from wsgistack.config.environment import Environment
from wsgistack.config.settings import Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import GoLive, Stage
from wsgistack.engine.facts import InstalledPackages, ServiceStates, is_on
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, Directory, File, Managed, ensure_all
from wsgistack.engine.programs import GOLIVE
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import (
    ROOT,
    archiving_unit,
    backup_dir,
    backup_outcome,
    repository_mount,
)
from wsgistack.onhost.golive.protocol import BACKUP_KINDS
from wsgistack.paths import TEMPLATES

ARCHIVING_PACKAGES = ("pgbackrest", "sshfs")
REPOSITORY_SERVICE = "wsgistack-pgbackrest-repository.service"
TIMERS = ("wsgistack-pgbackrest-full.timer", "wsgistack-pgbackrest-diff.timer")
UNITS = (REPOSITORY_SERVICE, "wsgistack-pgbackrest@.service", *TIMERS)


def archives(environment: Environment) -> bool:
    """Whether the environment's database is archived to a backup host."""
    return environment.backup is not None and environment.database is not None


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
    done = []  # (when, kind): "2026-12-06 02:30:04 UTC" sorts as it reads
    for kind in BACKUP_KINDS:
        taken = found.get(kind) or {}
        if taken.get("result") == "failed":
            failed.append(f"{kind} backup FAILED ({taken.get('at')}): journalctl -u"
                          f" wsgistack-pgbackrest@{kind}")
        elif taken.get("at"):
            done.append((taken["at"], kind))
    newest = "newest backup: {1} at {0}".format(*max(done)) if done else ""
    return "; ".join(filter(None, [wal, newest, *failed]))

@dataclass(frozen=True)
class Archiving:
    """On the database host: what archiving to the backup host takes. Part of
    DatabaseServer, which knows the PostgreSQL version the templates need."""

    settings: Settings
    environment: Environment

    @property
    def sender(self) -> Sender:
        sender = database_sender(self.environment)
        assert sender is not None
        return sender

    def context(self, version: str) -> dict[str, object]:
        backup = self.environment.backup
        assert backup is not None
        return {"settings": self.settings, "group": self.settings.group, "backup": backup,
                "backup_host": backup.url_host,
                "version": version, "mount": repository_mount(ROOT),
                "backup_dir": backup_dir(ROOT), "sender": self.sender.account,
                "unit_dir": base.UNIT_DIR, "repository_service": REPOSITORY_SERVICE,
                "golive": GOLIVE,
                "passphrase_name": f"{self.settings.group.upper()}_{PASSPHRASE}"}

    def files(self) -> list[Managed]:
        """What the host read covers; the config's candidate is the same path for every
        PostgreSQL version."""
        directory, context = backup_dir(ROOT), self.context("")
        return [
            Directory(f"Create {directory} (pgBackRest's config and key, closed to others)",
                      str(directory), "root", "postgres", "750"),
            # postgres runs sshfs and pgBackRest: the key is its to read
            *sender_files(self.settings, self.environment, self.sender, directory, "postgres"),
            *(base.unit_file(name, context) for name in UNITS),
        ]

    def candidate(self, version: str) -> File:
        [config] = archiving_unit().files
        return File("Write pgBackRest's candidate config (the repository's key: never shown)",
                    str(candidate(config)), "root", "postgres", "640",
                    template=TEMPLATES / "etc/wsgistack/backup/pgbackrest.conf.j2",
                    context={**self.context(version),
                             "passphrase": derived_key(self.settings, "pgbackrest")},
                    secret=True)

    def managed(self) -> list[Managed]:
        return [*self.files(), self.candidate("")] if archives(self.environment) else []

    def teardown(self) -> list[Managed | str]:
        """The repository unmounted (its unit stopped and disabled) before its mount point
        and unit go, then the rest: the backups stay on the backup host."""
        if not archives(self.environment):
            return []
        unit, mount = str(base.UNIT_DIR / REPOSITORY_SERVICE), str(repository_mount(ROOT))
        stamps = [archiving_unit().stamp, *(backup_outcome(kind, ROOT) for kind in BACKUP_KINDS)]
        return [Absent("Unmount the repository from the backup host, and remove its unit",
                       unit, command=f"systemctl disable --now {REPOSITORY_SERVICE}"
                                     f" && {golive('remove-paths', paths=[unit, mount])}"),
                *self.managed(), *map(str, stamps)]

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
        config = self.candidate(version)
        written = ensure_all([config], seen)
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
        due = (will_change(*written, *units) or is_due(seen, archiving_unit())
               or services.get(REPOSITORY_SERVICE, ("", ""))[0] != "running")
        return [GoLive(f"Archive {self.settings.group}'s database to its backup host: the"
                       " stanza checked, a first full backup where there is none",
                       golive("archiving", stanza=self.settings.group,
                              expect=expect(archiving_unit(), expected_digests([config])),
                              remount=will_change(*units))
                       if due else "", Stage.LAST)]
