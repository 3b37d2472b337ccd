"""The security posture of the deployed stack, checked on the hosts and from the outside.

Uses the session's stack deployment (conftest): 1 staging host with its self-signed
certificate, 2 production hosts with the operator's certificate (the tests' own).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from http.client import RemoteDisconnected
from pathlib import Path

import pytest

from tests.integration.helpers import Deployment, connect, deploy, http, snapshot
from tests.unit.test_settings import group_data

SERVER_NAMES = {"staging": "staging.flasktodo.test", "production": "flasktodo.test"}
APP = group_data("staging")["apps"][0]


def app_entries(*changes: dict) -> str:
    return "apps=" + json.dumps([{**APP, **change} for change in changes])


# (--limit, --data overrides or None, extra environment, the line expected)
BAD_SETTINGS = [
    ("staging", ["http_port=0"], {}, "group_data (staging): http_port: 0 is invalid"),
    ("staging", ["https_port=80"], {}, "group_data (staging): https_port: 80 is also http_port"),
    ("staging", ['server_names=["bad name"]'], {}, "group_data (staging): server_names:"),
    ("staging", ["site_name=Bad/Site"], {}, "group_data (staging): site_name:"),
    ("staging", ["gunicorn_workers=0"], {}, "group_data (staging): gunicorn_workers: 0"),
    ("staging", ["gunicorn_timeout=-1"], {}, "group_data (staging): gunicorn_timeout: -1"),
    ("staging", ["client_max_body_size=huge"], {}, "client_max_body_size: 'huge' is invalid"),
    ("staging", ["log_max_bytes=ten"], {}, "group_data (staging): log_max_bytes: 'ten'"),
    ("staging", ["rollout_batch_size=0"], {}, "rollout_batch_size: 0 is invalid"),
    ("staging", ["hsts=maybe"], {}, "group_data (staging): hsts: 'maybe' is invalid"),
    ("staging", [app_entries({"prefix": "/todo/"})], {}, "apps[flasktodo].prefix:"),
    ("staging", [app_entries({"port": 80})], {}, "apps[flasktodo].port: 80 is invalid"),
    ("staging", [app_entries({}, {"name": "two"})], {},
     "apps: two and flasktodo share port 8004"),
    ("staging", [app_entries({}, {"name": "two", "port": 8005})], {},
     "apps: two and flasktodo share prefix '/flasktodo'"),
    ("staging", [app_entries({"name": "Bad!"})], {}, "apps[0].name: 'Bad!' is invalid"),
    ("staging", [app_entries({"colour": "red"})], {}, "apps[0].colour: is not a known app key"),
    ("staging", ["secrets_dir="], {}, "group_data (staging): secrets_dir:"),
    ("production", ["tls_certificate=/nonexistent.crt", "tls_certificate_key=/nonexistent.key"],
     {}, "group_data (production): tls_certificate: /nonexistent.crt does not exist"),
    ("production", [], {"PRODUCTION_FLASKTODO_SECRET_KEY": ""},
     "group_data (production): apps[flasktodo]: no secret key: set"
     " PRODUCTION_FLASKTODO_SECRET_KEY"),
]


def test_bad_settings_stop_before_connecting_and_touch_nothing(deployment: Deployment) -> None:
    sandbox = deployment.sandbox
    before = snapshot(sandbox)
    for limit, data, env, message in BAD_SETTINGS:
        arguments = [argument for each in data for argument in ("--data", each)]
        run = deploy(sandbox, "--limit", limit, "-y", *arguments,
                     secrets_dir=deployment.secrets_dir, extra_env=env)
        assert run.returncode != 0, (data, run.output[-2000:])
        assert message in run.output, (data, run.output[-2000:])
        assert "Connecting to hosts" not in run.output and "Traceback" not in run.output
    assert snapshot(sandbox) == before


def test_a_host_in_both_groups_is_refused_before_connecting(deployment: Deployment,
                                                            tmp_path: Path) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text('[staging]\nhosts = ["web1.example.com"]\n'
                       '[production]\nhosts = ["web1.example.com"]\n')
    run = deploy(deployment.sandbox, "-y", secrets_dir=deployment.secrets_dir,
                 extra_env={"WSGISTACK_TARGETS": str(targets)})
    assert run.returncode != 0
    assert "inventory: web1.example.com is in both staging and production" in run.output
    assert "Connecting to hosts" not in run.output


@pytest.fixture(params=["staging", "production"])
def host(request: pytest.FixtureRequest, deployment: Deployment) -> dict:
    return deployment.sandbox.hosts(request.param)[0]


def test_least_privilege(deployment: Deployment, host: dict) -> None:
    sandbox = deployment.sandbox
    check = sandbox.testinfra(host)
    user = check.user("flasktodo")
    assert user.shell == "/usr/sbin/nologin" and user.name != "www-data"
    assert user.group == "flasktodo" and "www-data" not in user.groups
    workers = sandbox.ssh(host, "ps -eo user:20=,args= | grep '[g]unicorn --config'").stdout
    assert {line.split()[0] for line in workers.splitlines()} == {"flasktodo"}
    nginx = sandbox.ssh(host, "ps -eo user:20=,args= | grep '[n]ginx: worker'").stdout
    assert {line.split()[0] for line in nginx.splitlines()} == {"www-data"}
    code = sandbox.ssh(host, "find /opt/flasktodo /usr/local/lib/wsgistack"
                             " \\( ! -user root -o -perm /022 \\) ! -type l").stdout
    assert code == "", "code is root's and read-only to others"

    def app_can_write(path: str) -> bool:
        probe = f"runuser -u flasktodo -- sh -c 'touch {path}/.probe && rm {path}/.probe'"
        return sandbox.ssh(host, probe, check=False).returncode == 0

    assert app_can_write("/var/lib/flasktodo")
    for path in ("/opt/flasktodo", "/opt/flasktodo/current/venv/lib", "/etc/flasktodo",
                 "/etc/supervisor/conf.d", "/var/log/supervisor", "/tmp/../etc"):
        assert not app_can_write(path), path


def test_secrets_and_keys_are_not_readable_by_others(deployment: Deployment,
                                                     host: dict) -> None:
    check = deployment.sandbox.testinfra(host)
    expected = {
        "/etc/flasktodo": ("root", "flasktodo", 0o750),
        "/etc/flasktodo/config.py": ("root", "flasktodo", 0o640),
        "/etc/flasktodo/config.py.next": ("root", "flasktodo", 0o640),
        "/etc/ssl/wsgistack/private": ("root", "root", 0o700),
        "/etc/ssl/wsgistack/private/wsgistack.key": ("root", "root", 0o600),
        "/etc/ssl/wsgistack/wsgistack.crt": ("root", "root", 0o644),
    }
    for path, (user, group, mode) in expected.items():
        file = check.file(path)
        assert (file.user, file.group, file.mode) == (user, group, mode), path
    assert not check.file("/etc/flasktodo/config.py.prev").exists


def test_supervisor_control_is_root_only(deployment: Deployment, host: dict) -> None:
    check = deployment.sandbox.testinfra(host)
    socket = check.file("/run/supervisor.sock")
    assert socket.is_socket and socket.user == "root" and socket.mode == 0o700
    config = deployment.sandbox.ssh(host, "cat /etc/supervisor/supervisord.conf"
                                          " /etc/supervisor/conf.d/*.conf").stdout
    assert not re.search(r"^\s*\[inet_http_server\]", config, re.MULTILINE)
    listening = deployment.sandbox.ssh(host, "ss -Hltnp").stdout
    assert "supervisord" not in listening


def handshake(address: str, name: str, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "s_client", "-connect", f"{address}:443",
                           "-servername", name, f"-{version}"], input="", capture_output=True,
                          text=True, timeout=20, check=False)


def test_tls_versions(deployment: Deployment, host: dict) -> None:
    name = SERVER_NAMES[host["group"]]
    assert handshake(host["address"], name, "tls1_1").returncode != 0
    for version, protocol in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
        accepted = handshake(host["address"], name, version)
        assert accepted.returncode == 0 and protocol in accepted.stdout, accepted.stderr


def test_http_redirects_to_https(deployment: Deployment, host: dict) -> None:
    name = SERVER_NAMES[host["group"]]
    status, headers, _ = http(host["address"], "/flasktodo/items?x=1", name, scheme="http")
    assert status == 301 and headers["Location"] == f"https://{name}/flasktodo/items?x=1"


def test_hsts_in_production_only(deployment: Deployment, host: dict) -> None:
    _status, headers, _ = http(host["address"], "/flasktodo/", SERVER_NAMES[host["group"]])
    hsts = headers.get("Strict-Transport-Security")
    assert (hsts == "max-age=63072000") if host["group"] == "production" else hsts is None
    for header, value in (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                          ("Referrer-Policy", "strict-origin-when-cross-origin")):
        assert headers[header] == value


def test_no_nginx_version_anywhere(deployment: Deployment, host: dict) -> None:
    name = SERVER_NAMES[host["group"]]
    for scheme, path in (("https", "/nothing-here"), ("https", "/flasktodo/static/none.css"),
                         ("http", "/flasktodo/")):
        status, headers, body = http(host["address"], path, name, scheme=scheme)
        assert status in (301, 404) and headers["Server"] == "nginx", (status, headers)
        assert not re.search(r"nginx/\d", body), body


def test_an_unknown_host_gets_nothing(deployment: Deployment, host: dict) -> None:
    with pytest.raises((RemoteDisconnected, ConnectionResetError)):
        http(host["address"], "/flasktodo/", "unknown.example", scheme="http")
    with pytest.raises(ssl.SSLError):
        http(host["address"], "/flasktodo/", "unknown.example")


def test_spoofed_forwarding_headers_are_not_believed(deployment: Deployment,
                                                     host: dict) -> None:
    name = SERVER_NAMES[host["group"]]
    controller = host["address"].rsplit(".", 1)[0] + "." + str(
        int(host["address"].rsplit(".", 1)[1]) - 1)
    _status, _headers, body = http(host["address"], "/flasktodo/healthz", name, headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "gopher", "X-Real-IP": "6.6.6.6"})
    reply = json.loads(body)
    assert reply["client"] == controller and reply["scheme"] == "https"
    for header in ("SCRIPT_NAME", "Script-Name"):
        _status, _headers, page = http(host["address"], "/flasktodo/", name,
                                       headers={header: "/evil"})
        links = re.findall(r'(?:href|action)="([^"]+)"', page)
        assert links and all(link.startswith("/flasktodo/") for link in links), links


def fingerprint(address: str, name: str) -> str:
    connection = connect(address, name)
    connection.connect()
    try:
        return ssl.DER_cert_to_PEM_cert(connection.sock.getpeercert(binary_form=True))
    finally:
        connection.close()


def test_the_self_signed_certificate_is_kept_across_runs(deployment: Deployment) -> None:
    host = deployment.sandbox.hosts("staging")[0]
    name = SERVER_NAMES["staging"]
    before = fingerprint(host["address"], name)
    run = deployment.run("--limit", "staging")
    assert run.returncode == 0 and run.changed_ops() == [], run.output[-3000:]
    assert fingerprint(host["address"], name) == before
    kept = deployment.secrets_dir / "staging" / "tls"
    assert (kept / "wsgistack.key").stat().st_mode & 0o777 == 0o600
    assert ssl.PEM_cert_to_DER_cert(before) == ssl.PEM_cert_to_DER_cert(
        (kept / "wsgistack.crt").read_text())
