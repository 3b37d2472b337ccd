"""Certificates from an ACME CA (`tls_mode = "acme"`), proven against the sandbox's own CA:
Debian's pebble on a host of the sandbox (`ca=1`), whose DNS sends the staging name to
staging1 and production's names to production1 only. production2's challenges therefore
reach production1, which passes them on: the multi-host design at work. Nothing here
reaches the internet.

A sandbox of its own; the tests run in order, each leaving the hosts converged.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.helpers import (
    Deployed,
    Run,
    Sandbox,
    connect,
    deploy,
    own_sandbox,
    sandbox_cli,
)
from tests.integration.load import Load

NAME, SUBNET = "iacme", "10.191.0.0/24"
ACME = ("--data", "tls_mode=acme", "--data", "acme_email=ops@flasktodo.test")
NAMES = {"staging": ["staging.flasktodo.test"],
         "production": ["flasktodo.test", "www.flasktodo.test"]}
CERTIFICATE = "/etc/ssl/wsgistack/wsgistack.crt"
KEY = "/etc/ssl/wsgistack/private/wsgistack.key"
# certbot as its timer runs it (the drop-in's environment), forced to renew now.
FORCED_RENEWAL = ("env $(systemctl show -p Environment --value certbot.service)"
                  " certbot renew --force-renewal --no-random-sleep-on-renew")


@dataclass
class Acme(Deployed):
    # trusts pebble's root only, as a client of this CA would (made by the fixture)
    trusted: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def deploy(self, *args: str, entry: str = "deploy.py") -> Run:
        return super().deploy(*ACME, *args, entry=entry)

    def web(self) -> list[dict]:
        return [h for h in self.sandbox.hosts() if h["group"] in NAMES]

    def served(self, host: dict, name: str) -> dict:
        """The certificate the host serves for `name`, verified against pebble's root."""
        connection = connect(host["address"], name, tls=self.trusted)
        connection.connect()
        try:
            return connection.sock.getpeercert()
        finally:
            connection.close()

    def refused_within(self, host: dict, name: str, seconds: float) -> bool:
        """Whether a client of the CA refuses what the host serves for `name` within
        `seconds` (nginx's reload takes effect as its old workers finish)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.served(host, name)
            except ssl.SSLCertVerificationError:
                return True
            time.sleep(0.2)
        return False

    def serial(self, host: dict) -> str:
        return self.ssh(host, f"openssl x509 -in {CERTIFICATE} -noout -serial").strip()


def names_in(certificate: dict) -> list[str]:
    return sorted(value for kind, value in certificate["subjectAltName"] if kind == "DNS")


def pebble_root(sandbox: Sandbox) -> ssl.SSLContext:
    """A TLS context that trusts pebble's root (made anew each time pebble starts)."""
    ca = sandbox.manifest["ca"]
    listener = ssl.create_default_context(cafile=ca["certificate"])
    with urllib.request.urlopen(ca["roots"], context=listener, timeout=10) as answer:
        return ssl.create_default_context(cadata=answer.read().decode())


@pytest.fixture(scope="module")
def acme(secrets_dir: Path) -> Iterator[Acme]:
    with own_sandbox(NAME, SUBNET, "staging=1,production=2,ca=1") as sandbox:
        for group, names in NAMES.items():
            for name in names:
                sandbox_cli(NAME, "dns", name, f"{group}1")
        first = deploy(sandbox, *ACME, "-y", secrets_dir=secrets_dir)
        yield Acme(sandbox, secrets_dir, first, pebble_root(sandbox))


def test_first_issuance_on_bare_hosts_verifies_for_every_name(acme: Acme) -> None:
    output = acme.first.succeeded().output
    assert "PRIVATE KEY" not in output and "BEGIN CERTIFICATE" not in output
    for host in acme.web():
        for name in NAMES[host["group"]]:
            assert names_in(acme.served(host, name)) == NAMES[host["group"]], host["name"]
        state = acme.sandbox.testinfra(host)
        key = state.file(KEY)
        assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
        assert state.file("/etc/letsencrypt/live").mode == 0o700
        assert state.file("/etc/letsencrypt/accounts").mode == 0o700
        timer = state.service("certbot.timer")
        assert timer.is_enabled and timer.is_running
    first, second = acme.sandbox.host("production1"), acme.sandbox.host("production2")
    # The CA asked production1 for production2's tokens; production1 passed them on.
    passed_on = acme.ssh(second, "grep ' /.well-known/acme-challenge/.* 200 '"
                                 " /var/log/nginx/wsgistack.access.log || true")
    assert any(line.startswith(first["address"] + " ") for line in passed_on.splitlines())


