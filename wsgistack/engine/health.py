"""The health check: an operation that changes nothing and fails the host when unhealthy.

It runs only when the deploy executes (a --dry run plans no check), asks the app's health
path (its `health_path`, "/" unless it has one of its own) from the host itself, through
nginx with the site's real Host header and directly on gunicorn, and retries while a
restarted gunicorn boots. The results go into the run's summary (wsgistack.engine.summary).

Healthy, for any WSGI app: it answers, with a status below 500. An app that says more is
held to it: a JSON object with a "status" must say "ok", and one with a "version" must
report the version deployed.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterable

from pyinfra import host, state
from pyinfra.api import FactBase, StringCommand, operation

from wsgistack.config.settings import AppSettings, Settings
from wsgistack.engine.component import Component
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.programs import SUPERVISOR_QUERY
from wsgistack.engine.summary import CheckResult, Summary

# Asks each URL on this host until all answer healthy or the deadline passes; prints the
# last reply of each, one JSON line per URL, in order. Healthy: a status below 500, and, if
# the body is a JSON object, its "status" (if any) is "ok"; the reply keeps what the app
# said (its "version", if any). HTTPS goes to the site's own name (SNI and Host),
# unverified: it is this host's own nginx on loopback, whatever certificate it has. One
# process for all of an app's URLs (one round trip), plain HTTP/1.0 over a socket and no
# site import (python3 -I -S): about 30 ms of the host's CPU. With `--program QUERY NAME`
# first, it prints supervisor's state of the program before, as supervisor-query (QUERY,
# its code run here) reads it: one python process less in every host read.
PROBE = """
import json, socket, ssl, sys, time
arguments = sys.argv[1:]
if arguments[0] == "--program":
    query, program, arguments = arguments[1], arguments[2], arguments[3:]
    found = {"__name__": "supervisor_query"}
    try:
        with open(query) as source:
            exec(compile(source.read(), query, "exec"), found)
        info = found["process_info"](program)
    except Exception:
        info = {}
    print("program", info.get("statename", ""))
name, deadline, urls = arguments[0], time.monotonic() + float(arguments[1]), arguments[2:]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

def ask(url):
    scheme, rest = url.split("://", 1)
    address, path = rest.split("/", 1)
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as plain:
            # As browsers do: else the request waits for the ACK of TLS 1.3's Finished
            # (Nagle), which the server delays: 40 ms per check on loopback.
            plain.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = context.wrap_socket(plain, server_hostname=name) if scheme == "https" else plain
            sock.sendall(f"GET /{path} HTTP/1.0\\r\\nHost: {name}\\r\\n\\r\\n".encode())
            response = b"".join(iter(lambda: sock.recv(65536), b""))
        head, _, body = response.partition(b"\\r\\n\\r\\n")
        status = int(head.split(None, 2)[1])
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        said = reply if isinstance(reply, dict) else {}
        if status < 500 and said.get("status", "ok") == "ok":
            return {**said, "status": "ok", "http": status}
        reason = said.get("error") or said.get("status") or body[:80].decode(errors="replace")
        return {"status": "error", "error": f"HTTP {status}: {reason}"}
    except Exception as exc:
        return {"status": "error", "error": str(exc) or type(exc).__name__}

replies = dict.fromkeys(urls, {})
while True:
    for url, reply in replies.items():
        if reply.get("status") != "ok":
            replies[url] = ask(url)
    healthy = all(reply["status"] == "ok" for reply in replies.values())
    if healthy or time.monotonic() > deadline:
        break
    time.sleep(0.5)
for url in urls:
    print(json.dumps(replies[url]))
