"""The site's certificate from an ACME CA (certbot): obtained where due, made the live
pair through nginx -t; a refusal says why in one line."""

from __future__ import annotations

import os
import time
from pathlib import PurePosixPath

from .files import Refused, Staged, content_of, run, say
from .layout import (
    acme_webroot,
    certificate_unit,
    letsencrypt_dir,
    lineage,
    renewal_config,
    tls_paths,
)
from .protocol import certificate_problem, parse_certificate
from .site import go_live_through_nginx

CERTBOT_TIMEOUT = 300  # seconds one certbot run may take


def certificate_lines(site: str, root: PurePosixPath) -> list[str]:
    """What the deploy's state read prints for the site's certificate, read here."""
    fullchain, privkey = lineage(site, root)
    config = content_of(renewal_config(site, root)) or b""
    lines = [f"server={line.partition('=')[2].strip()}" for line in config.decode().splitlines()
             if line.partition("=")[0].strip() == "server"]
    certbots = [content_of(fullchain), content_of(privkey)]
    if certbots[0] is not None:
        lines += run(["openssl", "x509", "-in", str(fullchain), "-noout", "-enddate", "-ext",
                      "subjectAltName"]).stdout.splitlines()
    live = [content_of(path) for path in tls_paths(site, root)]
    if None not in certbots and certbots == live:
        lines.append("installed=1")
    return lines


def certbot_failure(output: str) -> str:
    """certbot's reason in one line: each name the CA could not validate and why, else the
    CA's error (e.g. a rate limit), else certbot's last word."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    failed = []
    for index, line in enumerate(lines):
        if line.startswith("Domain:"):
            after = lines[index + 1:index + 4]
            kind = next((x.removeprefix("Type:").strip() for x in after if x.startswith("Type:")),
                        "")
            detail = next((x.removeprefix("Detail:").strip() for x in after
                           if x.startswith("Detail:")), "")
            failed.append(f"{line.removeprefix('Domain:').strip()}: {kind}: {detail}")
    if failed:
        return "; ".join(failed)
    said = [line for line in lines if not line.startswith(
        ("Saving debug log", "Ask for help", "See the logfile", "Some challenges have failed"))]
    found = next((index for index, line in enumerate(said) if " :: " in line),
                 next((index for index, line in enumerate(said) if "error" in line.lower()),
                      len(said) - 1))
    if found < 0:
        return "certbot failed"
    # A heading ("An unexpected error occurred:") says why on the line after it.
    return " ".join(said[found:found + 2]) if said[found].endswith(":") else said[found]


def obtain_certificate(site: str, names: list[str], directory: str, email: str,
                       ca_bundle: str | None, root: PurePosixPath) -> None:
    """Ask certbot for a certificate for `names` (HTTP-01, the webroot nginx serves), kept
    under the site's name; the CA's answer in one line if it fails."""
    command = [
        "certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
        "--email", email, "--server", directory, "--cert-name", site, "--force-renewal",
        # Its deploy hook (install-certificate) would wait for the lock this step holds:
        # this step makes the certificate live itself.
        "--no-directory-hooks",
        "--webroot", "--webroot-path", str(acme_webroot(root)),
        "--config-dir", str(letsencrypt_dir(root)),
        "--work-dir", str(root / "var/lib/letsencrypt"),
        "--logs-dir", str(root / "var/log/letsencrypt"),
        *(argument for name in names for argument in ("--domain", name))]
    environment = {**os.environ, "REQUESTS_CA_BUNDLE": ca_bundle} if ca_bundle else None
    try:
        result = run(command, env=environment, timeout=CERTBOT_TIMEOUT)
    except TimeoutError:
        raise Refused(f"certbot took over {CERTBOT_TIMEOUT}s asking {directory} for"
                      f" {', '.join(names)}; the current certificate keeps serving") from None
    if result.returncode != 0:
        raise Refused(f"no certificate for {', '.join(names)} from {directory}:"
                      f" {certbot_failure(result.stdout + result.stderr)}; the current"
                      " certificate keeps serving")


def install_certificate(site: str, root: PurePosixPath) -> bool:
    """Make certbot's certificate and key the pair nginx reads, through nginx -t; False if
    they already are (or certbot has none)."""
    unit = certificate_unit(site, root)
    sources = lineage(site, root)
    contents = {path: content_of(source) for path, source in zip(unit.files, sources, strict=True)}
    if None in contents.values() or all(content == content_of(path)
                                        for path, content in contents.items()):
        return False
    certificate, key = unit.files
    staged = Staged.of_content(unit, {certificate: (contents[certificate], 0o644),
                                      key: (contents[key], 0o600)})
    go_live_through_nginx(staged, site, f"certbot's certificate for {site}")
    return True


def certificate(root: PurePosixPath, site: str, names: list[str], directory: str, email: str,
                ca_bundle: str | None) -> None:
    """Obtain a certificate where the site's is missing, from another CA, for other names
    or close to expiring; then make it the live pair."""
    problem = certificate_problem(parse_certificate(certificate_lines(site, root)), names,
                                  directory, time.time())
    if problem:
        obtain_certificate(site, names, directory, email, ca_bundle, root)
    install_certificate(site, root)
    found = parse_certificate(certificate_lines(site, root))
    expires = time.strftime("%Y-%m-%d", time.gmtime(found.not_after))
    say(f"the certificate for {', '.join(found.names)} from {found.server} is live (expires"
        f" {expires}{'; it was new: ' + problem if problem else ''})")


def install(root: PurePosixPath, site: str) -> None:
    """certbot's deploy hook, after its timer renewed the site's certificate."""
    if install_certificate(site, root):
        say(f"certbot's renewed certificate for {site} is live")
