"""The stack on one host: its components, listed once, and the three phases every one of
them goes through in this order. A web host has the web stack; an environment's database
host has PostgreSQL (wsgistack.components.database), its backup host the store the
database is archived to (wsgistack.components.backup).

1. read: what every component manages and reads, in one command (hoststate), before any
   of them compares or changes anything;
2. prepare: each makes the host what it declares where that read differs, and says what
   is due to go live;
3. go live: the rollout runs those steps batch by batch (wsgistack.engine.rollout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from pyinfra.api import deploy

from wsgistack.components.acme import AcmeCertificate
from wsgistack.components.app import App
from wsgistack.components.appdata import AppDataBackups
from wsgistack.components.backup import BackupStore
from wsgistack.components.base import Base, Services
from wsgistack.components.database import (
    PASSWORD,
    DatabaseClients,
    DatabaseServer,
    passwords,
    view_of,
)
from wsgistack.components.nginx import Site
from wsgistack.components.removal import Removal
from wsgistack.components.supervisor import Program
from wsgistack.config.environment import Environment, is_backup_host, is_database_host
from wsgistack.config.secrets import app_secrets
from wsgistack.config.settings import Settings
from wsgistack.engine.component import Component, GoLive
from wsgistack.engine.health import Health
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import File, Managed


def components(settings: Settings, where: Environment) -> list[Component]:
    """This host's components: the database host's, the backup host's, or a web host's."""
    if is_backup_host():
        return [BackupStore(settings, where)]
    if is_database_host():
        return [DatabaseServer(view_of(settings, where, passwords(settings, where)))]
    return web_host(settings, where, secrets_of(settings, where))


def secrets_of(settings: Settings, where: Environment) -> dict[str, dict[str, str]]:
    """Each app's secrets, its database password among them where it uses the
    environment's database."""
    passwords_of = passwords(settings, where)
    return {each.name: {**app_secrets(settings, each),
                        **({PASSWORD: passwords_of[each.name]} if each.name in passwords_of
                           else {})}
            for each in settings.apps}


def web_host(settings: Settings, where: Environment, secrets: dict[str, dict[str, str]]
             ) -> list[Component]:
    """A web host's components, in the order they are prepared; their go-live steps run in
    this order within each stage. The apps need no package: they are put in place while
    Base's packages install, before Services waits for them."""
    apps: list[Component] = [App(settings, each, secrets[each.name], where)
                             for each in settings.apps]
    parts: list[Component] = [
        Site(settings, where), AcmeCertificate(settings), DatabaseClients(settings, where)]
    for each in settings.apps:
        parts += [Program(settings, each), Health(settings, each)]
    parts += [Removal(gone) for gone in settings.removed_apps]
    parts.append(AppDataBackups(settings, where))
    base = Base(tuple(package for part in [*apps, *parts] for package in part.packages()))
    return [base, *apps, Services(base), *parts]


def managed(parts: list[Component]) -> list[Managed]:
    return [item for part in parts for item in part.managed()]


def host_read(parts: list[Component]) -> tuple[Read, ...]:
    """The reads of the one command that reads the host."""
    items = managed(parts)
    return HostState.batch([item.path for item in items],
                           [item.path for item in items
                            if isinstance(item, File) and not item.versioned],
                           [read for part in parts for read in part.reads()])


def read(parts: list[Component]) -> HostState:
    """The host's state in one command; not `settled` where packages are to be installed,
    which make paths of their own."""
    state = HostState.read(host_read(parts))
    return replace(state, settled=not any(part.installs_packages(state) for part in parts))


def prepare(parts: list[Component], seen: HostState) -> list[GoLive]:
    """Prepare each component, in order; their go-live steps."""
    return [step for part in parts for step in as_deploy(part)(seen)]


def as_deploy(part: Component) -> Callable[[HostState], list[GoLive]]:
    """The part's prepare(), its operations named after it (a pyinfra deploy) if it has a
    title."""
    if not part.title:
        return part.prepare

    def prepare(seen: HostState) -> list[GoLive]:
        return part.prepare(seen)

    return deploy(part.title)(prepare)
