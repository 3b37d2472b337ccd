"""An environment's database host: PostgreSQL from Debian, set up for the environment's
web hosts; and what those web hosts need to reach it.

On the database host: PostgreSQL and nftables from Debian; our settings (conf.d), our
pg_hba.conf, the server's TLS pair and the apps' roles (apps.json, SCRAM verifiers, never
a password) as candidates that `golive database` makes live; a firewall table that opens
the port to the web hosts only; and a daily dump of every app's database.

On each web host: the server's certificate, which the apps pin (sslmode=verify-full), and
for each app with a `database_env` its URL, with its password, in the app's protected env
file. The password is the app's secret DATABASE_PASSWORD (wsgistack.config.secrets: per group,
from the controller, generated once where allowed, never for production).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from pyinfra import host, state
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server, systemd

from wsgistack.components import base
from wsgistack.components.archiving import ARCHIVING_PACKAGES, Archiving, archives
from wsgistack.components.firewall import DIRECTORY as firewall_dir
from wsgistack.components.firewall import Firewall, firewall_service
from wsgistack.components.tls import MAKE_LOCK, self_signed_pair
from wsgistack.config.environment import Environment, Member
from wsgistack.config.secrets import app_secrets
from wsgistack.config.settings import AppSettings, Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Component, GoLive
from wsgistack.engine.facts import InstalledPackages, ServiceStates, is_on
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, Directory, File, Managed, ensure, ensure_all
from wsgistack.engine.programs import GOLIVE
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import (
    ROOT,
    backup_dir,
    database_backups,
    database_ca,
    database_dir,
    database_unit,
    postgresql_include,
)
from wsgistack.paths import TEMPLATES

# Debian's PostgreSQL, by Debian release (VERSION_ID): what the `postgresql` package brings.
POSTGRESQL = {"12": "15", "13": "17"}
PACKAGES = ("postgresql", "nftables")
CLIENT_PACKAGES = ("postgresql-client",)  # pg_dump on the web hosts, for the pre-migration dump
PORT = 5432
PASSWORD = "DATABASE_PASSWORD"  # the app's secret: $<GROUP>_<APP>_DATABASE_PASSWORD
DIRECTORY = database_dir(ROOT)
BACKUPS = database_backups(ROOT)
CLIENT_CA = database_ca(ROOT)
FIREWALL_NAME = "postgresql"  # its table: inet wsgistack_postgresql
FIREWALL = firewall_service(FIREWALL_NAME)
# Before the firewall was one of wsgistack-firewall@'s: disabled and removed where found.
LEGACY_FIREWALL = (base.UNIT_DIR / "wsgistack-database-firewall.service",
                   DIRECTORY / "firewall.nft")
BACKUP_SERVICE = "wsgistack-database-backup.service"
BACKUP_TIMER = "wsgistack-database-backup.timer"
CLUSTER_DROP_IN = "postgresql@.service.d/wsgistack.conf"  # starts after the network is up
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default


def uses_database(app: AppSettings, environment: Environment) -> bool:
    """Whether the app's data is the environment's database server's (shared by its web
    hosts), rather than a file of each host's."""
    return environment.database is not None and app.database_env is not None


def database_apps(settings: Settings, environment: Environment) -> list[AppSettings]:
    return [app for app in settings.apps if uses_database(app, environment)]



def passwords(settings: Settings, environment: Environment) -> dict[str, str]:
    """Each database app's password, from the controller (made once where allowed)."""
    return {app.name: app_secrets(settings, app, names=(PASSWORD,))[PASSWORD]
            for app in database_apps(settings, environment)}


def scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """SCRAM-SHA-256's StoredKey and ServerKey for a password (RFC 5802, 7677)."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def scram_verifier(password: str, role: str) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password, computed here so the password
    never reaches the database host. The salt is derived from the password and the role:
    the same password gives the same verifier, so a converged host changes nothing.
    (PostgreSQL normalises a password with SASLprep first, a no-op for the printable ASCII
    that secrets.check_secrets requires.)"""
    salt = hmac.new(password.encode(), f"wsgistack scram salt {role}".encode(),
                    hashlib.sha256).digest()[:16]
    stored_key, server_key = scram_keys(password, salt, SCRAM_ITERATIONS)

    def encode(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return (f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{encode(salt)}$"
            f"{encode(stored_key)}:{encode(server_key)}")


def url(app: AppSettings, environment: Environment, password: str) -> str:
    """The app's connection URL: its own role and database, over TLS to the pinned
    certificate."""
    assert environment.database is not None
    netloc = environment.database.url_host
    query = urllib.parse.urlencode({"sslmode": "verify-full", "sslrootcert": str(CLIENT_CA)})
    return (f"postgresql://{app.name}:{urllib.parse.quote(password, safe='')}@{netloc}:{PORT}"
            f"/{app.name}?{query}")


# --- the server's TLS pair, on the controller ---------------------------------------------



# Pairs checked (or made) for an address in this run: every host of the environment asks,
# and one `openssl x509` per run is enough.
CHECKED: set[tuple[Path, str]] = set()


@dataclass(frozen=True)
class ServerPair:
    """The database server's self-signed certificate and key, kept on the controller in
    <secrets_dir>/<group>/tls/database.{crt,key}; the web hosts pin the certificate."""

    certificate: Path
    key: Path

    @classmethod
    def of(cls, settings: Settings) -> ServerPair:
        kept = settings.secrets_dir / settings.group / "tls" / "database"
        return cls(kept.with_suffix(".crt"), kept.with_suffix(".key"))

    def names(self) -> str:
        """The certificate's subjectAltName, as openssl prints it; "" if there is none."""
        shown = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                                str(self.certificate)], capture_output=True, text=True)
        return shown.stdout if shown.returncode == 0 else ""

    def make(self, server: Member) -> None:
        """Make the pair for the database host, once: again only if the certificate does
        not name its address (the host moved)."""
        address = server.address
        kind = "DNS" if server.ip_version is None else "IP"
        shown = f"{'IP Address' if kind == 'IP' else 'DNS'}:{address}"  # as openssl prints it
        with MAKE_LOCK:
            if (self.certificate, address) in CHECKED:  # by another host of this run
                return
            if not (self.key.exists() and self.certificate.exists()
                    and shown in self.names()):
                self_signed_pair(self.certificate, self.key, address, [f"{kind}:{address}"],
                                 days=3650)
            CHECKED.add((self.certificate, address))


def server_pair(settings: Settings, environment: Environment) -> ServerPair:
    """The pair for the environment's database host, made first where it is missing."""
    assert environment.database is not None
    pair = ServerPair.of(settings)
    pair.make(environment.database)
    return pair


# --- the database host --------------------------------------------------------------------

class DatabaseHost(FactBase[dict[str, str]]):
    """The Debian release and the memory PostgreSQL may use (the smaller of the host's and
    its cgroup's limit), in MB."""

    default = dict

    def command(self) -> str:
        return ("awk -F= '$1 == \"VERSION_ID\" {gsub(/\"/, \"\", $2); print \"debian=\" $2}'"
                " /etc/os-release;"
                " awk '/^MemTotal:/ {print \"memory_mb=\" int($2 / 1024)}' /proc/meminfo;"
                " limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null);"
                " case \"$limit\" in ''|max) ;; *) echo \"limit_mb=$((limit / 1048576))\";; esac")

    def process(self, output: list[str]) -> dict[str, str]:
        return dict(line.split("=", 1) for line in output if "=" in line)


class RolesDrift(FactBase[str]):
    """golive's check of the apps' roles and databases against the live apps.json: "ok",
    or what differs (names only)."""

    default = str

    def command(self) -> str:
        return f"{golive('database-check')} 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return "\n".join(output)


def cluster(version: str) -> str:
    return f"postgresql@{version}-main.service"


def memory_mb(found: dict[str, str]) -> int:
    sizes = [int(found[key]) for key in ("memory_mb", "limit_mb") if key in found]
    return min(sizes) if sizes else 1024


@dataclass(frozen=True)
class DatabaseView:
    """What the database host's templates are rendered from."""

    settings: Settings
    environment: Environment
    apps: tuple[str, ...]
    verifiers: tuple[tuple[str, str], ...]
    pair: ServerPair  # read when compared: made first by server_pair()

    def context(self, version: str, memory: int) -> dict[str, object]:
        return {"settings": self.settings, "environment": self.environment, "apps": self.apps,
                "version": version, "memory_mb": memory, "port": PORT,
                "directory": DIRECTORY, "backups": BACKUPS,
                "unit_dir": base.UNIT_DIR, "golive": GOLIVE, "firewall": FIREWALL,
                "backup_dir": backup_dir(ROOT)}


