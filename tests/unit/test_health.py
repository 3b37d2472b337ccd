"""The health probe, offline: what it calls healthy, run as it runs on a host (one
process, every URL) against a local server that answers like different apps."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wsgistack.config.settings import AppSettings
from wsgistack.engine.health import AppReading, is_healthy, probe_command, replies_in

# path: (status, content type, body)
ANSWERS = {
    "/page": (200, "text/html", b"<h1>an app with no health endpoint</h1>"),
    "/missing": (404, "text/html", b"Not Found"),
    "/login": (302, "text/html", b""),
    "/broken": (500, "text/html", b"Internal Server Error"),
    "/healthz": (200, "application/json", b'{"status": "ok", "version": "1.0.1"}'),
    "/stale": (200, "application/json", b'{"status": "ok", "version": "1.0.0"}'),
    "/degraded": (200, "application/json", b'{"status": "degraded"}'),
    "/down": (503, "application/json", b'{"status": "error", "error": "no database"}'),
    "/list": (200, "application/json", b"[1, 2]"),
}


class Answers(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, kind, body = ANSWERS[self.path]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


APP = AppSettings(name="app", source=None, package="app==1.0.1", distribution="app",
                  version="1.0.1", wsgi="app:app", prefix="/app", port=8000, workers=1)


@pytest.mark.parametrize(("path", "healthy", "detail"), [
    ("/page", True, ""),
    ("/missing", True, ""),
    ("/login", True, ""),
    ("/broken", False, "HTTP 500: Internal Server Error"),
    ("/healthz", True, ""),
    ("/stale", False, ""),
    ("/degraded", False, "HTTP 200: degraded"),
    ("/down", False, "HTTP 503: no database"),
    ("/list", True, ""),
])
def test_what_the_probe_calls_healthy(base_url: str, path: str, healthy: bool,
                                      detail: str) -> None:
    """Any answer below 500 is an app that is up; a JSON object is held to its "status",
    and to its "version" if it reports one."""
    done = subprocess.run(["sh", "-c", probe_command("app.test", 0, [base_url + path])],
                          capture_output=True, text=True, check=False)
    [reply] = replies_in(done.stdout.splitlines())
    assert is_healthy(reply, APP) is healthy, reply
    if detail:
        assert reply["error"] == detail
    if path == "/healthz":
        assert reply["version"] == "1.0.1" and reply["http"] == 200


def test_an_app_that_does_not_answer_is_not_healthy() -> None:
    done = subprocess.run(["sh", "-c", probe_command("app.test", 0, ["http://127.0.0.1:9/x"])],
                          capture_output=True, text=True, check=False)
    [reply] = replies_in(done.stdout.splitlines())
    assert reply["status"] == "error" and done.returncode == 1


def test_the_app_reading_holds_supervisors_state_and_the_replies(base_url: str) -> None:
    """One process per app in the host read: supervisor's state of its program (empty where
    supervisor-query is not installed yet, as on a fresh host) and the probe's replies."""
    command = AppReading().command(program="app", host_header="app.test",
                                   urls=(base_url + "/healthz",))
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
    found = AppReading().process(done.stdout.splitlines())
    assert found["program"] == "" and is_healthy(found["replies"][0], APP)
    assert AppReading().process(["program RUNNING", '{"status": "ok", "http": 200}']) == {
        "program": "RUNNING", "replies": [{"status": "ok", "http": 200}]}
