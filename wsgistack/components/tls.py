"""The site's TLS certificate and key: made self-signed once where allowed, uploaded as
candidates beside the live files, and made live with the nginx site (nginx.py)."""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wsgistack.config.settings import Settings
from wsgistack.engine.managed import Directory, File, Managed
from wsgistack.engine.staged import candidate
from wsgistack.onhost.golive.layout import ROOT, tls_dir, tls_paths

TLS_DIR = tls_dir(ROOT)
# pyinfra runs the deploy for each host in parallel greenlets: make a pair once.
MAKE_LOCK = threading.Lock()


@dataclass(frozen=True)
class TlsPaths:
    """Where nginx reads the site's certificate and key on a host (declared in golive)."""

    site_name: str

    @property
    def certificate(self) -> PurePosixPath:
        return tls_paths(self.site_name, ROOT)[0]

    @property
    def key(self) -> PurePosixPath:
        return tls_paths(self.site_name, ROOT)[1]


def make_self_signed(settings: Settings) -> None:
    """Create the site's self-signed pair on the controller, once; later runs reuse it."""
    with MAKE_LOCK:
        certificate, key = settings.tls_certificate, settings.tls_certificate_key
        if not (certificate.exists() and key.exists()):
            self_signed_pair(certificate, key, settings.url_host,
                             [f"DNS:{name}" for name in settings.server_names], days=825)


def self_signed_pair(certificate: Path, key: Path, common_name: str, alt_names: list[str],
                     days: int) -> None:
    """Write a self-signed P-256 certificate for `alt_names` ("DNS:x", "IP:y") and its key
    (0600, in a 0700 dir) on the controller. Callers hold MAKE_LOCK."""
    key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", str(days), "-subj", f"/CN={common_name}",
         "-addext", f"subjectAltName={','.join(alt_names)}", "-keyout", str(key),
         "-out", str(certificate)],
        check=True, capture_output=True)
    key.chmod(0o600)


def directories() -> list[Managed]:
    return [
        Directory(f"Create {TLS_DIR}", str(TLS_DIR), "root", "root", "755"),
        Directory(f"Create {TLS_DIR}/private (root only, for keys)", str(TLS_DIR / "private"),
                  "root", "root", "700"),
    ]


def candidates(settings: Settings) -> list[File]:
    """Certificate and key as candidates, the key root's only and never shown. The pair is
    read from the controller when compared (make_self_signed makes it first, where
    allowed)."""
    paths = TlsPaths(settings.site_name)
    return [
        File(f"Upload the {settings.site_name} candidate TLS certificate",
             str(candidate(paths.certificate)), "root", "root", "644",
             local=settings.tls_certificate),
        File(f"Upload the {settings.site_name} candidate TLS key (0600)",
             str(candidate(paths.key)), "root", "root", "600", local=settings.tls_certificate_key,
             secret=True),
    ]
