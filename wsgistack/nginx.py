"""nginx in front: one site for the host, a location per app.

The site is staged like all config: the candidate is tested with `nginx -t` inside a copy
of nginx's config in which it takes the live site's place, so a broken candidate is never
live, not even on disk for the next restart. Only then is it copied over the live file
and nginx reloaded (which finishes requests in flight).
"""

from __future__ import annotations

import shlex

from pyinfra.api import deploy

from wsgistack import tls
from wsgistack.changes import will_change
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import AbsentLink, File, Managed, ensure_all
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.settings import Settings
from wsgistack.staged import StagedFiles, StagedState, candidate, is_due
from wsgistack.tls import TlsPaths

ENABLED = "/etc/nginx/sites-enabled"


def staged_files(settings: Settings) -> StagedFiles:
    """The live site and pair; the stamp covers which sites are enabled, so a disabled
    default is reloaded too."""
    pair = TlsPaths(settings.site_name)
    return StagedFiles("nginx-site", (available(settings), str(pair.certificate), str(pair.key)),
                       also=f"find {ENABLED} -printf '%f %l\\n' | sort")


def available(settings: Settings) -> str:
    return f"/etc/nginx/sites-available/{settings.site_name}"


def managed(settings: Settings) -> list[Managed]:
    return [
        *tls.managed(settings),
        File(f"Write the {settings.site_name} candidate nginx site", candidate(available(settings)),
             "root", "root", "644", template=TEMPLATES / "etc/nginx/sites-available/site.j2",
             context={"settings": settings, "tls": TlsPaths(settings.site_name),
                      "apps": [(app, AppPaths(app.name)) for app in settings.apps]}),
        AbsentLink("Disable Debian's default nginx site", f"{ENABLED}/default"),
    ]


def probes(settings: Settings) -> list[Read]:
    return [Read.of(StagedState, staged=staged_files(settings))]


@deploy("nginx site")
def prepare_site(settings: Settings, seen: HostState) -> str:
    """Write the candidate site and TLS pair; return the go-live script if anything is
    due, else ""."""
    if settings.tls_make_self_signed:
        tls.make_self_signed(settings)
    changes = ensure_all(managed(settings), seen)
    staged = staged_files(settings)
    if will_change(*changes) or is_due(seen.get(StagedState, staged=staged)):
        return reload_script(settings, available(settings), TlsPaths(settings.site_name), staged)
    return ""


def reload_script(settings: Settings, available: str, tls: TlsPaths,
                  staged: StagedFiles) -> str:
    """Test the candidates in place of the live site and pair, make them live, reload."""
    site = settings.site_name
    test_site = f"$test/sites-enabled/{site}"
    refused = f"{candidate(available)} fails nginx -t; the live site is unchanged:"
    return "\n".join([
        "test=$(mktemp -d)",
        "trap 'rm -rf \"$test\"' EXIT",
        "mkdir \"$test/sites-enabled\"",
        f"sed \"s#{ENABLED}/#$test/sites-enabled/#\" /etc/nginx/nginx.conf > \"$test/nginx.conf\"",
        f"grep -q \"$test/sites-enabled/\" \"$test/nginx.conf\" || {{ echo 'nginx.conf does not"
        f" include {ENABLED}/: cannot test the candidate' >&2; exit 1; }}",
        f"for enabled in {ENABLED}/*; do",
        f"  if [ -e \"$enabled\" ] && [ \"${{enabled##*/}}\" != {site} ]; then",
        "    ln -s \"$(readlink -f \"$enabled\")\" \"$test/sites-enabled/\"",
        "  fi",
        "done",
        f"sed \"s#{tls.certificate};#{candidate(tls.certificate)};#;"
        f" s#{tls.key};#{candidate(tls.key)};#\" {candidate(available)} > \"{test_site}\"",
        "if ! out=$(nginx -t -q -c \"$test/nginx.conf\" 2>&1); then",
        f"  echo {shlex.quote(refused)} >&2",
        f"  echo \"$out\" | sed \"s#$test/sites-enabled/{site}#{candidate(available)}#g\" >&2",
        "  exit 1",
        "fi",
        staged.promote(),
        f"ln -sfn ../sites-available/{site} {ENABLED}/{site}",
        "nginx -t -q",
        "systemctl reload nginx",
        staged.record(),
    ])