def directories() -> list[Managed]:
    return [
        Directory(f"Create {DIRECTORY.parent}", str(DIRECTORY.parent), "root", "root", "755"),
        Directory(f"Create {DIRECTORY} (PostgreSQL's settings of ours, closed to others)",
                  str(DIRECTORY), "root", "postgres", "750"),
        Directory(f"Create {BACKUPS} (the daily dumps, postgres's own)", str(BACKUPS),
                  "postgres", "postgres", "700"),
        Directory("Create postgresql@.service.d (when PostgreSQL starts)",
                  str((base.UNIT_DIR / CLUSTER_DROP_IN).parent), "root", "root", "755"),
    ]


def firewall(environment: Environment) -> Firewall:
    return Firewall(FIREWALL_NAME, PORT, "PostgreSQL's port", environment.web)


def legacy_firewall() -> list[Managed]:
    unit, rules = LEGACY_FIREWALL
    return [Absent(f"Remove {unit} (now {FIREWALL})", str(unit)),
            Absent(f"Remove {rules} (now in {firewall_dir})", str(rules))]


def remove_legacy_firewall(seen: HostState) -> list[OperationMeta | None]:
    """An earlier version's firewall unit disabled, then its files removed; its table, the
    same, stays loaded."""
    unit, _rules = LEGACY_FIREWALL
    if seen.path(str(unit)) is not None:  # made by us alone: no package brings it
        systemd.service(name=f"Disable {unit.name} (now {FIREWALL})", service=unit.name,
                        running=None, enabled=False)
    return ensure_all(legacy_firewall(), seen)


def settings_removed(version: str, purge: bool) -> Absent:
    """PostgreSQL `version` without our settings (golive database-remove)."""
    return Absent(f"Take our settings off PostgreSQL {version}"
                  + (", dropping the apps' databases and roles" if purge else ""),
                  str(postgresql_include(version, ROOT)),
                  command=golive("database-remove", version=version, purge=purge))


def unit_files(view: DatabaseView) -> list[File]:
    return [base.unit_file(name, view.context("", 0))
            for name in (BACKUP_SERVICE, BACKUP_TIMER, CLUSTER_DROP_IN)]


def candidates(view: DatabaseView, version: str, memory: int) -> list[File]:
    """The files `golive database` makes live, in database_unit's order."""
    unit = database_unit()
    settings, hba, certificate, key, apps = unit.files
    context = view.context(version, memory)
    roles = json.dumps({"apps": [{"name": name, "verifier": verifier}
                                 for name, verifier in view.verifiers]}, indent=1) + "\n"
    pair = view.pair
    return [
        File(f"Write PostgreSQL {version}'s candidate settings ({settings.name}, which its"
             " conf.d includes)", str(candidate(settings)), "root", "postgres", "640",
             template=TEMPLATES / "etc/wsgistack/postgresql/postgresql.conf.j2",
             context=context),
        File("Write the candidate pg_hba.conf (the web hosts, over TLS, with passwords)",
             str(candidate(hba)), "root", "postgres", "640",
             template=TEMPLATES / "etc/wsgistack/postgresql/pg_hba.conf.j2", context=context),
        File("Upload the database server's candidate TLS certificate",
             str(candidate(certificate)), "root", "postgres", "644", local=pair.certificate),
        File("Upload the database server's candidate TLS key (0640, postgres reads it)",
             str(candidate(key)), "root", "postgres", "640", local=pair.key, secret=True),
        File("Write the candidate apps.json (each app's role: SCRAM verifiers)",
             str(candidate(apps)), "root", "postgres", "640", text=roles, secret=True),
    ]


def view_of(settings: Settings, environment: Environment, secrets: dict[str, str]
            ) -> DatabaseView:
    apps = tuple(app.name for app in database_apps(settings, environment))
    return DatabaseView(settings, environment, apps,
                        tuple((name, scram_verifier(secrets[name], name)) for name in apps),
                        ServerPair.of(settings))


SERVICES = (FIREWALL, BACKUP_TIMER, *map(cluster, POSTGRESQL.values()))


