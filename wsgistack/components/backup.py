"""An environment's backup host (README "Backups and restore"): where its database host's
pgBackRest repository (wsgistack.components.archiving) and each web host's app data
(wsgistack.components.appdata) are kept, encrypted by their senders.

Each sender has an account of its own there, made by the deploy, with no shell: SFTP only,
chrooted to a root-owned store whose `repository` dir is all it can write, let in by its
key alone and from its own address. Each sender's key pair is the controller's, made once
in <secrets_dir>/<group>/backup/; the backup host's host key, which the senders pin, is the
one the controller knows it by.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pyinfra import host, state
from pyinfra.operations import server, systemd

from wsgistack.components import base
from wsgistack.components.firewall import Firewall
from wsgistack.config.environment import Environment, Member
from wsgistack.config.secrets import Owner, secrets_of
from wsgistack.config.settings import Settings, SettingsError
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Account, Component, GoLive
from wsgistack.engine.facts import InstalledPackages, ServiceStates, SystemAccount
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, Directory, File, Managed, ensure_all
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import ROOT, backup_sftp_dir, backup_store, backup_store_unit
from wsgistack.paths import TEMPLATES

PASSPHRASE = "BACKUP_PASSPHRASE"  # the environment's: $<GROUP>_BACKUP_PASSPHRASE
AUTHORIZED_KEYS = PurePosixPath("/etc/ssh/wsgistack-backups")


def passphrase(settings: Settings) -> str:
    """The environment's backup key: the controller's, never invented for production
    (without it the backups cannot be read)."""
    return secrets_of(settings, Owner.environment(settings, "backups"), (PASSPHRASE,))[
        PASSPHRASE]


def derived_key(settings: Settings, purpose: str) -> str:
    """A key of its own for one sender's repository, derived from the environment's backup
    key: the operator keeps one; a host that leaks its own reveals no other's."""
    digest = hmac.new(passphrase(settings).encode(), f"wsgistack {settings.group} {purpose}"
                      .encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Sender:
    """A host that sends its backups to the backup host: its account and store there."""

    account: str
    store: str  # its dir in /srv/wsgistack-backups
    member: Member  # where it sends from
    what: str  # what it sends, as the account's comment says

    @property
    def comment(self) -> str:
        return f"wsgistack backups of {self.what}"

    def key(self, settings: Settings) -> SenderKey:
        return SenderKey(settings.secrets_dir / settings.group / "backup"
                         / f"{self.store}_ed25519").made(self.comment)


def database_sender(environment: Environment) -> Sender | None:
    if environment.database is None:
        return None
    return Sender("wsgistack-db-backups", "database", environment.database,
                  f"{environment.database.name}'s database")


def web_sender(web: Member) -> Sender:
    """A web host's account, named by its name's digest (a stable, valid user name)."""
    tag = hashlib.sha256(web.name.encode()).hexdigest()[:8]
    return Sender(f"wsgistack-web-{tag}", f"web-{tag}", web, f"{web.name}'s app data")


def senders(environment: Environment) -> list[Sender]:
    """Who sends to the environment's backup host: its database host and web hosts."""
    if environment.backup is None:
        return []
    return [*filter(None, [database_sender(environment)]), *map(web_sender, environment.web)]


# --- on the controller ------------------------------------------------------------------------

MAKE_LOCK = threading.Lock()  # the hosts of a run are prepared in parallel greenlets


@dataclass(frozen=True)
class SenderKey:
    """A sender's SSH key pair, kept on the controller; made once."""

    private: Path

    @property
    def public(self) -> Path:
        return self.private.with_suffix(".pub")

    def made(self, comment: str) -> SenderKey:
        with MAKE_LOCK:
            if not (self.private.exists() and self.public.exists()):
                self.private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                                "-f", str(self.private)], check=True, capture_output=True)
        return self


def known_host_lines(backup: Member, port: int) -> str:
    """The backup host's keys as the controller knows them (the known_hosts file pyinfra
    checks it against), as its senders reach it on `port`: they pin the same, never
    trusting a first answer (the senders' sshd serves the host's own keys)."""
    return "".join(f"[{backup.address}]:{port} {kind} {key}\n"
                   for kind, key in known_keys(backup))