sys.exit(0 if healthy else 1)
"""


# Seconds after the host's state was read within which its health reading may stand.
READING_FRESH_FOR = 10.0


def public_url(settings: Settings, app: AppSettings) -> str:
    """The app's URL (nginx answers its server names only) and the host's address."""
    address = host.data.get("ssh_hostname") or host.name
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    return f"https://{settings.url_host}{port}{app.prefix}/ ({address})"


def checks(settings: Settings, app: AppSettings) -> tuple[tuple[str, str], ...]:
    """(check, url) of the app: through nginx (as a browser would), directly on gunicorn."""
    path = f"{app.prefix}{app.health_path}"
    return (("through nginx", f"https://127.0.0.1:{settings.https_port}{path}"),
            ("on gunicorn", f"http://127.0.0.1:{app.port}{path}"))


def probe_command(host_header: str, timeout: float, urls: Iterable[str], program: str = ""
                  ) -> str:
    asked = ("--program", SUPERVISOR_QUERY, program) if program else ()
    arguments = " ".join(shlex.quote(str(arg))
                         for arg in (*asked, host_header, timeout, *urls))
    return f"python3 -I -S -c {shlex.quote(PROBE)} {arguments}"


class AppReading(FactBase[dict]):
    """An app as the host read sees it, in one process: supervisor's state of its program
    (RUNNING, STARTING, FATAL, ...; empty if unknown) and one try at each health URL, no
    waiting (the replies in order)."""

    default = dict

    def command(self, program: str, host_header: str, urls: tuple[str, ...]) -> str:
        return f"{probe_command(host_header, 0, urls, program)} || true"

    def process(self, output: list[str]) -> dict:
        state = next((line.split()[1:] for line in output if line.startswith("program")), [])
        return {"program": state[0] if state else "", "replies": replies_in(output)}


def replies_in(output: list[str]) -> list[dict]:
    """The probe's replies: one JSON line per URL, in order."""
    return [json.loads(line) for line in output if line.startswith("{")]


def reading(settings: Settings, app: AppSettings) -> Read:
    """The app's reading, which its Program and its Health both take from the host read."""
    return Read.of(AppReading, program=app.name, host_header=settings.url_host,
                   urls=tuple(url for _check, url in checks(settings, app)))


def program_state(seen: HostState, settings: Settings, app: AppSettings) -> str:
    """supervisor's state of the app's program, as the host read found it."""
    return seen.value(reading(settings, app)).get("program", "")


def is_healthy(reply: dict, app: AppSettings) -> bool:
    """The probe found it healthy, and any version it reports is the one deployed."""
    return reply.get("status") == "ok" and reply.get("version", app.version) == app.version


def usable(replies: list[dict], read_at: float, app: AppSettings, count: int) -> bool:
    """A reading taken with the host's state stands for a host this run leaves untouched
    if it was healthy and execution started soon after (not after a wait at the prompt)."""
    return (len(replies) == count and all(is_healthy(reply, app) for reply in replies)
            and time.monotonic() - read_at <= READING_FRESH_FOR)


@operation(is_idempotent=True)
def healthz(checks: tuple[tuple[str, str], ...], host_header: str, settings: Settings,
            app: AppSettings, active: bool, known: tuple[list[dict], float] | None = None):
    """Fail this host unless every (check, url) on the host answers healthy with the app's
    version. Checks only when `active` (the host's rollout batch) and only in a real run.
    `known` is a usable reading (replies, when read) of a host this run leaves untouched;
    anything else is asked live, waiting up to health_timeout."""
    if not (active and state.is_executing):
        return
    if known is not None and usable(*known, app, len(checks)):
        replies = known[0]
    else:
        _status, output = host.run_shell_command(StringCommand(probe_command(
            host_header, settings.health_timeout, (url for _check, url in checks))))
        replies = replies_in(output.stdout_lines)
        if len(replies) != len(checks):
            replies = [{"status": "error", "error": "no reply"}] * len(checks)
    failures = []
    for (check, url), reply in zip(checks, replies, strict=True):
        version = reply.get("version", f"{app.version} (not reported)")
        healthy = is_healthy(reply, app)
        detail = "healthy" if healthy else (
            reply.get("error") or f"version {version}, expected {app.version}")
        Summary.of(state).add(CheckResult(host.name, app.name, check,
                                          public_url(settings, app), version, healthy, detail))
        if not healthy:
            failures.append(f"health check failed: {app.name} {check} ({url}): {detail}")
    if failures:
        yield StringCommand(f"echo {shlex.quote('; '.join(failures))} >&2; exit 1")


def check_app(settings: Settings, app: AppSettings, active: bool,
              untouched: HostState | None = None) -> None:
    """Check the app through nginx and directly on gunicorn. `untouched`: the state of a
    host this run calls no operation on, whose health reading may then stand."""
    known = None if untouched is None else (
        untouched.value(reading(settings, app)).get("replies", []), untouched.read_at)
    healthz(name=f"Check {app.name} through nginx and directly on gunicorn",
            checks=checks(settings, app), host_header=settings.url_host, settings=settings,
            app=app, active=active, known=known)


class Health(Component):
    """An app's health reading, taken with the host's state: whether a host this run leaves
    untouched is healthy (the checks themselves run in the rollout: check_app)."""

    def __init__(self, settings: Settings, app: AppSettings) -> None:
        self.settings, self.app = settings, app

    def reads(self) -> list[Read]:
        return [reading(self.settings, self.app)]
