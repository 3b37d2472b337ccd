"""Restore an environment's database from its backup host, health-gated like a deploy.

    pyinfra inventory.py restore.py --limit production --data restore_to=latest [--dry]
    pyinfra inventory.py restore.py --limit production --data 'restore_to="2026-12-06 14:05:00+00"'

`latest` replays every WAL segment the backup host holds; a time (PostgreSQL's form, UTC
unless it says otherwise) stops just before it, e.g. before a bad DELETE. In order: each web
host stops its apps that use the database (nothing writes meanwhile), the database host
restores (golive restore-database: the cluster stopped, pgBackRest's restore, started, its
writes awaited), then each web host starts its apps again and checks their health. The
same works on a new bare database host once a deploy has set it up (README "Backups and
restore"). Needs the environment's backup host and the key its backups are encrypted with.
"""

from pyinfra import host, state
from pyinfra.operations import server

from wsgistack.components.database import POSTGRESQL, DatabaseHost, uses_database
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
if environment.backup is None or environment.database is None:
    raise SettingsError([f"restore.py: {settings.group} has no database archived to a backup"
                         " host (targets: `database` and `backup`)"])
apps = [each for each in settings.apps if uses_database(each, environment)]

if is_web_host():
    for each in apps:
        server.shell(name=f"Stop {each.name} while its database is restored",
                     commands=[f"supervisorctl stop {each.name}"])
database_host_first(name="Every app stopped before the database is restored")
if not is_web_host():
    Summary.of(state).role(host.name, f"{settings.group}'s database restored to {to}"
                           if is_database_host() else f"backup host of {settings.group}")
if is_database_host():
    version = POSTGRESQL.get(host.get_fact(DatabaseHost).get("debian", ""), "")
    server.shell(name=f"Restore {settings.group}'s database to {to} from its backup host",
                 commands=[golive("restore-database", stanza=settings.group, version=version,
                                  to=to)])
database_host_first(name="The database restored before any app starts")
if is_web_host():
    for each in apps:
        server.shell(name=f"Start {each.name} on its restored database",
                     commands=[f"supervisorctl start {each.name}"])
        health.check_app(settings, each, active=True)
