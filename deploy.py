"""Converge each host to the stack its group data declares.

    pyinfra inventory.py deploy.py --limit staging [--dry]

nginx -> gunicorn -> the app, with supervisor keeping gunicorn alive. The logic lives in
the wsgistack package, one module per concern; this file only puts them in order:
first every host is prepared at once (packages, new releases, candidate config), then the
group goes live batch by batch (switch, reload, health check), stopping at the first
failure.
"""

from pyinfra import host

from wsgistack import app, base, health, nginx, supervisor
from wsgistack.rollout import Rollout, go_live
from wsgistack.secrets import secret_key
from wsgistack.settings import host_group, load_settings

settings = load_settings(host.data, host_group(host.groups))
secrets = {each.name: secret_key(settings, each) for each in settings.apps}

base.install_base()
switches = [app.prepare_app(settings, each, secrets[each.name]) for each in settings.apps]
programs = [supervisor.prepare_program(settings, each) for each in settings.apps]
site = nginx.prepare_site(settings)

rollout = Rollout.for_group(settings.group, settings.rollout_batch_size)
due = any(switches + programs + [site])
for batch in host.loop(range(rollout.batch_count)):
    turn = rollout.is_turn_of(host.name, batch)
    # A host with nothing to make live is checked at once, with every host like it.
    check_now = turn if due else batch == 0
    step = f"(rollout batch {batch + 1})"
    for each, switch, program in zip(settings.apps, switches, programs, strict=True):
        go_live(name=f"Switch {each.name} to {each.version}: load check, graceful reload {step}",
                commands=[switch] if turn and switch else [], rollout=rollout)
        go_live(name=f"Apply the {each.name} supervisor program {step}",
                commands=[program] if turn and program else [], rollout=rollout)
    go_live(name=f"Apply the {settings.site_name} nginx site: nginx -t, reload {step}",
            commands=[site] if turn and site else [], rollout=rollout)
    for each in settings.apps:
        health.check_app(settings, each, active=check_now)
