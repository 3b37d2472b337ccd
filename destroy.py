"""Take an environment's stack back off its hosts: `pulumi destroy`.

    pyinfra inventory.py destroy.py --limit staging [--dry] [--data purge=true]

Each host is read in one command, then loses what the deploy put there (its components'
`teardown`, wsgistack.engine.teardown): every app's program, code and config, the site, its
certificate and TLS pair, the deploy's units, files and accounts, and the Debian packages
the deploy installed (its record of what dpkg gained: nothing the host had before); on a
database host our PostgreSQL settings, its firewall and archiving; on a backup host the
senders' sshd and its firewall. Each app's data dir and account, its supervisor logs, the
deploy's history, the database cluster (its packages removed, not purged) and its dumps,
and the backup host's stores and their accounts stay, unless `purge=true`. Web hosts go
first, then the database host, then the backup host. The run ends with the preview of what
it removes (`--dry`: what it would); a second run removes nothing; a deploy afterwards puts
the stack back, the data kept.
"""

from pyinfra import host, state

from wsgistack.components import stack
from wsgistack.config.environment import (
    Environment,
    is_backup_host,
    is_database_host,
    is_web_host,
)
from wsgistack.config.settings import SettingsError, host_group, load_settings
from wsgistack.engine.rollout import database_host_first
from wsgistack.engine.summary import Summary
from wsgistack.engine.teardown import destroy

Summary.of(state).title = "Destroy summary"  # printed once pyinfra has disconnected from all
settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
purge = host.data.get("purge", False)
if purge not in (True, False):
    raise SettingsError([f"purge: {purge!r} is not true or false: e.g. --data purge=true"])
parts = stack.components(settings, environment)
# The web hosts first (nothing uses the database after), then the database host (its
# archive unmounted), then the backup host: every host calls each barrier, from its line.
shared = bool(environment.database or environment.backup)
if is_web_host():
    destroy(parts, settings, purge)
if shared:
    database_host_first(name="Every web host destroyed before the database host")
if is_database_host():
    destroy(parts, settings, purge)
if shared:
    database_host_first(name="The database host destroyed before the backup host")
if is_backup_host():
    destroy(parts, settings, purge)
