"""Converge each host to the stack its group data declares.

    pyinfra inventory.py deploy.py --limit staging [--dry]

nginx -> gunicorn -> the app, with supervisor keeping gunicorn alive; where an environment
has a database host, PostgreSQL there, shared by its web hosts. The logic lives in the
wsgistack package: each part of the stack is a component (wsgistack/components/stack.py
lists them); this file only runs the phases in order. One command reads the host's state
(and on a web host a health reading); each component changes only what differs (so a
converged host costs that read alone) and says what is due to go live. The database host
and the backup host converge first, the database's archiving to the backup host once both
have; then the web hosts go live batch by batch (a shared database migrated once before any
switches, a health check after each batch, stopping at the first failure), and last, where
an ACME CA makes the site's certificate, each host obtains it where due.
"""

from pyinfra import host, state

from wsgistack.components import stack
from wsgistack.config.environment import Environment, is_database_host, is_web_host
from wsgistack.config.settings import host_group, load_settings
from wsgistack.engine.rollout import (
    DATABASE_FIRST,
    database_host_first,
    go_live_here,
    go_live_in_batches,
)
from wsgistack.engine.summary import Summary

Summary.of(state)  # this run's summary: printed once pyinfra has disconnected from every host
settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
parts = stack.components(settings, environment)
seen = stack.read(parts)
steps = stack.prepare(parts, seen)
if environment.database or environment.backup:  # on every host: see database_host_first
    database_host_first(name=DATABASE_FIRST)
if is_database_host():  # archiving to the backup host, converged by now
    go_live_here(steps)
elif is_web_host():
    go_live_in_batches(settings, settings.apps, steps, seen)
