"""Converge each host to the stack its group data declares.

    pyinfra inventory.py deploy.py --limit staging [--dry]

nginx -> gunicorn -> the app, with supervisor keeping gunicorn alive. The logic lives in
the wsgistack package, one module per concern; this file only puts them in order.
"""

from pyinfra import host

from wsgistack import app, base, health, nginx, supervisor
from wsgistack.secrets import secret_key
from wsgistack.settings import host_group, load_settings

settings = load_settings(host.data, host_group(host.groups))
secrets = {each.name: secret_key(settings, each) for each in settings.apps}

base.install_base()
for each in settings.apps:
    changes = app.install_app(settings, each, secrets[each.name])
    supervisor.supervise(settings, each, changes)
nginx.serve_site(settings)
for each in settings.apps:
    health.check_app(settings, each)