def test_a_second_run_changes_nothing_and_a_dry_run_agrees(acme: Acme) -> None:
    assert acme.deploy("-y").succeeded().changed_ops() == []
    assert acme.deploy("--dry").succeeded().planned_changes() == []


def test_a_forced_renewal_under_load_fails_no_request(acme: Acme) -> None:
    host = acme.sandbox.host("production2")
    before = acme.serial(host)
    with Load(host["address"], "/flasktodo/", "www.flasktodo.test", minimum=10,
              tls=acme.trusted) as load:
        renewal = acme.ssh(host, FORCED_RENEWAL + " 2>&1")
    assert "certbot's renewed certificate for wsgistack is live" in renewal, renewal
    assert load.result.requests > 50 and load.result.failures == 0, load.result
    assert acme.serial(host) != before, "nginx serves the renewed certificate"
    assert names_in(acme.served(host, "flasktodo.test")) == NAMES["production"]
    assert acme.deploy("-y").succeeded().changed_ops() == [], "a renewal is no drift"


def test_changed_server_names_get_a_new_certificate(acme: Acme) -> None:
    names = ["staging.flasktodo.test", "www.staging.flasktodo.test"]
    sandbox_cli(NAME, "dns", names[1], "staging1")
    changed = ("--limit", "staging", "--data", f"server_names={json.dumps(names)}")
    planned = acme.deploy(*changed, "--dry").succeeded().planned_changes()
    assert any("Obtain the wsgistack certificate" in row for row in planned), planned
    acme.deploy(*changed, "-y").succeeded()
    host = acme.sandbox.host("staging1")
    assert names_in(acme.served(host, names[1])) == names
    assert acme.deploy(*changed, "-y").succeeded().changed_ops() == []
    acme.deploy("--limit", "staging", "-y").succeeded()
    assert names_in(acme.served(host, names[0])) == names[:1], "and back again"


def test_a_name_that_does_not_resolve_is_one_line_and_the_old_certificate_serves(
        acme: Acme) -> None:
    host = acme.sandbox.host("staging1")
    before = acme.serial(host)
    run = acme.deploy("--limit", "staging", "--data",
                      'server_names=["staging.flasktodo.test","nowhere.flasktodo.test"]', "-y")
    assert run.returncode != 0
    reasons = [line for line in run.output.splitlines()
               if "no certificate for staging.flasktodo.test, nowhere.flasktodo.test" in line]
    assert len(reasons) == 1, run.output[-3000:]
    assert host["name"] in reasons[0]
    assert "nowhere.flasktodo.test: connection: " in reasons[0] and "resolve" in reasons[0]
    assert reasons[0].endswith("the current certificate keeps serving")
    assert "executed 0 commands" not in run.output, "certbot ran: the step failed"
    assert acme.serial(host) == before
    assert names_in(acme.served(host, "staging.flasktodo.test")) == NAMES["staging"]
    acme.deploy("--limit", "staging", "-y").succeeded()


def test_a_replaced_pair_is_noticed_and_put_right(acme: Acme) -> None:
    host = acme.sandbox.host("staging1")
    acme.ssh(host, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
                   f" -days 1 -subj /CN=stray -keyout {KEY} -out {CERTIFICATE} 2>/dev/null"
                   " && systemctl reload nginx")
    assert acme.refused_within(host, "staging.flasktodo.test", 15), "the stray pair serves"
    planned = acme.deploy("--limit", "staging", "--dry").succeeded().planned_changes()
    assert any("Obtain the wsgistack certificate" in row for row in planned), planned
    acme.deploy("--limit", "staging", "-y").succeeded()
    assert names_in(acme.served(host, "staging.flasktodo.test")) == NAMES["staging"]
    assert acme.deploy("--limit", "staging", "-y").succeeded().changed_ops() == []


def test_back_to_files_deletes_certbots_certificate_so_nothing_renews_it(acme: Acme) -> None:
    """Back to `tls_mode = "files"`: certbot's lineage goes with its deploy hook, or its
    timer would try to renew it twice a day through a port 80 that now redirects all."""
    host = acme.sandbox.host("staging1")
    files = ("--limit", "staging", "--data", "tls_mode=files", "-y")
    Deployed.deploy(acme, *files).succeeded()
    left = acme.ssh(host, "ls /etc/letsencrypt/renewal /etc/letsencrypt/live"
                          " /etc/letsencrypt/renewal-hooks/deploy")
    assert "wsgistack" not in left, left
    assert Deployed.deploy(acme, *files).succeeded().changed_ops() == []
    acme.deploy("--limit", "staging", "-y").succeeded()
    assert names_in(acme.served(host, "staging.flasktodo.test")) == NAMES["staging"]