def known_keys(backup: Member) -> tuple[tuple[str, str], ...]:
    data = state.inventory.get_host(backup.name).data
    known = Path(str(data.get("ssh_known_hosts_file") or "~/.ssh/known_hosts")).expanduser()
    return host_keys(backup.name, backup.address, known)


@functools.cache  # asked by every sender's read and prepare: one ssh-keygen per run
def host_keys(name: str, address: str, known: Path) -> tuple[tuple[str, str], ...]:
    """(type, key) of each of the host's keys in `known` that sshd's own host keys are."""
    found = subprocess.run(["ssh-keygen", "-F", address, "-f", str(known)],
                           capture_output=True, text=True)
    keys = tuple((fields[1], fields[2]) for fields in map(str.split, found.stdout.splitlines())
                 if len(fields) >= 3 and not fields[0].startswith(("#", "@"))
                 and host_key_file(fields[1]))
    if not keys:
        raise SettingsError([f"{name}: the backup host's key is not in {known}: its senders"
                             f" must know it; connect to it once (ssh {address}) and check"
                             " the key you accept"])
    return keys


def host_key_file(kind: str) -> str | None:
    """Where Debian's sshd keeps its host key of this type (ssh-ed25519, ecdsa-sha2-...,
    ssh-rsa); None for a type it makes none of."""
    name = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(
        kind, "ecdsa" if kind.startswith("ecdsa-sha2-") else None)
    return f"/etc/ssh/ssh_host_{name}_key" if name else None


def sender_files(settings: Settings, environment: Environment, sender: Sender,
                 directory: PurePosixPath, group: str) -> list[Managed]:
    """On a sender: its key for the backup host (readable by `group`, who sends) and the
    backup host's pinned key."""
    assert environment.backup is not None
    return [
        File("Upload this host's key for the backup host", str(directory / "ssh_key"), "root",
             group, "640" if group != "root" else "600", local=sender.key(settings).private,
             secret=True),
        File("Pin the backup host's key, as the controller knows it",
             str(directory / "known_hosts"), "root", group, "644",
             text=known_host_lines(environment.backup, settings.backup_port)),
    ]


# --- the backup host ------------------------------------------------------------------------

SFTP_SERVICE = "wsgistack-backup-sftp.service"
PACKAGES = ("nftables",)  # sshd is the host's own (openssh-server)


