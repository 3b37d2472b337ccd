"""What runs where, read only: one command per host, changing nothing.

    pyinfra inventory.py status.py --limit production

Each host reports its apps' live and kept releases, programs and health, the site's
certificate and its expiry, the database host's state (PostgreSQL, archiving to the
backup host) and its last go-live steps: when, who logged in to run them, and from which
release to which (README "Stacks").
"""

from datetime import UTC, datetime

from pyinfra import host, state

from wsgistack.components.status import HostStatus, StatusReport, probes, report_lines
from wsgistack.config.environment import is_database_host, is_web_host
from wsgistack.config.settings import host_group, load_settings

settings = load_settings(host.data, host_group(host.groups))
web = is_web_host()
found = host.get_fact(HostStatus, apps=tuple(app.name for app in settings.apps) if web else (),
                      site=settings.site_name if web else "", database=is_database_host(),
                      host_header=settings.url_host, urls=probes(settings) if web else ())
StatusReport.of(state).lines[host.name] = report_lines(settings, found, datetime.now(UTC))
