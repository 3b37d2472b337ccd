"""nginx in front: one site for the host, a location per app, checked before reloading."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from wsgistack.changes import will_change
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.settings import Settings


@deploy("nginx site")
def serve_site(settings: Settings) -> None:
    available = f"/etc/nginx/sites-available/{settings.site_name}"
    site = files.template(
        name=f"Write the {settings.site_name} nginx site",
        src=str(TEMPLATES / "etc/nginx/sites-available/site.j2"), dest=available,
        mode="644", settings=settings,
        apps=[(app, AppPaths(app.name)) for app in settings.apps],
    )
    enabled = files.link(
        name=f"Enable the {settings.site_name} nginx site",
        path=f"/etc/nginx/sites-enabled/{settings.site_name}",
        target=f"../sites-available/{settings.site_name}",
    )
    default = files.link(
        name="Disable Debian's default nginx site",
        path="/etc/nginx/sites-enabled/default",
        present=False,
    )
    if will_change(site, enabled, default):
        server.shell(
            name="Check the nginx config (nginx -t) and reload nginx",
            commands=["nginx -t -q", "systemctl reload nginx"],
            _if=any_changed(site, enabled, default),
        )
