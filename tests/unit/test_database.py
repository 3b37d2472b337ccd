"""The database host's parts that are computed on the controller: SCRAM verifiers, the
apps' URLs, the server's pair, and the settings, pg_hba.conf and firewall it renders."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from tests.unit.test_settings import group_data
from wsgistack.components import database
from wsgistack.config.environment import Environment, Member
from wsgistack.config.secrets import check_secrets
from wsgistack.config.settings import Settings, load_settings

PRODUCTION = Environment("production", (Member("web1", "10.9.0.2"), Member("web2", "10.9.0.6")),
                         Member("db1", "10.9.0.10"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")


def test_the_scram_keys_are_rfc_7677s() -> None:
    """RFC 7677's example exchange (user "user", password "pencil"): a server holding the
    keys computed here proves itself with the RFC's server signature, and accepts the
    RFC's client proof."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    stored_key, server_key = database.scram_keys("pencil", salt, 4096)
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
            f"c=biws,r={nonce}").encode()
    signature = hmac.new(server_key, auth, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_a_verifier_is_stable_per_role_and_password() -> None:
    one = database.scram_verifier("a-password", "shop")
    assert one == database.scram_verifier("a-password", "shop"), "a converged host stays so"
    assert one != database.scram_verifier("a-password", "blog")
    assert one.startswith("SCRAM-SHA-256$4096:") and "a-password" not in one


def test_an_apps_url_names_its_own_role_and_database_over_pinned_tls(
        settings: Settings) -> None:
    app = settings.apps[0]
    url = urllib.parse.urlsplit(database.url(app, PRODUCTION, "p@ss/word"))
    assert (url.hostname, url.port, url.username, url.path) == (
        "10.9.0.10", 5432, "flasktodo", "/flasktodo")
    assert urllib.parse.unquote(url.password) == "p@ss/word"
    assert dict(urllib.parse.parse_qsl(url.query)) == {
        "sslmode": "verify-full", "sslrootcert": "/etc/ssl/wsgistack/database.crt"}
    ipv6 = Environment("production", (), Member("db1", "fd00::5"))
    assert "@[fd00::5]:5432/" in database.url(app, ipv6, "x")


def test_only_an_app_with_database_env_in_an_environment_with_a_database_uses_it(
        settings: Settings) -> None:
    app = settings.apps[0]
    assert app.database_env == "DATABASE_URL"
    assert database.uses_database(app, PRODUCTION)
    assert not database.uses_database(app, Environment("staging", (Member("s1", "10.9.0.14"),)))


def test_the_server_pair_names_the_database_host_and_follows_it(settings: Settings) -> None:
    pair = database.ServerPair.of(settings)
    pair.make(Member("db1", "10.9.0.10"))
    assert "IP Address:10.9.0.10" in pair.names()
    assert oct(pair.key.stat().st_mode & 0o777) == "0o600"
    first = pair.certificate.read_bytes()
    pair.make(Member("db1", "10.9.0.10"))
    assert pair.certificate.read_bytes() == first, "made once"
    pair.make(Member("db1", "10.9.0.22"))
    assert "IP Address:10.9.0.22" in pair.names(), "made again for a moved host"
    pair.make(Member("db1", "db1.internal"))
    assert "DNS:db1.internal" in pair.names(), "a name, where the inventory has one"
    checked = subprocess.run(["openssl", "verify", "-CAfile", str(pair.certificate),
                              str(pair.certificate)], capture_output=True, text=True)
    assert checked.returncode == 0, "self-signed: the certificate is its own anchor"


def rendered(settings: Settings, memory: int = 4096) -> dict[str, str]:
    view = database.view_of(settings, PRODUCTION, {"flasktodo": "x" * 40})
    files = [*database.candidates(view, "15", memory)[:2],
             database.firewall(view.environment).rules()]
    return {Path(file.path).name: file.content.decode() for file in files}


def test_pg_hba_lets_in_each_web_host_over_tls_only(settings: Settings) -> None:
    hba = rendered(settings)["pg_hba.conf.next"]
    rules = [line.split() for line in hba.splitlines() if line and not line.startswith("#")]
    assert ["hostssl", "flasktodo", "flasktodo", "10.9.0.2/32", "scram-sha-256", "#",
            "web1"] in rules
    assert ["hostssl", "flasktodo", "flasktodo", "10.9.0.6/32", "scram-sha-256", "#",
            "web2"] in rules
    assert not any(rule[0] == "host" and rule[-1] != "reject" for rule in rules)
    assert rules[-2:] == [["host", "all", "all", "0.0.0.0/0", "reject"],
                          ["host", "all", "all", "::/0", "reject"]]


def test_the_firewall_opens_the_port_to_the_web_hosts_only(settings: Settings) -> None:
    firewall = rendered(settings)["postgresql.nft"]
    assert 'tcp dport 5432 ip saddr 10.9.0.2/32 accept comment "web1"' in firewall
    assert 'tcp dport 5432 ip saddr 10.9.0.6/32 accept comment "web2"' in firewall
    assert firewall.rstrip().splitlines()[-3].strip() == "tcp dport 5432 reject with tcp reset"


@pytest.mark.parametrize(("memory", "shared", "cache"), [
    (4096, "1024MB", "3072MB"), (512, "128MB", "384MB"), (65536, "8192MB", "49152MB")])
def test_memory_settings_follow_the_hosts_memory(settings: Settings, memory: int, shared: str,
                                                 cache: str) -> None:
    conf = rendered(settings, memory)["postgresql.conf.next"]
    assert f"shared_buffers = {shared}\n" in conf
    assert f"effective_cache_size = {cache}\n" in conf
    assert "listen_addresses = 'localhost,10.9.0.10'\n" in conf


def test_production_never_makes_up_a_database_password(tmp_path: Path) -> None:
    """What wsgistack.config.preflight checks before connecting where production has a database
    host (preflight itself imports pyinfra's CLI, which patches the process with gevent:
    not in these tests)."""
    data = {**group_data("production"), "secrets_dir": str(tmp_path),
            "tls_certificate": "/etc/hostname", "tls_certificate_key": "/etc/hostname"}
    production = load_settings(data, "production")
    [problem] = check_secrets(production, production.apps[0], {}, names=(database.PASSWORD,))
    assert problem.startswith("group_data (production): apps[flasktodo]: no secret"
                              " DATABASE_PASSWORD: set PRODUCTION_FLASKTODO_DATABASE_PASSWORD")
    [weak] = check_secrets(production, production.apps[0], {
        "PRODUCTION_FLASKTODO_DATABASE_PASSWORD": "pässwörd-" + "x" * 40},
        names=(database.PASSWORD,))
    assert "has characters other than printable ASCII" in weak
