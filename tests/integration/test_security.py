"""The security posture of the deployed stack, checked on the hosts and from the outside.

Uses the session's stack deployment (conftest): 1 staging host with its self-signed
certificate, 2 production hosts with the operator's certificate (the tests' own).
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import ssl
import subprocess
import time
from http.client import RemoteDisconnected
from pathlib import Path

import pytest

from tests.integration import parents
from tests.integration.helpers import (
    PRODUCTION_SECRET_KEY,
    Browser,
    Deployment,
    app_release,
    apps_data,
    connect,
    deploy,
    http,
    provide_production_tls,
    snapshot,
)
from tests.unit.test_settings import group_data
from wsgistack.config.schema import GROUP_KEY

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
     "group_data (production): apps[flasktodo]: no secret SECRET_KEY: set"
     " PRODUCTION_FLASKTODO_SECRET_KEY"),
    ("production", [], {"PRODUCTION_FLASKTODO_SECRET_KEY": "x"},
     "group_data (production): apps[flasktodo]: the secret SECRET_KEY in"
     " $PRODUCTION_FLASKTODO_SECRET_KEY is 1 characters long, fewer than 32"),
    ("staging", ["health_check_from=[\"nowhere\"]"], {}, "health_check_from: ['nowhere']"),
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
        assert ".py line " not in run.output, "the operator's lines, not the code's place"
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


def test_root_never_acts_below_a_dir_another_user_can_write(deployment: Deployment,
                                                           host: dict) -> None:
    """Every path the deploy manages or golive touches on a web host: no dir above it is
    writable by a user other than root, but for the paths golive reaches only as the user
    whose dir they are in (the app's backups, its database, gunicorn's pid file)."""
    settings = parents.layout_settings()
    found = deployment.sandbox.ssh(host, f"python3 -c {shlex.quote(parents.UNSAFE_PARENTS)}"
                                   f" <<'EOF'\n{chr(10).join(parents.web_host_paths(settings))}"
                                   "\nEOF").stdout
    assert found, "the app's own paths are found below its dirs (the check checks)"
    assert parents.unsafe(found, parents.handled_by_their_owner(settings)) == []


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
                          ("Referrer-Policy", "strict-origin-when-cross-origin"),
                          ("Content-Security-Policy",
                           GROUP_KEY["content_security_policy"].default)):
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
    controller = deployment.sandbox.controller_address(host)
    for spoofed in ({"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "gopher",
                     "X-Real-IP": "6.6.6.6"},
                    {"X-Forwarded-Ssl": "off", "X-Forwarded-Protocol": "http",
                     "Forwarded": "for=6.6.6.6;proto=http", "X-Forwarded-Host": "evil.example"}):
        status, _headers, body = http(host["address"], "/flasktodo/healthz", name,
                                      headers=spoofed)
        assert status == 200, (spoofed, body)
        reply = json.loads(body)
        assert reply["client"] == controller and reply["scheme"] == "https", spoofed
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


def test_diff_and_debug_output_never_show_a_secret(deployment: Deployment,
                                                   tmp_path: Path) -> None:
    """A changed secret key and a new TLS pair, previewed with everything pyinfra can print:
    the files that hold them are said to change, their content never appears."""
    new_pair = tmp_path / "secrets"
    provide_production_tls(new_pair)
    pair = new_pair / "production" / "tls"
    new_key = "a-new-production-secret-key-0123456789-" + "z" * 20
    run = deploy(deployment.sandbox, "--limit", "production", "--dry", "--diff", "-vvv",
                 "--debug", "--data", f"tls_certificate={pair / 'wsgistack.crt'}",
                 "--data", f"tls_certificate_key={pair / 'wsgistack.key'}",
                 secrets_dir=deployment.secrets_dir,
                 extra_env={"PRODUCTION_FLASKTODO_SECRET_KEY": new_key})
    assert run.returncode == 0, run.output[-3000:]
    assert "/etc/flasktodo/config.py.next (it holds a secret" in run.output
    assert "wsgistack.key.next (it holds a secret" in run.output
    assert "wsgistack.crt.next" in run.output, "the certificate is no secret: its diff shows"
    old_key = (deployment.secrets_dir / "production/tls/wsgistack.key").read_text()
    secrets = [new_key, PRODUCTION_SECRET_KEY, *pem_lines(old_key),
               *pem_lines((pair / "wsgistack.key").read_text())]
    leaked = [secret for secret in secrets if secret in run.output]
    assert not leaked, f"{len(leaked)} secret strings in the output"


def pem_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM key: any one of them in the output is a leak."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


@pytest.mark.parametrize("path", ["//flasktodo/", "/%66lasktodo/", "//flasktodo/healthz",
                                  "/./flasktodo/"])
def test_a_path_the_app_does_not_own_is_refused_by_nginx(deployment: Deployment, host: dict,
                                                         path: str) -> None:
    status, _headers, body = http(host["address"], path, SERVER_NAMES[host["group"]])
    assert status == 400, (path, status, body[:200])
    assert "SCRIPT_NAME" not in body and "Traceback" not in body


def test_nothing_is_served_at_the_top(deployment: Deployment, host: dict) -> None:
    for path in ("/", "/index.html", "/index.nginx-debian.html"):
        status, _headers, body = http(host["address"], path, SERVER_NAMES[host["group"]])
        assert status == 404 and "Welcome to nginx" not in body, path


# Run on a host: the status of /flasktodo/healthz at the address in argv[1] (SNI and Host
# flasktodo.test, as a browser sends them).
ASK_HEALTHZ = """
import socket, ssl, sys
context = ssl._create_unverified_context()
with socket.create_connection((sys.argv[1], 443), timeout=10) as plain:
    with context.wrap_socket(plain, server_hostname="flasktodo.test") as tls:
        tls.sendall(b"GET /flasktodo/healthz HTTP/1.0\\r\\nHost: flasktodo.test\\r\\n\\r\\n")
        print(tls.recv(100).split()[1].decode())