class BackupStore(Component):
    """The backup host: each sender's SFTP-only account and its store, and the sshd that
    lets them in on a port of its own, firewalled to them."""

    title = "Backup host"

    def __init__(self, settings: Settings, environment: Environment) -> None:
        self.settings, self.environment = settings, environment
        self.senders = senders(environment)
        self.firewall = Firewall("backups", settings.backup_port, "the backup store's SFTP",
                                 tuple(sender.member for sender in self.senders))

    def store_files(self) -> list[Managed]:
        top = backup_store(ROOT, "")
        items: list[Managed] = [
            Directory(f"Create {top}", str(top), "root", "root", "755"),
            Directory(f"Create {AUTHORIZED_KEYS}", str(AUTHORIZED_KEYS), "root", "root", "755"),
            Directory(f"Create {backup_sftp_dir(ROOT)} (the senders' sshd)",
                      str(backup_sftp_dir(ROOT)), "root", "root", "755")]
        for sender in self.senders:
            store = backup_store(ROOT, sender.store)
            key = sender.key(self.settings).public.read_text().strip()
            items += [
                Directory(f"Create {store} ({sender.account}'s chroot, root's)", str(store),
                          "root", "root", "755"),
                Directory(f"Create {store / 'repository'} ({sender.account}'s, closed to"
                          " others)", str(store / "repository"), sender.account,
                          sender.account, "700"),
                File(f"Let {sender.member.name} in as {sender.account}, by its key, from its"
                     " address", str(AUTHORIZED_KEYS / sender.account), "root", "root", "644",
                     text=f'from="{sender.member.address}",restrict {key}\n')]
        return items

    def context(self) -> dict[str, object]:
        backup = self.environment.backup
        assert backup is not None
        return {"group": self.settings.group, "senders": self.senders,
                "port": self.settings.backup_port, "unit_dir": base.UNIT_DIR,
                "store": lambda sender: backup_store(ROOT, sender.store),
                "authorized_keys": AUTHORIZED_KEYS / "%u", "firewall": self.firewall,
                "host_keys": [host_key_file(kind) for kind, _ in known_keys(backup)],
                "config": backup_store_unit().files[0]}

    def candidates(self) -> list[File]:
        own, drop_in = backup_store_unit().files
        context = self.context()
        return [File("Write the candidate config of the senders' sshd (SFTP only, chrooted,"
                     f" on port {self.settings.backup_port})", str(candidate(own)), "root",
                     "root", "644", context=context,
                     template=TEMPLATES / "etc/wsgistack/backup-store/sshd_config.j2"),
                File("Write the candidate drop-in that keeps the senders off the host's own"
                     " sshd", str(candidate(drop_in)), "root", "root", "644",
                     template=TEMPLATES / "etc/ssh/sshd_config.d/wsgistack-backups.conf.j2",
                     context=context)]

    def unit(self) -> File:
        return base.unit_file(SFTP_SERVICE, self.context())

    def managed(self) -> list[Managed]:
        if not self.senders:
            return []
        return [*base.tools(), *self.store_files(), *self.firewall.managed(), self.unit(),
                *self.candidates()]

    def packages(self) -> tuple[str, ...]:
        return PACKAGES if self.senders else ()

    def teardown(self, purge: bool) -> list[Managed | str]:
        """The senders' sshd stopped and its port closed; the host's own sshd without our
        drop-in; the stores, the environment's backups, only with purge."""
        if not self.senders:
            return []
        _, drop_in = backup_store_unit().files
        dropped = [str(drop_in), str(candidate(drop_in))]
        stores = self.store_files()
        return [self.unit(), *self.firewall.teardown(),
                Absent("Remove the drop-in that keeps the senders off the host's own sshd,"
                       " and reload it", str(drop_in),
                       command=f"{golive('remove-paths', paths=dropped)} && systemctl reload ssh"),
                *(stores if purge else [item for item in stores
                                        if item.path in (str(AUTHORIZED_KEYS),
                                                         str(backup_sftp_dir(ROOT)))]),
                *self.candidates()[:1], str(backup_store_unit().stamp)]

    def accounts(self, purge: bool) -> list[Account]:
        """The senders' accounts own their stores: they go with them, with purge."""
        return [Account(sender.account, sender.comment) for sender in self.senders] if purge \
            else []

    def installs_packages(self, seen: HostState) -> bool:
        return base.any_missing(seen, self.packages())

    def reads(self) -> list[Read]:
        return [Read.of(InstalledPackages, packages=self.packages()),
                *(Read.of(SystemAccount, user=sender.account) for sender in self.senders),
                Read.of(StagedState, unit=backup_store_unit()),
                Read.of(ServiceStates, services=self.services())]

    def services(self) -> tuple[str, ...]:
        return (self.firewall.service, SFTP_SERVICE)

    def prepare(self, seen: HostState) -> list[GoLive]:
        if not self.senders:
            return []
        Summary.of(state).role(host.name, f"backup host of {self.settings.group}, for "
                               + ", ".join(sender.member.name for sender in self.senders))
        for sender in self.senders:
            base.create_system_account(
                sender.account, sender.comment, f"{sender.member.name}'s SFTP-only account",
                f"{sender.member.name} has no account here", seen)
        ensure_all(base.tools(), seen)  # golive installs the packages
        if self.installs_packages(seen):
            base.install_packages(f"Install {', '.join(PACKAGES)}", PACKAGES)
        ensure_all(self.store_files(), seen)
        services = seen.get(ServiceStates, services=self.services())
        self.firewall.ensure(seen, services)
        if will_change(*ensure_all([self.unit()], seen)):
            systemd.daemon_reload(name="Reload systemd: the senders' sshd's unit changed")
        files = self.candidates()
        written = ensure_all(files, seen)
        if will_change(*written) or is_due(seen, backup_store_unit()):
            server.shell(name="Make the senders' sshd config and the host's sshd drop-in live"
                              " (sshd -t first)",
                         commands=[golive("backup-store", expect=expect(
                             backup_store_unit(), expected_digests(files)))])
        if services.get(SFTP_SERVICE) != ("running", "enabled"):
            systemd.service(name=f"Keep the senders' sshd running, and at boot (port"
                                 f" {self.settings.backup_port})", service=SFTP_SERVICE,
                            running=True, enabled=True)
        return []
