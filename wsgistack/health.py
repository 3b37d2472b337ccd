"""The health check: an operation that changes nothing and fails the host when unhealthy.

It runs only when the deploy executes (a --dry run plans no check), asks /healthz from the
host itself, through nginx with the site's real Host header and directly on gunicorn, and
retries while a restarted gunicorn boots. The results are printed as a summary when
pyinfra exits.
"""

from __future__ import annotations

import atexit
import json
import shlex
from dataclasses import dataclass

from pyinfra import host, state
from pyinfra.api import StringCommand, operation

from wsgistack.settings import AppSettings, Settings

# Asks a URL on this host until it answers {"status": "ok"} or the deadline passes; prints
# the last reply. HTTPS goes to the site's own name (SNI and Host), unverified: it is this
# host's own nginx on loopback, whatever certificate it has.
PROBE = """
import http.client, json, ssl, sys, time
url, name, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
scheme, rest = url.split("://", 1)
address, path = rest.split("/", 1)
context = ssl.create_default_context()
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

class Tls(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        self.sock = context.wrap_socket(self.sock, server_hostname=name)

while True:
    try:
        connection = (Tls if scheme == "https" else http.client.HTTPConnection)(
            address, timeout=5)
        connection.request("GET", "/" + path, headers={"Host": name})
        response = connection.getresponse()
        body = response.read()
        try:
            reply = json.loads(body)
        except ValueError:
            reply = {"status": "error", "error": body[:80].decode(errors="replace")}
        if response.status == 200 and reply.get("status") == "ok":
            print(json.dumps(reply)); sys.exit(0)
        error = f"HTTP {response.status}: {reply.get('error') or reply.get('status')}"
    except Exception as exc:
        error = str(exc)
    if time.monotonic() > deadline:
        print(json.dumps({"status": "error", "error": error})); sys.exit(1)
    time.sleep(0.5)
"""


@dataclass
class CheckResult:
    host: str
    app: str
    check: str
    url: str
    version: str
    healthy: bool
    detail: str


RESULTS: list[CheckResult] = []
TARGETS: dict[str, bool] = {}  # host name -> connected
EXECUTED: list[bool] = []  # non-empty once checks ran for real (never in a dry run)


def public_url(settings: Settings, app: AppSettings) -> str:
    """The app's URL (nginx answers its server names only) and the host's address."""
    address = host.data.get("ssh_hostname") or host.name
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return f"https://{settings.url_host}{port}{app.prefix}/ ({address})"


@operation(is_idempotent=True)
def healthz(check: str, url: str, host_header: str, settings: Settings, app: AppSettings,
            active: bool):
    """Fail this host unless `url` (on the host) answers healthy with the app's version.
    Checks only when `active` (the host's rollout batch) and only in a real run."""
    if state.is_executing:
        EXECUTED.append(True)
    if not (active and state.is_executing):
        return
    arguments = " ".join(shlex.quote(str(arg))
                         for arg in (url, host_header, settings.health_timeout))
    command = f"python3 -c {shlex.quote(PROBE)} {arguments}"
    _status, output = host.run_shell_command(StringCommand(command))
    lines = output.stdout_lines
    reply = json.loads(lines[-1]) if lines else {"status": "error", "error": "no reply"}
    version = reply.get("version", "?")
    healthy = reply.get("status") == "ok" and version == app.version
    detail = "healthy" if healthy else (
        reply.get("error") or f"version {version}, expected {app.version}")
    RESULTS.append(CheckResult(host.name, app.name, check, public_url(settings, app),
                               version, healthy, detail))
    if not healthy:
        message = f"health check failed: {app.name} {check} ({url}): {detail}"
        yield StringCommand(f"echo {shlex.quote(message)} >&2; exit 1")


def check_app(settings: Settings, app: AppSettings, active: bool) -> None:
    """Check the app through nginx (as a browser would) and directly on gunicorn."""
    note_targets()
    path = f"{app.prefix}/healthz"
    healthz(name=f"Check {app.name} through nginx", check="through nginx",
            url=f"https://127.0.0.1:{settings.https_port}{path}", host_header=settings.url_host,
            settings=settings, app=app, active=active)
    healthz(name=f"Check {app.name} directly on gunicorn", check="on gunicorn",
            url=f"http://127.0.0.1:{app.port}{path}", host_header=settings.url_host,
            settings=settings, app=app, active=active)


def note_targets() -> None:
    """Remember the hosts this run aims at, and which of them pyinfra could not reach."""
    for each in state.inventory:
        if state.is_host_in_limit(each):
            TARGETS[each.name] = each in state.activated_hosts


def summary_line(name: str) -> str:
    checks = [r for r in RESULTS if r.host == name]
    if not checks:
        reason = "failed before its health checks (see above)" if TARGETS[name] else \
            "UNREACHABLE: not deployed"
        return f"    {name}: {reason}"
    lines = []
    for app in sorted({r.app for r in checks}):
        ran = [r for r in checks if r.app == app]
        detail = "healthy" if all(r.healthy for r in ran) and len(ran) == 2 else "; ".join(
            f"{r.check}: {r.detail}" for r in ran if not r.healthy)
        lines.append(f"    {name}: {ran[0].url}  {app} {ran[0].version}  {detail}")
    return "\n".join(lines)


def print_summary() -> None:
    if not EXECUTED:
        return
    print("\n--> Deploy summary")
    for name in sorted(TARGETS):
        print(summary_line(name))


atexit.register(print_summary)
