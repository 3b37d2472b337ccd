"""The host's shared services: nginx, supervisor and python3-venv from Debian; and this
project's programs on the host: gunicorn-herder, which every app's supervisor program runs
gunicorn through, golive, which makes each deploy step live, and supervisor-query, which
the host read and golive ask for a program's state."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.context import ctx_host
from pyinfra.operations import server, systemd

from wsgistack.build import wheelhouse
from wsgistack.config.targets import UPLOADS
from wsgistack.engine.changes import refuse
from wsgistack.engine.component import Account, Component, GoLive
from wsgistack.engine.facts import (
    FileText,
    InstalledPackages,
    PythonTarget,
    ServiceStates,
    SystemAccount,
)
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Directory, File, Managed, ensure_all
from wsgistack.engine.preview import CREATE
from wsgistack.engine.programs import (
    GOLIVE,
    HERDER,
    HERDER_SOURCE,
    SUPERVISOR_QUERY,
    SUPERVISOR_QUERY_SOURCE,
    UV_PROGRAM,
    UV_VERSION,
    golive_zipapp,
)
from wsgistack.engine.staged import golive
from wsgistack.engine.summary import declare
from wsgistack.onhost.golive.layout import BUILD_USER, ROOT, build_dir, packages_pending
from wsgistack.paths import TEMPLATES

NOLOGIN = "/usr/sbin/nologin"
UNIT_DIR = PurePosixPath("/etc/systemd/system")
# logrotate: nginx's per-site logs are rotated by its rule in /etc/logrotate.d/nginx.
PACKAGES = ("nginx", "supervisor", "python3-venv", "logrotate")
SERVICES = ("nginx.service", "supervisor.service")
SUPERVISOR_LOGS = "/var/log/supervisor"
BUILD_USER_COMMENT = "wsgistack build user"  # marks the account as the deploy's own
PENDING = str(packages_pending(ROOT))  # golive's note of a background install under way


def upload_dirs() -> list[Managed]:
    """Where a sudo user's uploads wait before root copies them into place: its own dir
    (0700) in root's /var/lib/wsgistack, named in the host's `_temp_dir` (wsgistack.config.targets),
    never /tmp, where others could read them or create the file first. None for root, whose
    uploads go straight to their place."""
    if not ctx_host.isset():  # read outside a deploy (make lint): no host, no login
        return []
    private, user = host.data.get("_temp_dir"), host.data.get("ssh_user")
    if not private:
        return []
    return [
        Directory(f"Create {UPLOADS.parent}", str(UPLOADS.parent), "root", "root", "755"),
        Directory(f"Create {UPLOADS} (each sudo user's uploads)", str(UPLOADS), "root", "root",
                  "755"),
        Directory(f"Create {private} ({user}'s uploads, before root copies them into place)",
                  private, user, "root", "700"),
    ]


def tools() -> list[Managed]:
    """golive, on every host: a database host's go-live steps are golive's too. First the
    sudo user's upload dir, before anything is uploaded."""
    return [
        *upload_dirs(),
        Directory(f"Create {HERDER.parent} (this project's helpers)", str(HERDER.parent),
                  "root", "root", "755"),
        File(f"Install golive, the deploy's go-live steps ({GOLIVE})", str(GOLIVE), "root",
             "root", "755", local=golive_zipapp()),
    ]


def install_packages(name: str, packages: tuple[str, ...], background: bool = False) -> None:
    """Debian's `packages`, without their recommends, by golive (installed first: `tools`),
    which records what dpkg gained, for destroy. Only called when one is missing, so the
    package lists are refreshed then. In the `background`, the deploy goes on at once, and
    Services waits for them."""
    declare(server.shell(name=name, commands=[
        golive("install-packages", packages=packages, background=background)]), CREATE)


def any_missing(seen: HostState, packages: tuple[str, ...]) -> bool:
    """Whether the host lacks any of `packages` (read as InstalledPackages of exactly
    those, in its state)."""
    installed = seen.get(InstalledPackages, packages=packages)
    return any(package not in installed for package in packages)


class Base(Component):
    """A web host's packages (the base ones and `extra`, what the other components need),
    installed in the background while this project's programs, the build user and then the
    apps (which need no package) are put in place; Services waits for them."""

    title = "Base packages and services"

    def __init__(self, extra: tuple[str, ...] = ()) -> None:
        self.packages_wanted = (*PACKAGES, *extra)

    def managed(self) -> list[Managed]:
        return [
            *tools(),
            File(f"Install gunicorn-herder ({HERDER})", str(HERDER), "root", "root", "755",
                 local=HERDER_SOURCE),
            File(f"Install supervisor-query, a program's state for the host read"
                 f" ({SUPERVISOR_QUERY})", str(SUPERVISOR_QUERY), "root", "root", "755",
                 local=SUPERVISOR_QUERY_SOURCE),
            uv_program(),
            Directory(f"Create {build_dir(ROOT)} (each build's dir, the build user's)",
                      str(build_dir(ROOT)), "root", "root", "755"),
        ]

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Nothing before the rest: golive and root's state dir go last (engine.teardown)."""
        return []

    def accounts(self, purge: bool) -> list[Account]:
        return [Account(BUILD_USER, BUILD_USER_COMMENT)]

    def reads(self) -> list[Read]:
        return [Read.of(PythonTarget), Read.of(InstalledPackages, packages=self.packages_wanted),
                Read.of(SystemAccount, user=BUILD_USER)]

    def installs_packages(self, seen: HostState) -> bool:
        return any_missing(seen, self.packages_wanted)

    def prepare(self, seen: HostState) -> list[GoLive]:
        ensure_all(tools(), seen)  # golive installs the packages
        create_build_user(seen)  # before apt runs: its packages' scripts may add accounts
        if self.installs_packages(seen):
            install_packages(f"Start installing {', '.join(self.packages_wanted)} (in the"
                             " background, while the deploy goes on)", self.packages_wanted,
                             background=True)
        ensure_all([uv_for(seen) if item == uv_program() else item
                    for item in self.managed()[len(tools()):]], seen)
        return []


