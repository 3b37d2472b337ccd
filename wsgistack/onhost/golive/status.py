"""golive status: what runs on this host, in one answer (wsgistack.components.status
reads it): each app's live and kept releases and its program's state, the site's
certificate, the database's state and the last steps of its history."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from .files import run, say
from .history import last_steps, live_release
from .layout import AppPaths, tls_paths
from .offsite import POSTGRES, archive_state
from .program import process_info
from .protocol import parse_certificate
from .releases import installed_releases
from .users import user_options


def certificate_of(site: str, root: PurePosixPath) -> dict[str, object]:
    """The names and end (seconds since the epoch) of the certificate nginx serves for the
    site, read as the deploy reads certbot's (protocol.parse_certificate); {} if none."""
    certificate, _key = tls_paths(site, root)
    read = run(["openssl", "x509", "-in", str(certificate), "-noout", "-enddate", "-ext",
                "subjectAltName"])
    if read.returncode != 0:
        return {}
    found = parse_certificate(read.stdout.splitlines())
    return {"names": list(found.names), "not_after": found.not_after}


def status(root: PurePosixPath, apps: list[str], site: str, database: bool) -> None:
    """Everything status.py shows of this host, as one JSON line."""
    report: dict[str, object] = {"apps": {
        app: {"live": live_release(root, app),
              "kept": installed_releases(AppPaths(app, root))[0],
              "program": process_info(app, root).get("statename", "not running")}
        for app in apps}}
    if site:
        report["certificate"] = certificate_of(site, root)
    if database:
        ready = run(["pg_isready", "-q"], cwd="/", **user_options(POSTGRES))
        report["database"] = {"running": ready.returncode == 0, **archive_state(root)}
    report["history"] = last_steps(root)
    say(json.dumps(report))
