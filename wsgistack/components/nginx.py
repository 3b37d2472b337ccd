"""nginx in front: one site for the host, a location per app.

The site is staged like all config: golive tests the candidate with `nginx -t` inside a
copy of nginx's config in which it takes the live site's place, so a broken candidate is
never live, not even on disk for the next restart. Only then is it made live and nginx
reloaded (which finishes requests in flight).
"""

from __future__ import annotations

from wsgistack.components import acme, tls
from wsgistack.components.tls import TlsPaths
from wsgistack.config.environment import Environment
from wsgistack.config.settings import Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, File, LogFile, Managed, ensure_all
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.onhost.golive.layout import AppPaths, Unit, site_unit
from wsgistack.paths import TEMPLATES


def unit(settings: Settings) -> Unit:
    """The site's staged files: the site, and its TLS pair unless certbot makes it."""
    return site_unit(settings.site_name, acme=settings.acme)


def available(settings: Settings) -> str:
    """The site's file in sites-available (its unit's first file, declared in golive)."""
    return str(unit(settings).files[0])


def site_logs(settings: Settings) -> dict[str, str]:
    """The site's own logs (each app has its own too: AppPaths.nginx_*_log)."""
    return {kind: f"/var/log/nginx/{settings.site_name}.{kind}.log"
            for kind in ("access", "error", "unknown-host")}


def log_files(settings: Settings) -> list[Managed]:
    """Every log the site writes, made 0640 www-data:adm before nginx first opens it (as
    Debian's logrotate makes them), since nginx itself would make it readable by all."""
    logs = [*site_logs(settings).values(),
            *(str(log) for app in settings.apps
              for log in (AppPaths(app.name).nginx_access_log, AppPaths(app.name).nginx_error_log))]
    return [LogFile(f"Make {log} (0640, not readable by others)", log, "www-data", "adm", "640")
            for log in logs]


def candidates(settings: Settings, where: Environment) -> list[File]:
    """The candidate site file and TLS pair (unless certbot makes it), in the unit's order."""
    site = File(f"Write the {settings.site_name} candidate nginx site",
                str(candidate(available(settings))), "root", "root", "644",
                template=TEMPLATES / "etc/nginx/sites-available/site.j2",
                context={"settings": settings, "tls": TlsPaths(settings.site_name),
                         "logs": site_logs(settings),
                         "apps": [(app, AppPaths(app.name)) for app in settings.apps],
                         "acme": acme.site_context(settings, where)})
    return [site, *([] if settings.acme else tls.candidates(settings))]


class Site(Component):
    """The host's nginx site and its TLS pair: candidates, logs, and the site going live
    in the host's batch, once its apps are live."""

    title = "nginx site"

    def __init__(self, settings: Settings, where: Environment) -> None:
        self.settings, self.where = settings, where

    def managed(self) -> list[Managed]:
        return [
            *tls.directories(),
            *candidates(self.settings, self.where),
            *log_files(self.settings),
            Absent("Disable Debian's default nginx site",
                   f"{unit(self.settings).listing}/default", link=True),
        ]

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Its files and logs, the site enabled, and its stamp."""
        staged = unit(self.settings)
        return [*self.managed(), str(staged.listing / self.settings.site_name),
                str(staged.stamp)]

    def reads(self) -> list[Read]:
        return [Read.of(StagedState, unit=unit(self.settings))]

    def prepare(self, seen: HostState) -> list[GoLive]:
        """Write the candidate site and TLS pair; golive site if anything is due."""
        settings = self.settings
        if settings.tls_make_self_signed:
            tls.make_self_signed(settings)
        items = self.managed()
        changes = ensure_all(items, seen)
        staged = unit(settings)
        due = will_change(*changes) or is_due(seen, staged)
        written = [item for item in items if isinstance(item, File)]
        return [GoLive(f"Apply the {settings.site_name} nginx site: nginx -t, reload",
                       golive("site", site=settings.site_name, acme=settings.acme,
                              expect=expect(staged, expected_digests(written))) if due else "",
                       Stage.SITE)]
