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

# Asks a URL until it answers {"status": "ok"} or the deadline passes; prints the last reply.
PROBE = """
import json, sys, time, urllib.request
url, host_header, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
while True:
    try:
        request = urllib.request.Request(url, headers={"Host": host_header})
        with urllib.request.urlopen(request, timeout=5) as response:
            reply = json.load(response)
        if reply.get("status") == "ok":
            print(json.dumps(reply)); sys.exit(0)
        error = f"status {reply.get('status')!r}"
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


def public_url(settings: Settings, app: AppSettings) -> str:
    address = host.data.get("ssh_hostname") or host.name
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{address}{port}{app.prefix}/"


@operation(is_idempotent=True)
def healthz(check: str, url: str, host_header: str, settings: Settings, app: AppSettings,
            timeout: float = 30):
    """Fail this host unless `url` (on the host) answers healthy with the app's version."""
    if not state.is_executing:
        return
    arguments = " ".join(shlex.quote(str(arg)) for arg in (url, host_header, timeout))
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


def check_app(settings: Settings, app: AppSettings) -> None:
    """Check the app through nginx (as a browser would) and directly on gunicorn."""
    path = f"{app.prefix}/healthz"
    healthz(name=f"Check {app.name} through nginx", check="through nginx",
            url=f"http://127.0.0.1:{settings.http_port}{path}", host_header=settings.url_host,
            settings=settings, app=app)
    healthz(name=f"Check {app.name} directly on gunicorn", check="on gunicorn",
            url=f"http://127.0.0.1:{app.port}{path}", host_header=settings.url_host,
            settings=settings, app=app)


def print_summary() -> None:
    if not RESULTS:
        return
    print("\n--> Deploy summary")
    for result in sorted(RESULTS, key=lambda r: (r.host, r.app, r.check)):
        if result.check != "through nginx":
            continue
        gunicorn = next((r for r in RESULTS if r.host == result.host and r.app == result.app
                         and r.check == "on gunicorn"), None)
        healthy = result.healthy and gunicorn is not None and gunicorn.healthy
        detail = "healthy" if healthy else "; ".join(
            f"{r.check}: {r.detail}" for r in (result, gunicorn) if r and not r.healthy)
        print(f"    {result.host}: {result.url}  {result.app} {result.version}  {detail}")


atexit.register(print_summary)