class DatabaseServer(Component):
    """The environment's database host: everything above, changed only where the host
    differs, and live at once (before any web host goes live: rollout.database_host_first)."""

    title = "Database host"

    def __init__(self, view: DatabaseView) -> None:
        self.view = view
        self.archiving = Archiving(view.settings, view.environment)

    def managed(self) -> list[Managed]:
        """Every path the host read covers: the same files, and the candidates (their paths
        are the same for each PostgreSQL a Debian release may bring)."""
        view = self.view
        return [*base.tools(), *directories(), *firewall(view.environment).managed(),
                *legacy_firewall(), *unit_files(view),
                *candidates(view, "", 0), *self.archiving.managed()]

    def packages(self) -> tuple[str, ...]:
        return (*PACKAGES, *(ARCHIVING_PACKAGES if archives(self.view.environment) else ()))

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Our settings off PostgreSQL first (with purge, the apps' databases and roles
        dropped); then its firewall, archiving (the repository unmounted), units and files.
        The daily dumps are data: they go with purge, in root's state dir, last."""
        view = self.view
        return [*(settings_removed(version, purge) for version in POSTGRESQL.values()),
                *firewall(view.environment).teardown(), *self.archiving.teardown(),
                *unit_files(view), *(item for item in directories() if item.path != str(BACKUPS)),
                *candidates(view, "", 0), str(database_unit().stamp)]

    def reads(self) -> list[Read]:
        return [Read.of(DatabaseHost), Read.of(InstalledPackages, packages=self.packages()),
                Read.of(RolesDrift), Read.of(ServiceStates, services=SERVICES),
                Read.of(StagedState, unit=database_unit()), *self.archiving.reads()]

    def installs_packages(self, seen: HostState) -> bool:
        return base.any_missing(seen, self.packages())

    def prepare(self, seen: HostState) -> list[GoLive]:
        """The database live at once; archiving to the backup host is a go-live step, made
        once every host of the environment has been prepared (the backup host among them)."""
        version = deploy_database(self.view, seen, self.packages())
        return self.archiving.prepare(seen, version)


def deploy_database(view: DatabaseView, seen: HostState, packages: tuple[str, ...]) -> str:
    """The database host converged; its PostgreSQL's major version."""
    settings, environment = view.settings, view.environment
    found = seen.get(DatabaseHost)
    version = POSTGRESQL.get(found.get("debian", ""))
    if version is None:
        raise ValueError(f"{environment.group}'s database host runs Debian"
                         f" {found.get('debian')!r}: wsgistack knows PostgreSQL for Debian"
                         f" {', '.join(POSTGRESQL)}")
    assert environment.database is not None
    Summary.of(state).role(host.name, f"PostgreSQL {version} at"
                                    f" {environment.database.address} for"
                                    f" {', '.join(view.apps) or 'no app'}")
    ensure_all(base.tools(), seen)  # golive installs the packages
    if base.any_missing(seen, packages):
        base.install_packages(f"Install PostgreSQL {version}, {', '.join(packages[1:])}",
                              packages)
    server_pair(settings, environment)
    ensure_all(directories(), seen)
    services = seen.get(ServiceStates, services=SERVICES)
    legacy = remove_legacy_firewall(seen)
    firewall(environment).ensure(seen, services)
    units = [*legacy, *ensure_all(unit_files(view), seen)]
    files = candidates(view, version, memory_mb(found))
    written = ensure_all(files, seen)
    if will_change(*units):
        systemd.daemon_reload(name="Reload systemd: wsgistack's units changed")
    unit = database_unit()
    running = services.get(cluster(version), ("", ""))[0] == "running"
    if (will_change(*written) or is_due(seen, unit)
            or seen.get(RolesDrift) != "ok" or not running):
        server.shell(name=f"Make PostgreSQL {version}'s settings, pg_hba.conf, TLS pair and"
                          " the apps' roles live",
                     commands=[golive("database", version=version,
                                      expect=expect(unit, expected_digests(files)))])
    if not is_on(services.get(BACKUP_TIMER)):
        systemd.service(name="Keep the daily database dump's timer on, and at boot",
                        service=BACKUP_TIMER, running=True, enabled=True)
    return version


# --- the web hosts ------------------------------------------------------------------------

class DatabaseClients(Component):
    """On a web host whose apps use the environment's database: PostgreSQL's client (the
    dump before a migration) and the server's certificate, which the apps pin."""

    def __init__(self, settings: Settings, where: Environment) -> None:
        self.settings, self.where = settings, where
        self.used = bool(database_apps(settings, where))

    def managed(self) -> list[Managed]:
        """The server's certificate, which the apps' URLs pin, where any app uses it."""
        if not self.used:
            return []
        pair = ServerPair.of(self.settings)
        return [File(f"Upload the {self.where.group} database server's certificate (pinned"
                     " by the apps)", str(CLIENT_CA), "root", "root", "644",
                     local=pair.certificate)]

    def packages(self) -> tuple[str, ...]:
        return CLIENT_PACKAGES if self.used else ()

    def prepare(self, seen: HostState) -> list[GoLive]:
        if self.used:
            server_pair(self.settings, self.where)
            for item in self.managed():
                ensure(item, seen)
        return []
