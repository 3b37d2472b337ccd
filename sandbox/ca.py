"""The sandbox's own ACME CA: Debian's pebble (Let's Encrypt's test CA) and the DNS it
validates with (pebble-challtestsrv), on a host of their own (`--hosts ...,ca=1`).

Nothing in a sandbox reaches a real CA: the inventory points every host's
`acme_directory` at this one (wsgistack.config.targets). pebble checks HTTP-01 challenges on port
80 of whatever address its DNS gives for a name; `python -m sandbox dns NAME HOST` says
which sandbox host that is. A name the DNS was not told of does not resolve.

pebble makes a new root CA each time it starts: the certificates it issues chain to the
root served at `roots`, never to anything a real client trusts.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.spec import HostSpec, SandboxSpec
from sandbox.system import run

GROUP = "ca"  # the sandbox group of the CA host; no environment of the inventory
DIRECTORY_PORT, ROOTS_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055
CONFIG_DIR = Path("etc/wsgistack-sandbox-ca")  # on the CA host's disk

PEBBLE_UNIT = f"""[Unit]
Description=pebble, the sandbox's ACME CA (directory on :{DIRECTORY_PORT}, roots on :{ROOTS_PORT})
After=network-online.target pebble-challtestsrv.service
Wants=network-online.target

[Service]
# No artificial waits, no rejected nonces: each order is validated for real, at once.
Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0
ExecStart=/usr/bin/pebble -config /{CONFIG_DIR}/pebble.json -dnsserver 127.0.0.1:{DNS_PORT}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
DNS_UNIT = f"""[Unit]
Description=pebble-challtestsrv: the DNS the sandbox's CA resolves site names with
After=network-online.target
Wants=network-online.target

[Service]
# Only DNS (no challenge servers of its own); no answer for a name it was not told of.
ExecStart=/usr/bin/pebble-challtestsrv -dns01 :{DNS_PORT} -management :{DNS_MANAGEMENT_PORT} \\
    -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 "" -defaultIPv6 ""
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class CaEndpoints:
    """Where the sandbox's CA answers, and the certificate its HTTPS endpoints present."""

    address: str
    certificate: Path  # on the controller: pebble's listener certificate (self-signed)

    @classmethod
    def of(cls, spec: SandboxSpec) -> CaEndpoints | None:
        host = ca_host(spec)
        if host is None:
            return None
        return cls(str(spec.address(host)), spec.state_dir / "ca" / "listener.crt")

    @property
    def directory(self) -> str:
        return f"https://{self.address}:{DIRECTORY_PORT}/dir"

    @property
    def roots(self) -> str:
        return f"https://{self.address}:{ROOTS_PORT}/roots/0"

    @property
    def dns_management(self) -> str:
        return f"http://{self.address}:{DNS_MANAGEMENT_PORT}"

    def manifest(self) -> dict[str, str]:
        return {"directory": self.directory, "certificate": str(self.certificate),
                "roots": self.roots, "dns_management": self.dns_management}


def ca_host(spec: SandboxSpec) -> HostSpec | None:
    return next((host for host in spec.hosts if host.group == GROUP), None)


def write_config(spec: SandboxSpec, root: Path) -> None:
    """Put pebble's listener pair (made once on the controller), its config and both units
    on the CA host's disk; `provision` installs the package they run and enables them."""
    endpoints = CaEndpoints.of(spec)
    assert endpoints is not None
    key = endpoints.certificate.with_suffix(".key")
    if not endpoints.certificate.exists():
        endpoints.certificate.parent.mkdir(mode=0o700, exist_ok=True)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "3650", "-subj", "/CN=wsgistack sandbox ACME CA",
             "-addext", f"subjectAltName=IP:{endpoints.address}", "-keyout", str(key),
             "-out", str(endpoints.certificate)])
    config = root / CONFIG_DIR
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    (config / "listener.crt").write_bytes(endpoints.certificate.read_bytes())
    (config / "listener.key").write_bytes(key.read_bytes())
    (config / "listener.key").chmod(0o600)
    (config / "pebble.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"0.0.0.0:{DIRECTORY_PORT}",
        "managementListenAddress": f"0.0.0.0:{ROOTS_PORT}",
        "certificate": f"/{CONFIG_DIR}/listener.crt", "privateKey": f"/{CONFIG_DIR}/listener.key",
        # Challenges are checked where a real CA checks them: ports 80 and 443.
        "httpPort": 80, "tlsPort": 443,
        "ocspResponderURL": "", "externalAccountBindingRequired": False}}, indent=2))
    units = root / "etc/systemd/system"
    for name, text in (("pebble.service", PEBBLE_UNIT),
                       ("pebble-challtestsrv.service", DNS_UNIT)):
        (units / name).write_text(text)


def provision(spec: SandboxSpec, ssh: list[str]) -> None:
    """Install pebble on the booted CA host (once) and wait for its directory."""
    host = ca_host(spec)
    endpoints = CaEndpoints.of(spec)
    assert host is not None and endpoints is not None
    script = ("command -v pebble >/dev/null || { apt-get -qq update &&"
              " DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends"
              " pebble >/dev/null; };"
              " systemctl enable -q --now pebble-challtestsrv pebble")
    result = subprocess.run([*ssh, host.name, spec.as_root(script)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"host {host.name}: pebble did not install or start:"
                           f" {(result.stderr or result.stdout).strip()[-500:]}")
    wait_answering(endpoints)


def tls_context(endpoints: CaEndpoints) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(endpoints.certificate))


def wait_answering(endpoints: CaEndpoints, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(endpoints.directory, timeout=5,
                                        context=tls_context(endpoints)):
                return
        except (urllib.error.URLError, OSError) as error:
            if time.monotonic() > deadline:
                raise SandboxError(f"the sandbox CA's directory {endpoints.directory} does not"
                                   f" answer: {error}") from None
            time.sleep(0.3)


def point(spec: SandboxSpec, name: str, host: HostSpec) -> None:
    """Make the CA's DNS answer `name` with the host's address (replacing any answer)."""
    endpoints = CaEndpoints.of(spec)
    if endpoints is None:
        raise SandboxError(f"sandbox {spec.name!r} has no CA: make it with --hosts ...,ca=1")
    record = {"host": name.rstrip(".") + ".", "addresses": [str(spec.address(host))]}
    for path, body in (("clear-a", {"host": record["host"]}), ("add-a", record)):
        request = urllib.request.Request(f"{endpoints.dns_management}/{path}",
                                         data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except (urllib.error.URLError, OSError) as error:
            raise SandboxError(f"the sandbox CA's DNS did not take {name}: {error}") from None
