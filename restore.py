"""Restore an environment's data from its backup host, health-gated like a deploy: its
database (pgBackRest) and each web host's app data (restic).

    pyinfra inventory.py restore.py --limit production --data restore_to=latest [--dry]
    pyinfra inventory.py restore.py --limit production --data 'restore_to="2026-12-06 14:05:00+00"'

`latest` is every write the backup host holds; a time (PostgreSQL's form, UTC unless it
says otherwise) the state just before it: the database replayed up to it, each app's data
as its newest backup at or before it. In order: each web host stops its apps (nothing
writes meanwhile), the database host restores (golive restore-database: the cluster
stopped, restored, started, its writes awaited), then each web host restores each app's
data dir (golive restore-app, unpacked by the app's user), starts the app and checks its
health. The same works on a new bare host once a deploy has set it up: the deploy says so
(README "Backups and restore").
"""

from pyinfra import host, state
from pyinfra.operations import server

from wsgistack.components.archiving import archives
from wsgistack.components.database import POSTGRESQL, DatabaseHost
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

if is_web_host():
    for each in settings.apps:
        server.shell(name=f"Stop {each.name} while its data is restored",
                     commands=[f"supervisorctl stop {each.name}"])
elif is_database_host():
    Summary.of(state).role(host.name, f"{settings.group}'s database restored to {to}")
else:
    Summary.of(state).role(host.name, f"backup host of {settings.group}")
database_host_first(name="Every app stopped before the data is restored")
if is_database_host() and archives(environment):
    version = POSTGRESQL.get(host.get_fact(DatabaseHost).get("debian", ""), "")
    server.shell(name=f"Restore {settings.group}'s database to {to} from its backup host",
                 commands=[golive("restore-database", stanza=settings.group, version=version,
                                  to=to)])
database_host_first(name="The database restored before any app starts")
if is_web_host():
    for each in settings.apps:
        server.shell(name=f"Restore {each.name}'s data to {to} from the backup host, and"
                          " start it", commands=[golive("restore-app", app=each.name, to=to),
                                                 f"supervisorctl start {each.name}"])
        health.check_app(settings, each, active=True)