class Services(Component):
    """The packages Base installs, waited for before anything that needs them (the
    site, the apps' programs); nginx and supervisor running; supervisor's log dir closed."""

    title = "Base packages and services"

    def __init__(self, base: Base) -> None:
        self.base = base

    def managed(self) -> list[Managed]:
        # supervisord (root) writes the apps' logs 0644 in a dir open to all: closing the
        # dir keeps others out of them (nginx's logs: nginx.log_files).
        return [Directory(f"Close {SUPERVISOR_LOGS} to others (the apps' output)",
                          SUPERVISOR_LOGS, "root", "adm", "750")]

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Nothing: supervisor's log dir goes with supervisor, where the deploy installed it."""
        return []

    def reads(self) -> list[Read]:
        return [Read.of(ServiceStates, services=SERVICES),
                Read.of(FileText, path=PENDING)]

    def prepare(self, seen: HostState) -> list[GoLive]:
        if self.base.installs_packages(seen) or seen.get(FileText, path=PENDING):
            declare(server.shell(name=f"Wait for {', '.join(self.base.packages_wanted)} to be"
                                      " installed", commands=[golive("wait-packages")]),
                    CREATE, resource=False)
        states = seen.get(ServiceStates, services=SERVICES)
        for service in SERVICES:
            if states.get(service) != ("running", "enabled"):
                systemd.service(
                    name=f"Keep {service.removesuffix('.service')} running and enabled at boot",
                    service=service,
                    running=True,
                    enabled=True,
                )
        ensure_all(self.managed(), seen)
        return []


def uv_program(binary: Path | None = None) -> File:
    """uv (`binary`, built for the host), which installs each release's packages: named by
    its version, so in place once there (a new version is a new file)."""
    return File(f"Install uv {UV_VERSION}, which installs each release's packages"
                f" ({UV_PROGRAM})", str(UV_PROGRAM), "root", "root", "755", local=binary,
                versioned=True)


def uv_for(seen: HostState) -> File:
    """uv_program with its binary for the host, fetched only where the host may lack it (a
    converged host's run fetches nothing; where packages are installed, every item is
    applied and checked live)."""
    uv = uv_program()
    if seen.settled and uv.in_place(seen.path(uv.path)):
        return uv
    return uv_program(wheelhouse.uv_binary(seen.get(PythonTarget)))


def create_build_user(seen: HostState) -> None:
    """The user every app's build commands run as: not the app's, so the running app cannot
    touch what the next release is built from; no login, no home of its own."""
    create_system_account(BUILD_USER, BUILD_USER_COMMENT, "the user build commands run as",
                          "the builds have no user of their own", seen)


def create_system_account(user: str, comment: str, what: str, without: str,
                          seen: HostState) -> None:
    """A system account with no login and no home, made by the deploy and marked so (its
    comment): one the deploy did not make is refused, never taken over (`without` says what
    is missing then)."""
    account = seen.get(SystemAccount, user=user)
    if account.get("comment") == comment and account.get("shell") == NOLOGIN:
        return
    if account:
        refuse(name=f"Refuse to take over the account {user}",
               message=f"the account {user} exists on this host and the deploy did not"
                       f" make it: remove it, or {without}")
        return
    declare(add_account(name=f"Create {user}, {what} (no login shell)", user=user,
                        home="/nonexistent", comment=comment), CREATE)


@operation()
def add_account(user: str, home: str, comment: str):
    """A new system account and its own group, with no login shell and no home made, in one
    command (the host's read found neither): pyinfra's server.user reads every account
    again first."""
    yield StringCommand("useradd", "--system", "--user-group", "--shell", NOLOGIN,
                        "--home-dir", QuoteString(home), "--no-create-home",
                        "--comment", QuoteString(comment), QuoteString(user))


def unit_file(name: str, context: dict[str, object]) -> File:
    """A systemd unit of ours, from templates/etc/systemd/system/<name>.j2."""
    return File(f"Install {UNIT_DIR / name}", str(UNIT_DIR / name), "root", "root", "644",
                template=TEMPLATES / "etc/systemd/system" / f"{name}.j2", context=context)