"""


def test_healthz_answers_the_host_and_those_named_only(deployment: Deployment) -> None:
    """The controller is named in health_check_from (the tests' deploys); another host of
    the sandbox is not, and gets 403; the host itself always gets its answer."""
    sandbox = deployment.sandbox
    staging, production = sandbox.hosts("staging")[0], sandbox.hosts("production")[0]
    ask = f"python3 -c {shlex.quote(ASK_HEALTHZ)} "
    assert sandbox.ssh(staging, ask + production["address"]).stdout.strip() == "403"
    assert sandbox.ssh(production, ask + "127.0.0.1").stdout.strip() == "200"
    assert http(production["address"], "/flasktodo/healthz", "flasktodo.test")[0] == 200


def test_a_foreign_page_cannot_make_the_browser_change_anything(deployment: Deployment,
                                                               host: dict) -> None:
    """A browser on another site's page posts here with the user's cookies and that site's
    Origin: refused. The site's own page, with its token and cookie, works."""
    name = SERVER_NAMES[host["group"]]
    browser = Browser(host["address"], name)
    title = f"csrf probe {time.time_ns()}"
    status, _headers, body = browser.post_form("/flasktodo/", "/flasktodo/items",
                                               {"title": title}, origin="https://evil.example")
    assert status == 403 and "cross-site request refused" in body
    status, _headers, _body = browser.request(
        "POST", "/flasktodo/api/items", json.dumps({"title": title}).encode(),
        {"Content-Type": "application/json", "Origin": "https://evil.example"})
    assert status == 403
    assert title not in browser.request("GET", "/flasktodo/")[2]
    assert browser.post_form("/flasktodo/", "/flasktodo/items", {"title": title})[0] == 302
    assert title in browser.request("GET", "/flasktodo/")[2]
    cookie = next(iter(browser.jar))
    assert (cookie.name, cookie.path, cookie.secure) == ("flasktodo_session", "/flasktodo",
                                                         True)


def test_the_apps_logs_are_closed_to_others(deployment: Deployment, host: dict) -> None:
    sandbox = deployment.sandbox
    logs = sandbox.ssh(host, "ls /var/log/nginx/*.log /var/log/supervisor/*.log").stdout.split()
    assert "/var/log/nginx/flasktodo.access.log" in logs
    assert "/var/log/supervisor/flasktodo.err.log" in logs
    for log in logs:
        read = sandbox.ssh(host, f"runuser -u nobody -- head -c1 {log}", check=False)
        assert read.returncode != 0 and "Permission denied" in read.stderr, log


def test_a_build_that_fails_names_the_app_and_touches_nothing(deployment: Deployment,
                                                              tmp_path: Path) -> None:
    source = app_release(tmp_path, "9.9.9")
    project = source / "pyproject.toml"
    project.write_text(project.read_text().replace('"setuptools.build_meta"',
                                                   '"no_such_backend"'))
    before = snapshot(deployment.sandbox)
    run = deployment.run("--limit", "staging", "--data", apps_data(source))
    assert run.returncode != 0
    assert (f"apps[flasktodo]: building {source} for CPython 3.11 ({platform.machine()},"
            " glibc 2.36) failed; nothing was deployed") in run.output, run.output[-3000:]
    assert "no_such_backend" in run.output and "Traceback" not in run.output
    assert "wheelhouse.py line" not in run.output, "the operator's line, not the code's place"
    assert snapshot(deployment.sandbox) == before


def test_a_static_dir_the_release_lacks_is_refused_before_any_host_changes(
        deployment: Deployment) -> None:
    entry = {**APP, "static": {"/static/": "flasktodo/static", "/media/": "flasktodo/media"}}
    before = snapshot(deployment.sandbox)
    run = deployment.run("--limit", "staging", "--data", "apps=" + json.dumps([entry]))
    assert run.returncode != 0
    assert ("apps[flasktodo].static: /media/ -> flasktodo/media: no such dir in the release's"
            " wheels; nothing was deployed") in run.output, run.output[-3000:]
    assert "Traceback" not in run.output and "wheelhouse.py line" not in run.output
    assert snapshot(deployment.sandbox) == before
