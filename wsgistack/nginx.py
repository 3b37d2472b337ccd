"""nginx in front: one site for the host, a location per app.

The site is staged like all config: the candidate is tested with `nginx -t` inside a copy
of nginx's config in which it takes the live site's place, so a broken candidate is never
live, not even on disk for the next restart. Only then is it copied over the live file
and nginx reloaded (which finishes requests in flight).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files

from wsgistack.changes import will_change
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.settings import Settings
from wsgistack.staged import StagedFiles, StagedState, candidate, is_due
from wsgistack.tls import TlsPaths, upload_pair

ENABLED = "/etc/nginx/sites-enabled"


@deploy("nginx site")
def prepare_site(settings: Settings) -> str:
    """Write the candidate site and TLS pair; return the go-live script if anything is
    due, else ""."""
    available = f"/etc/nginx/sites-available/{settings.site_name}"
    tls = TlsPaths(settings.site_name)
    pair = upload_pair(settings)
    site = files.template(
        name=f"Write the {settings.site_name} candidate nginx site",
        src=str(TEMPLATES / "etc/nginx/sites-available/site.j2"), dest=candidate(available),
        mode="644", create_remote_dir=False, settings=settings, tls=tls,
        apps=[(app, AppPaths(app.name)) for app in settings.apps],
    )
    default = files.link(
        name="Disable Debian's default nginx site",
        path=f"{ENABLED}/default",
        present=False,
    )
    # The stamp covers which sites are enabled, so a disabled default is reloaded too.
    staged = StagedFiles("nginx-site", (available, str(tls.certificate), str(tls.key)),
                         also=f"find {ENABLED} -printf '%f %l\\n' | sort")
    if will_change(site, default, *pair) or is_due(host.get_fact(StagedState, staged=staged)):
        return reload_script(settings, available, tls, staged)
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
