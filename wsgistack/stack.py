"""The whole stack on one host: everything its modules manage and read, read in one
command (hoststate) before any of them compares or changes anything. A web host has the
web stack; an environment's database host has PostgreSQL (wsgistack.database)."""

from __future__ import annotations

from dataclasses import replace

from wsgistack import acme, app, base, database, health, nginx, removal, supervisor
from wsgistack.environment import Environment
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import File, Managed
from wsgistack.settings import Settings


def declared(settings: Settings, secrets: dict[str, dict[str, str]], where: Environment
             ) -> tuple[list[Managed], list[Read]]:
    """What every module manages on a web host, and the probes each reads."""
    managed = [*base.managed(), *nginx.managed(settings, where), *acme.managed(settings),
               *database.client_managed(settings, where)]
    probes = [*base.probes(extra_packages(settings, where)), *nginx.probes(settings),
              *acme.probes(settings)]
    for each in settings.apps:
        managed += [*app.managed(settings, each, secrets[each.name], where),
                    *supervisor.managed(settings, each)]
        probes += [*app.probes(each), *supervisor.probes(each), health.reading(settings, each)]
    for gone in settings.removed_apps:
        probes += removal.probes(gone)
    return managed, probes


def extra_packages(settings: Settings, where: Environment) -> tuple[str, ...]:
    """What the web hosts need besides the base packages: PostgreSQL's client, for the
    dump before a migration, where an app uses the environment's database; certbot, where
    it makes the site's certificate."""
    client = database.CLIENT_PACKAGES if database.database_apps(settings, where) else ()
    return (*client, *acme.packages(settings))


def host_read(settings: Settings, secrets: dict[str, dict[str, str]], where: Environment
              ) -> tuple[Read, ...]:
    """The reads of the one command that reads a web host."""
    managed, probes = declared(settings, secrets, where)
    return batch(managed, probes)


def batch(managed: list[Managed], probes: list[Read]) -> tuple[Read, ...]:
    return HostState.batch([item.path for item in managed],
                           [item.path for item in managed if isinstance(item, File)], probes)


def read_host_state(settings: Settings, secrets: dict[str, dict[str, str]],
                    where: Environment) -> HostState:
    state = HostState.read(host_read(settings, secrets, where))
    return replace(state, settled=not base.installs_packages(state,
                                                             extra_packages(settings, where)))


def read_database_host(view: database.DatabaseView) -> HostState:
    """The database host's state in one command: PostgreSQL's packages decide whether the
    read may be stale, as the web stack's do on a web host."""
    state = HostState.read(batch(database.managed(view), database.probes()))
    return replace(state, settled=not database.installs_packages(state))
