"""Converge each host to the stack its group data declares.

    pyinfra inventory.py deploy.py --limit staging [--dry]

nginx -> gunicorn -> the app, with supervisor keeping gunicorn alive; where an environment
has a database host, PostgreSQL there, shared by its web hosts. The logic lives in the
wsgistack package, one module per concern; this file only puts them in order: the
database host first, then every web host is prepared at once (packages, new releases,
candidate config), a shared database is migrated once, the group goes live batch by
batch (switch, reload, health check), stopping at the first failure, and last, where an
ACME CA makes the site's certificate, each host obtains it where due.
"""

from pyinfra import host

from wsgistack import acme, app, base, database, nginx, supervisor
from wsgistack.environment import Environment, is_database_host
from wsgistack.removal import removal_command
from wsgistack.rollout import (
    DATABASE_FIRST,
    AppStep,
    Plan,
    database_host_first,
    go_live_in_batches,
)
from wsgistack.secrets import app_secrets
from wsgistack.settings import host_group, load_settings
from wsgistack.stack import extra_packages, read_database_host, read_host_state

settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
passwords = database.passwords(settings, environment)
# One command reads all the state the steps below compare against (and on a web host a
# health reading); each step changes only what differs, so a converged host costs it alone.
if is_database_host():
    view = database.view_of(settings, environment, passwords)
    database.deploy_database(view, read_database_host(view))
else:
    secrets = {each.name: {**app_secrets(settings, each),
                           **({database.PASSWORD: passwords[each.name]}
                              if each.name in passwords else {})}
               for each in settings.apps}
    seen = read_host_state(settings, secrets, environment)
    base.install_base(seen, extra_packages(settings, environment))
    site = nginx.prepare_site(settings, seen, environment)
    certificate = acme.prepare_certificate(settings, seen)
    database.prepare_clients(settings, environment, seen)  # into the site's TLS dir
    steps = []
    for each in settings.apps:
        prepared = app.prepare_app(settings, each, secrets[each.name], seen, environment)
        steps.append(AppStep(each, switch=prepared.switch,
                             program=supervisor.prepare_program(settings, each, seen),
                             migrate=prepared.migrate,
                             shared=database.uses_database(each, environment)))
    plan = Plan(
        apps=steps,
        site=site,
        certificate=certificate,
        removals=[(gone.name, removal_command(gone, seen)) for gone in settings.removed_apps],
    )
if environment.database:  # from this one line on every host: see database_host_first
    database_host_first(name=DATABASE_FIRST)
if not is_database_host():
    go_live_in_batches(settings, plan, seen)
