"""Restore an environment's data from its backup host, health-gated like a deploy: its
database (pgBackRest) and each web host's app data (restic).

    pyinfra inventory.py restore.py --limit production --data restore_to=latest [--dry]
    pyinfra inventory.py restore.py --limit production --data 'restore_to="2026-12-06 14:05:00+00"'
    pyinfra inventory.py restore.py --limit staging --data restore_to=latest --data app=flasktodo

`latest` is every write the backup host holds; a time (PostgreSQL's form, UTC unless it
says otherwise) the state just before it: the database replayed up to it, each app's data
as its newest backup at or before it. `app=NAME` restores that app alone (with the
database only if no other app keeps its data there: pgBackRest restores it whole).

First each host reads what its restore would replace (the backup it would take, what it
holds): every operation's name says it, `--dry` stops there, and a restore with nothing to
restore from stops before any host is touched. Then, in order: each web host stops the
apps (nothing writes meanwhile), the database host restores (golive restore-database: the
cluster stopped, restored, started, its writes awaited), then each web host restores each
app's data dir (golive restore-app, unpacked by the app's user), starts the app and checks
its health. The same works on a new bare host once a deploy has set it up: the deploy says
so (README "Backups and restore").
"""

from pyinfra import host, state
from pyinfra.operations import server

from wsgistack.components.database import POSTGRESQL, DatabaseHost
from wsgistack.components.restoring import (
    AppRestorePlan,
    DatabaseRestorePlan,
    apps_to_restore,
    checked,
    data_replaced,
    database_replaced,
    database_source,
    restores_database,
)
from wsgistack.config.environment import Environment, is_database_host, is_web_host
from wsgistack.config.settings import SettingsError, host_group, load_settings
from wsgistack.engine import health
from wsgistack.engine.rollout import database_host_first
from wsgistack.engine.staged import golive
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.protocol import TARGET

Summary.of(state)  # this run's summary: printed once pyinfra has disconnected from every host
settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
to = host.data.get("restore_to")
if not isinstance(to, str) or not TARGET.match(to):
    raise SettingsError([f"restore_to: {to!r} is not `latest` or a time like"
                         " \"2026-12-06 14:05:00+00\": e.g. --data restore_to=latest"])
if environment.backup is None:
    raise SettingsError([f"restore.py: {settings.group} has no backup host (targets:"
                         " `backup`)"])
apps = apps_to_restore(settings, host.data.get("app"))
database = restores_database(settings, environment, apps)

if is_web_host():
    plans = {each.name: checked(host.get_fact(AppRestorePlan, app=each.name, to=to),
                                f"{host.name}: {each.name}") for each in apps}
    for each in apps:
        server.shell(name=f"Stop {each.name} while its data is restored",
                     commands=[f"supervisorctl stop {each.name}"])
elif is_database_host() and database:
    plan = checked(host.get_fact(DatabaseRestorePlan, stanza=settings.group, to=to),
                   f"{settings.group}'s database")
    Summary.of(state).role(host.name, f"{settings.group}'s database restored to {to} from"
                                      f" {database_source(plan)}")
else:
    Summary.of(state).role(host.name, "nothing of it restored" if is_database_host()
                           else f"backup host of {settings.group}")
database_host_first(name="Every app stopped before the data is restored")
if is_database_host() and database:
    version = POSTGRESQL.get(host.get_fact(DatabaseHost).get("debian", ""), "")
    server.shell(name=f"Restore {settings.group}'s database to {to} from its backup host: "
                      + database_replaced(plan, to),
                 commands=[golive("restore-database", stanza=settings.group, version=version,
                                  to=to)])
database_host_first(name="The database restored before any app starts")
if is_web_host():
    for each in apps:
        server.shell(name=f"Restore {each.name}'s data to {to} from the backup host, and"
                          f" start it: {data_replaced(plans[each.name])}",
                     commands=[golive("restore-app", app=each.name, to=to),
                               f"supervisorctl start {each.name}"])
        health.check_app(settings, each, active=True)
