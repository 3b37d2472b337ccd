"""The whole stack on one host: everything its modules manage and read, read in one
command (hoststate) before any of them compares or changes anything."""

from __future__ import annotations

from dataclasses import replace

from wsgistack import app, base, health, nginx, removal, supervisor
from wsgistack.hoststate import HostState
from wsgistack.managed import File
from wsgistack.settings import Settings


def read_host_state(settings: Settings, secrets: dict[str, str]) -> HostState:
    managed = [*base.managed(), *nginx.managed(settings)]
    probes = [*base.probes(), *nginx.probes(settings)]
    for each in settings.apps:
        managed += [*app.managed(settings, each, secrets[each.name]),
                    *supervisor.managed(settings, each)]
        probes += [*app.probes(each), *supervisor.probes(each), health.reading(settings, each)]
    for gone in settings.removed_apps:
        probes += removal.probes(gone)
    state = HostState.read([item.path for item in managed],
                           [item.path for item in managed if isinstance(item, File)], probes)
    return replace(state, settled=not base.installs_packages(state))
