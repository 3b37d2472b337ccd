"""Roll each app back to its previous release, like a deploy: batch by batch, health-gated.

    pyinfra inventory.py rollback.py --limit production [--data rollback_to=1.0.0] [--dry]

The previous release is the newest one installed before the live one; `rollback_to` names
another installed version. The switch is the deploy's own (golive switch): load check,
`current` switched, graceful gunicorn swap, database backed up first (a database its
environment's hosts share is neither backed up nor migrated back: migrations keep the
previous release working). The config goes live
as the last deploy wrote it; should another deploy rewrite it meanwhile, the switch refuses.
With nothing to roll back to, the host fails with the reason and nothing changes. The next
deploy.py run deploys group data's version again.
"""

from dataclasses import replace

from pyinfra import host
from pyinfra.facts.files import Sha256File

from wsgistack.app import switch_command
from wsgistack.changes import refuse
from wsgistack.database import uses_database
from wsgistack.environment import Environment, is_database_host
from wsgistack.facts import LinkTarget
from wsgistack.onhost.golive import app_unit
from wsgistack.paths import AppPaths
from wsgistack.releases import NoRollback, release_link, rollback_target
from wsgistack.rollout import AppStep, Plan, go_live_in_batches
from wsgistack.settings import SettingsError, host_group, load_settings

settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
wanted = host.data.get("rollback_to")
if wanted is not None and not isinstance(wanted, str):
    raise SettingsError([f"rollback_to: {wanted!r} is not a version: quote it, e.g."
                         f" --data 'rollback_to=\"{wanted}\"'"])

steps = []
# A database host has no release; its schema stays as it is (README: "expand/contract").
for each in [] if is_database_host() else settings.apps:
    paths = AppPaths(each.name)
    try:
        target = replace(each, version=rollback_target(each, paths, wanted))
    except NoRollback as reason:
        refuse(name=f"Find the release to roll {each.name} back to", message=str(reason))
        continue
    live = host.get_fact(LinkTarget, path=str(paths.current))
    candidates = [host.get_fact(Sha256File, path=str(path))
                  for path in app_unit(paths, each.config_name).candidates]
    steps.append(AppStep(target, switch="" if live == release_link(target.version) else
                         switch_command(settings, target, candidates,
                                        uses_database(each, environment))))
if not is_database_host():
    go_live_in_batches(settings, Plan(apps=steps))
