"""The site's certificate from an ACME CA (`tls_mode = "acme"`): certbot on each web host.

Each web host obtains and renews its own certificate for the site's names, by HTTP-01
through a webroot that nginx serves on port 80. The CA may check any host's challenge on
any host the names lead to, so each host's nginx answers a token it does not hold by
asking the environment's other web hosts for it (the site's `acme_peers`): whichever host
the CA reaches answers for all of them. No key or certificate leaves the host that made it,
and renewal needs no deploy: certbot's timer renews, and its deploy hook makes the renewed
pair live through golive (nginx -t, graceful reload).

The deploy reads the certificate's state with the rest of the host (CertificateState) and
calls golive's `certificate` step only where it is missing, from another CA, for other
names, within 30 days of expiring, or not the pair nginx reads. Until certbot's first
certificate, nginx starts with a self-signed placeholder that golive makes on the host.
"""

from __future__ import annotations

import shlex
import time
from pathlib import PurePosixPath
from typing import Any

from pyinfra.api import FactBase
from pyinfra.operations import systemd

from wsgistack.config.environment import Environment, Member
from wsgistack.config.schema import LETS_ENCRYPT
from wsgistack.config.settings import Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.facts import ServiceStates, is_on
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, Directory, File, Managed, ensure_all
from wsgistack.engine.programs import GOLIVE
from wsgistack.engine.staged import golive
from wsgistack.onhost.golive.layout import (
    ROOT,
    acme_webroot,
    certificate_unit,
    letsencrypt_dir,
    lineage,
    renewal_config,
    tls_dir,
    tls_paths,
)
from wsgistack.onhost.golive.protocol import Certificate, certificate_problem, parse_certificate
from wsgistack.paths import TEMPLATES

PACKAGES = ("certbot",)
TIMER = "certbot.timer"
WEBROOT = acme_webroot(ROOT)
HOOK = letsencrypt_dir(ROOT) / "renewal-hooks/deploy/wsgistack"
CA_BUNDLE = tls_dir(ROOT) / "acme-ca.crt"
DROP_IN = PurePosixPath("/etc/systemd/system/certbot.service.d/wsgistack.conf")
# Let's Encrypt issues at most 5 certificates for the same set of names a week, and each
# web host asks for its own.
LETS_ENCRYPT_LIMIT = 5
# Set on a challenge request one web host passes to the others: they answer it from their
# own webroot only, never passing it on again.
PEER_HEADER = "X-Wsgistack-Acme-Peer"


class CertificateState(FactBase[Certificate]):
    """The site's certificate from certbot: the CA it came from, its names and expiry, and
    whether it is the pair nginx reads (golive.parse_certificate reads the lines)."""

    default = Certificate

    def command(self, site: str, root: PurePosixPath = ROOT) -> str:
        fullchain, privkey = (shlex.quote(str(path)) for path in lineage(site, root))
        certificate, key = (shlex.quote(str(path)) for path in tls_paths(site, root))
        config = shlex.quote(str(renewal_config(site, root)))
        return (f"sed -n 's/^server *= */server=/p' {config};"
                f" openssl x509 -in {fullchain} -noout -enddate -ext subjectAltName;"
                f" cmp -s {fullchain} {certificate} && cmp -s {privkey} {key}"
                " && echo installed=1")

    def process(self, output: list[str]) -> Certificate:
        return parse_certificate(output)


def site_context(settings: Settings, where: Environment) -> dict[str, object] | None:
    """What the nginx site needs to answer the CA's challenges; None without acme.

    `peers`: where the environment has several web hosts, all of them, which may hold a
    token the CA asks this one for. The host itself is among them, so that every web host's
    site is the same file; asked as a peer, it answers from its webroot only."""
    if not settings.acme:
        return None
    peers: tuple[Member, ...] = where.web if len(where.web) > 1 else ()
    return {"webroot": WEBROOT, "peers": peers, "peer_header": PEER_HEADER}


def certificate_deleted(site: str, why: str) -> Absent:
    """certbot's certificate for `site` deleted with all certbot keeps of it (its renewal
    config first). Applied unread where packages are being installed: a host that never had
    certbot has nothing to delete."""
    renewal = str(renewal_config(site, ROOT))
    return Absent(f"Delete certbot's {site} certificate, which it would go on renewing ({why})",
                  renewal, command=f"test ! -e {shlex.quote(renewal)} || certbot delete"
                                   f" --non-interactive --cert-name {shlex.quote(site)}")


