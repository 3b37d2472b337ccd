"""The whole stack on one host: everything its modules manage and read, read in one
command (hoststate) before any of them compares or changes anything."""

from __future__ import annotations

from dataclasses import replace

from wsgistack import app, base, health, nginx, removal, supervisor
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import File, Managed
from wsgistack.settings import Settings


def declared(settings: Settings, secrets: dict[str, dict[str, str]]
             ) -> tuple[list[Managed], list[Read]]:
    """What every module manages, and the probes each reads."""
    managed = [*base.managed(), *nginx.managed(settings)]
    probes = [*base.probes(), *nginx.probes(settings)]
    for each in settings.apps:
        managed += [*app.managed(settings, each, secrets[each.name]),
                    *supervisor.managed(settings, each)]
        probes += [*app.probes(each), *supervisor.probes(each), health.reading(settings, each)]
    for gone in settings.removed_apps:
        probes += removal.probes(gone)
    return managed, probes


def host_read(settings: Settings, secrets: dict[str, dict[str, str]]) -> tuple[Read, ...]:
    """The reads of the one command that reads a host."""
    managed, probes = declared(settings, secrets)
    return HostState.batch([item.path for item in managed],
                           [item.path for item in managed if isinstance(item, File)], probes)


def read_host_state(settings: Settings, secrets: dict[str, dict[str, str]]) -> HostState:
    state = HostState.read(host_read(settings, secrets))
    return replace(state, settled=not base.installs_packages(state))
