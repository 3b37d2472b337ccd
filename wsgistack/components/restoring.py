"""What restore.py does, decided before any host is touched: which apps (`--data app=NAME`,
or all), whether the environment's database goes with them, and what each restore would
replace, read from the backup host (golive restore-database-plan, restore-app-plan) and
said in its operation's name, so `--dry` says exactly what a real run would replace.
"""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from wsgistack.components.archiving import archives
from wsgistack.components.database import database_apps
from wsgistack.config.environment import Environment
from wsgistack.config.settings import AppSettings, Settings, SettingsError
from wsgistack.engine.staged import golive


class RestorePlan(FactBase[dict[str, Any]]):
    """golive's plan of one restore, or {"refused": why} where there is nothing to restore
    from."""

    def process(self, output: list[str]) -> dict[str, Any]:
        try:
            return dict(json.loads(output[-1]))
        except (ValueError, IndexError, TypeError):
            return {"refused": " ".join(output) or "golive said nothing"}


class AppRestorePlan(RestorePlan):
    def command(self, app: str, to: str) -> str:
        return f"{golive('restore-app-plan', app=app, to=to)} 2>&1 || true"


class DatabaseRestorePlan(RestorePlan):
    def command(self, stanza: str, to: str) -> str:
        return f"{golive('restore-database-plan', stanza=stanza, to=to)} 2>&1 || true"


def apps_to_restore(settings: Settings, only: object) -> list[AppSettings]:
    """The apps `app=` names (all when unset)."""
    if only is None:
        return settings.apps
    chosen = [each for each in settings.apps if each.name == only]
    if not chosen:
        raise SettingsError([f"app: {only!r} is no app of {settings.group} (its apps:"
                             f" {', '.join(each.name for each in settings.apps)})"])
    return chosen


def restores_database(settings: Settings, environment: Environment,
                      apps: list[AppSettings]) -> bool:
    """Whether the restore takes the environment's database back too: where it has one
    archived and an app restored keeps its data there. pgBackRest restores the cluster
    whole, so one app alone goes back with it only if no other app's data is there."""
    if not archives(environment):
        return False
    shared = [each.name for each in database_apps(settings, environment)]
    restored = [each.name for each in apps if each.name in shared]
    if restored and len(restored) < len(shared):
        raise SettingsError([f"app: {restored[0]}'s data is {settings.group}'s database, which"
                             " pgBackRest restores whole, with "
                             + ", ".join(name for name in shared if name not in restored)
                             + "'s: restore them together (no `app=`)"])
    return bool(restored)


def checked(plan: dict[str, Any], what: str) -> dict[str, Any]:
    if "refused" in plan:
        raise SettingsError([f"{what}: nothing to restore from: {plan['refused']}"])
    return plan


def database_source(plan: dict[str, Any]) -> str:
    return (f"backup {plan['backup']} ({plan['type']}, ended {plan['ended']}) and the WAL"
            " after it")


def database_replaced(plan: dict[str, Any], to: str) -> str:
    return (f"{database_source(plan)}, up to {to}, replace the whole cluster"
            f" ({', '.join(plan['databases'])}: {plan['size']} now)")


def data_replaced(plan: dict[str, Any]) -> str:
    return (f"backup {plan['backup']} of {plan['time']}, {plan['files']} files"
            f" ({size(plan['bytes'])}): {plan['replaced']} replace the data dir's,"
            f" {plan['added']} are added; {plan['kept']} not in it stay as they are")


def size(count: int) -> str:
    """A byte count as an operator reads it: 812 bytes, 3.4 KB, 27.0 MB, 1.2 GB."""
    scaled = [(count / 1024 ** power, unit) for power, unit in ((3, "GB"), (2, "MB"), (1, "KB"))
              if count >= 1024 ** power]
    return f"{scaled[0][0]:.1f} {scaled[0][1]}" if scaled else f"{count} bytes"
