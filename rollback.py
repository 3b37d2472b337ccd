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

from pyinfra import host, state
from pyinfra.facts.files import Sha256File

from wsgistack.components.app import switch_command
from wsgistack.components.database import uses_database
from wsgistack.components.releases import NoRollback, release_link, rollback_target
from wsgistack.config.environment import Environment, is_web_host
from wsgistack.config.settings import SettingsError, host_group, load_settings
from wsgistack.engine.changes import refuse
from wsgistack.engine.component import GoLive, Stage
from wsgistack.engine.facts import LinkTarget
from wsgistack.engine.rollout import go_live_in_batches
from wsgistack.engine.summary import Summary
from wsgistack.onhost.golive.layout import AppPaths, app_unit

Summary.of(state)  # this run's summary: printed once pyinfra has disconnected from every host
settings = load_settings(host.data, host_group(host.groups))
environment = Environment.of(settings.group)
wanted = host.data.get("rollback_to")
if wanted is not None and not isinstance(wanted, str):
    raise SettingsError([f"rollback_to: {wanted!r} is not a version: quote it, e.g."
                         f" --data 'rollback_to=\"{wanted}\"'"])

apps, steps = [], []
# A database host has no release; its schema stays as it is (README: "expand/contract").
for each in settings.apps if is_web_host() else []:
    paths = AppPaths(each.name)
    try:
        target = replace(each, version=rollback_target(each, paths, wanted))
    except NoRollback as reason:
        refuse(name=f"Find the release to roll {each.name} back to", message=str(reason))
        continue
    live = host.get_fact(LinkTarget, path=str(paths.current))
    candidates = [host.get_fact(Sha256File, path=str(path))
                  for path in app_unit(paths, each.config_name).candidates]
    shared = uses_database(each, environment)
    apps.append(target)
    steps.append(GoLive(f"Switch {each.name} to {target.version}: load check, graceful reload",
                        "" if live == release_link(target.version) else
                        switch_command(settings, target, candidates, shared), Stage.APP, shared))
if is_web_host():
    go_live_in_batches(settings, apps, steps)
