"""Converge each host to the stack its group data declares.

    pyinfra inventory.py deploy.py --limit staging [--dry]

nginx -> gunicorn -> the app, with supervisor keeping gunicorn alive. The logic lives in
the wsgistack package, one module per concern; this file only puts them in order:
first every host is prepared at once (packages, new releases, candidate config), then the
group goes live batch by batch (switch, reload, health check), stopping at the first
failure.
"""

from pyinfra import host

from wsgistack import app, base, nginx, supervisor
from wsgistack.removal import removal_command
from wsgistack.rollout import AppStep, Plan, go_live_in_batches
from wsgistack.secrets import app_secrets
from wsgistack.settings import host_group, load_settings
from wsgistack.stack import read_host_state

settings = load_settings(host.data, host_group(host.groups))
secrets = {each.name: app_secrets(settings, each) for each in settings.apps}
# One command reads all the state the steps below compare against, and a health reading;
# each step changes only what differs, so a converged host costs this one command.
seen = read_host_state(settings, secrets)

base.install_base(seen)
plan = Plan(
    apps=[AppStep(each, switch=app.prepare_app(settings, each, secrets[each.name], seen),
                  program=supervisor.prepare_program(settings, each, seen))
          for each in settings.apps],
    site=nginx.prepare_site(settings, seen),
    removals=[(gone.name, removal_command(gone, seen)) for gone in settings.removed_apps],
)
go_live_in_batches(settings, plan, seen)