class AcmeCertificate(Component):
    """With tls_mode = "acme": certbot, its deploy hook and timer, and the certificate
    obtained where due once every batch is live (the CA may ask any host of the group for
    a token). Otherwise: no certbot lineage left renewing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def managed(self) -> list[Managed]:
        settings = self.settings
        if not settings.acme:
            # A certificate from before must not be renewed (port 80 now redirects all, so each
            # renewal would fail, twice a day), nor replace the operator's pair.
            return [Absent("Remove certbot's deploy hook (tls_mode is not acme)", str(HOOK)),
                    certificate_deleted(settings.site_name, "tls_mode is not acme")]
        ca = settings.acme_ca_certificate
        context = {"path": DROP_IN, "directory": settings.acme_directory,
                   "ca_bundle": CA_BUNDLE if ca else None}
        return [
            Directory(f"Create {WEBROOT} (certbot's HTTP-01 tokens, served by nginx)",
                      str(WEBROOT), "root", "root", "755"),
            *(Directory(f"Create {path} (certbot makes it on its first run only)", str(path),
                        "root", "root", "755") for path in (HOOK.parent.parent, HOOK.parent)),
            File(f"Install certbot's deploy hook: a renewed {settings.site_name} certificate goes"
                 " live through golive", str(HOOK), "root", "root", "755",
                 template=TEMPLATES / "etc/letsencrypt/renewal-hooks/deploy/wsgistack.j2",
                 context={"hook": HOOK, "site": settings.site_name, "golive": GOLIVE,
                          "lineage": lineage(settings.site_name, ROOT)[0].parent,
                          "certificate": tls_paths(settings.site_name, ROOT)[0]}),
            *([File(f"Upload the CA certificate of {settings.acme_directory}", str(CA_BUNDLE),
                    "root", "root", "644", local=ca)] if ca else []),
            Directory(f"Create {DROP_IN.parent}", str(DROP_IN.parent), "root", "root", "755"),
            File("Tell certbot's timer which CA certificates to trust", str(DROP_IN), "root",
                 "root", "644", template=TEMPLATES / "etc/systemd/system/certbot.service.d"
                 / "wsgistack.conf.j2", context=context),
        ]

    def teardown(self, purge: bool) -> list[Managed | str]:
        """certbot's certificate for the site, and what the deploy added to certbot."""
        site = self.settings.site_name
        return [*map(str, (HOOK, WEBROOT, DROP_IN.parent, CA_BUNDLE,
                           certificate_unit(site).stamp)),
                certificate_deleted(site, "destroy")]

    def reads(self) -> list[Read]:
        if not self.settings.acme:
            return []
        return [Read.of(CertificateState, site=self.settings.site_name),
                Read.of(ServiceStates, services=(TIMER,))]

    def packages(self) -> tuple[str, ...]:
        return PACKAGES if self.settings.acme else ()

    def prepare(self, seen: HostState) -> list[GoLive]:
        """certbot's files and timer; golive certificate where due."""
        settings, items = self.settings, self.managed()
        changed = [item for item, change in zip(items, ensure_all(items, seen), strict=True)
                   if will_change(change)]
        if not settings.acme:
            return []
        if any(item.path == str(DROP_IN) for item in changed):
            systemd.daemon_reload(name="Reload systemd: certbot's drop-in changed")
        if not is_on(seen.get(ServiceStates, services=(TIMER,)).get(TIMER)):
            systemd.service(name="Keep certbot's renewal timer on, and at boot", service=TIMER,
                            running=True, enabled=True)
        found = seen.get(CertificateState, site=settings.site_name)
        due = certificate_problem(found, settings.server_names, settings.acme_directory,
                                  time.time())
        command = "" if not due and found.installed else golive(
            "certificate", site=settings.site_name, names=settings.server_names,
            directory=settings.acme_directory, email=settings.acme_email,
            ca_bundle=CA_BUNDLE if settings.acme_ca_certificate else None)
        return [GoLive(f"Obtain the {settings.site_name} certificate from"
                       f" {settings.acme_directory} where due (certbot, HTTP-01); make it"
                       " live: nginx -t, reload", command, Stage.LAST)]


def lets_encrypt_limit_problems(group: str, data: dict[str, Any],
                         web: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """An environment whose web hosts would ask Let's Encrypt for more certificates for
    the same names than it issues in a week. A host's own acme_directory (a sandbox's CA)
    counts over the group's."""
    if data.get("tls_mode") != "acme":
        return []
    directory = data.get("acme_directory", LETS_ENCRYPT)
    asking = [name for name, host_data in web
              if host_data.get("acme_directory", directory) == LETS_ENCRYPT]
    if len(asking) <= LETS_ENCRYPT_LIMIT:
        return []
    return [f"group_data ({group}): tls_mode: acme on {len(asking)} web hosts asks Let's"
            f" Encrypt for {len(asking)} certificates for the same names, over its limit of"
            f" {LETS_ENCRYPT_LIMIT} a week: at most {LETS_ENCRYPT_LIMIT} web hosts per"
            " environment, or tls_mode files with a certificate of your own"]
