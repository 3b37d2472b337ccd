"""Stand-ins for what golive and gunicorn-herder drive on a host, for offline tests: a
gunicorn master that behaves as gunicorn's does across a USR2 swap, supervisor's XML-RPC
socket, and recording `nginx` and `systemctl` commands."""

from __future__ import annotations

import os
import socketserver
import stat
import sys
import threading
import xmlrpc.client
from pathlib import Path

# A gunicorn master as the herder sees one: writes its pid to $STUB_PIDFILE (".2" while the
# master that started it lives, renamed once it is gone), starts $STUB_WORKERS workers that
# each append their pid to ready.<master pid> (gunicorn's post_worker_init hook), re-executes
# itself on USR2 (GUNICORN_PID tells the new one who its old master is), and on TERM stops
# its workers and removes its pid file. A new master halts soon after it starts if
# <pid dir>/broken exists (a release that fails to import). `--check-config` fails if the
# config file says BROKEN.
GUNICORN = r'''
import os, signal, sys, time
from pathlib import Path
if "--check-config" in sys.argv:
    config = open(sys.argv[sys.argv.index("--config") + 1]).read()
    sys.exit("Error: the app failed to import" if "BROKEN" in config else 0)
pidfile = Path(os.environ["STUB_PIDFILE"])
old_master = int(os.environ.get("GUNICORN_PID", "0"))
mine = pidfile.with_name(pidfile.name + ".2") if old_master else pidfile
if old_master and (pidfile.parent / "broken").exists():
    mine.write_text(str(os.getpid()))  # as gunicorn: its pid file, then workers fail to boot
    time.sleep(0.5)
    mine.unlink()
    sys.exit(3)
workers = []
for _ in range(int(os.environ.get("STUB_WORKERS", "2"))):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        with open(pidfile.parent / f"ready.{os.getppid()}", "a") as ready:
            ready.write(f"{os.getpid()}\n")
        while True:
            time.sleep(1)
    workers.append(pid)

def stop(*_):
    for worker in workers:
        os.kill(worker, signal.SIGTERM)
    if mine.exists() and mine.read_text() == str(os.getpid()):
        mine.unlink()
    os._exit(0)

def reexec(*_):
    master = os.getpid()
    if os.fork() == 0:
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "GUNICORN_PID": str(master)})

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGUSR2, reexec)
mine.write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
    if old_master and os.getppid() != old_master:
        mine.rename(pidfile)
        mine, old_master = pidfile, 0
'''

# Records its arguments, one line per call, in $STUB_LOG; exits with $STUB_EXIT_<NAME>.
RECORDER = r'''#!{python}
import os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(" ".join([name, *sys.argv[1:]]) + "\n")
if name == "nginx" and "-c" in sys.argv:
    conf = sys.argv[sys.argv.index("-c") + 1]
    enabled = os.path.join(os.path.dirname(conf), "sites-enabled")
    for site in os.listdir(enabled):
        if "broken;" in open(os.path.join(enabled, site)).read():
            sys.exit(f"nginx: [emerg] unknown directive \"broken\" in {{enabled}}/{{site}}:1")
sys.exit(int(os.environ.get("STUB_EXIT_" + name.upper(), "0")))
'''


def install_commands(bin_dir: Path, log: Path) -> dict[str, str]:
    """Recording stand-ins for nginx and systemctl on PATH; the environment that puts them
    there."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("nginx", "systemctl"):
        path = bin_dir / name
        path.write_text(RECORDER.format(python=sys.executable))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(log)}


class FakeSupervisor:
    """supervisord's XML-RPC socket, one call per connection as HTTP/1.0: getProcessInfo
    answers `state` and `pid`, reloadConfig the `changes` (added, changed, removed groups),
    startProcess makes the state RUNNING, a method in `faults` answers that fault, any other
    method True. Each call is recorded in `calls`, its method and arguments."""

    def __init__(self, socket_path: Path) -> None:
        self.pid = 0
        self.state = "RUNNING"
        self.changes: tuple[list[str], list[str], list[str]] = ([], [], [])
        self.faults: dict[str, str] = {}
        self.calls: list[tuple[object, ...]] = []
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                length = 0
                self.rfile.readline()  # POST /RPC2 HTTP/1.x
                while line := self.rfile.readline().strip():
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                params, method = xmlrpc.client.loads(self.rfile.read(length))
                body = fake.answer(method, params).encode()
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

        self.server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, params: tuple[object, ...]) -> str:
        self.calls.append((method.removeprefix("supervisor."), *params))
        if method.removeprefix("supervisor.") in self.faults:
            fault = xmlrpc.client.Fault(10, self.faults[method.removeprefix("supervisor.")])
            return xmlrpc.client.dumps(fault, methodresponse=True)
        if method == "supervisor.startProcess":
            self.state = "RUNNING"
        result = {"supervisor.getProcessInfo": {"statename": self.state, "pid": self.pid},
                  "supervisor.reloadConfig": [[list(each) for each in self.changes]],
                  }.get(method, True)
        return xmlrpc.client.dumps((result,), methodresponse=True)

    def called(self) -> list[tuple[object, ...]]:
        """The calls but getProcessInfo (which supervisor-query and golive make to watch)."""
        return [call for call in self.calls if call[0] != "getProcessInfo"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
