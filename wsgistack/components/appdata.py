"""Each web host's app data off the host (README "Backups and restore"): restic from
Debian sends every app's data dir, encrypted, to the environment's backup host
(wsgistack.components.backup), on a timer and before each switch to another release
(golive switch); restore.py brings it back.

Root's restic never reads the app's files: the app's own user streams them to it
(golive's appdata). Its repository's key is derived from the environment's
BACKUP_PASSPHRASE for this host alone, in a root-only file; its SSH key for the backup
host is root's.
"""

from __future__ import annotations

import json

from pyinfra import host, state
from pyinfra.operations import systemd

from wsgistack.components import base
from wsgistack.components.backup import Sender, derived_key, sender_files, web_sender
from wsgistack.config.environment import Environment
from wsgistack.config.settings import Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.facts import FileText, ServiceStates, is_on
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Directory, File, Managed, ensure_all
from wsgistack.engine.programs import GOLIVE
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import (
    ROOT,
    app_backups_unit,
    backup_dir,
    data_sent,
    restic_cache,
)

PACKAGES = ("restic",)
SERVICE = "wsgistack-app-backups.service"
TIMER = "wsgistack-app-backups.timer"


class AppDataBackups(Component):
    """On a web host of an environment with a backup host: its apps' data sent there."""

    title = "App data to the backup host"

    def __init__(self, settings: Settings, environment: Environment) -> None:
        self.settings, self.environment = settings, environment

    @property
    def sender(self) -> Sender | None:
        if self.environment.backup is None:
            return None
        return next((web_sender(member) for member in self.environment.web
                     if member.name == host.name), None)

    def config(self, sender: Sender) -> str:
        """restic.json: the repository on the backup host, and the apps whose data goes
        there (golive's appdata reads it)."""
        directory, backup = backup_dir(ROOT), self.environment.backup
        assert backup is not None
        ssh = (f"ssh -p {self.settings.backup_port} -i {directory / 'ssh_key'}"
               f" -o UserKnownHostsFile="
               f"{directory / 'known_hosts'} -o StrictHostKeyChecking=yes -o BatchMode=yes"
               f" -o ServerAliveInterval=15 {sender.account}@{backup.address} -s sftp")
        return json.dumps({"repository": f"sftp:{sender.account}@{backup.url_host}:/repository",
                           "password_file": str(directory / "restic-password"),
                           "cache_dir": str(restic_cache(ROOT)),
                           "sftp_command": ssh, "host": host.name, "group": self.settings.group,
                           "apps": [app.name for app in self.settings.apps],
                           "keep_days": self.settings.backup_app_data_days}, indent=1) + "\n"

    def unit_files(self) -> list[File]:
        context = {"settings": self.settings, "golive": GOLIVE, "unit_dir": base.UNIT_DIR,
                   "group": self.settings.group}
        return [base.unit_file(name, context) for name in (SERVICE, TIMER)]

    def files(self, sender: Sender) -> list[Managed]:
        directory = backup_dir(ROOT)
        return [
            Directory(f"Create {directory} (restic's key and settings, root's alone)",
                      str(directory), "root", "root", "700"),
            *sender_files(self.settings, self.environment, sender, directory, "root"),
        ]

    def candidates(self, sender: Sender) -> list[File]:
        config, key = app_backups_unit().files
        return [File("Write restic's candidate settings (the backup host, the apps)",
                     str(candidate(config)), "root", "root", "600", text=self.config(sender)),
                File("Write this host's candidate restic key (derived from the environment's"
                     " backup key)", str(candidate(key)), "root", "root", "600",
                     text=derived_key(self.settings, f"restic {host.name}") + "\n",
                     secret=True)]

    def report(self, seen: HostState, services: dict[str, tuple[str, str]]) -> str:
        """What the deploy summary says of this host's app data, as the host read found it."""
        sent = [f"{app.name} {text.strip()}" if (text := seen.get(
                    FileText, path=str(data_sent(app.name)))) else f"{app.name} not yet"
                for app in self.settings.apps]
        failed = ("; its last timed run FAILED: journalctl -u wsgistack-app-backups"
                  if services.get(SERVICE, ("", ""))[0] == "failed" else "")
        return f"apps' data last sent to the backup host: {', '.join(sent)}{failed}"

    def managed(self) -> list[Managed]:
        sender = self.sender
        return [*self.files(sender), *self.unit_files(), *self.candidates(sender)] if sender \
            else []

    def packages(self) -> tuple[str, ...]:
        return PACKAGES if self.environment.backup else ()

    def reads(self) -> list[Read]:
        if self.environment.backup is None:
            return []
        return [Read.of(ServiceStates, services=(TIMER, SERVICE)),
                Read.of(StagedState, unit=app_backups_unit()),
                *(Read.of(FileText, path=str(data_sent(app.name))) for app in self.settings.apps)]

    def prepare(self, seen: HostState) -> list[GoLive]:
        sender = self.sender
        if sender is None:
            return []
        candidates = self.candidates(sender)
        written = ensure_all([*self.files(sender), *candidates], seen)
        units = ensure_all(self.unit_files(), seen)
        if will_change(*units):
            systemd.daemon_reload(name="Reload systemd: the app backups' units changed")
        services = seen.get(ServiceStates, services=(TIMER, SERVICE))
        Summary.of(state).note(host.name, self.report(seen, services))
        if not is_on(services.get(TIMER)):
            systemd.service(name=f"Keep {TIMER} on, and at boot", service=TIMER, running=True,
                            enabled=True)
        due = will_change(*written, *units) or is_due(seen, app_backups_unit())
        return [GoLive("Send the apps' data to the backup host (restic: its repository made"
                       " once)", golive("app-backups", expect=expect(app_backups_unit(),
                                        expected_digests(candidates)))
                       if due else "", Stage.LAST)]
