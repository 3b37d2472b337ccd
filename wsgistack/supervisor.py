"""supervisor keeps each app's gunicorn alive: one program file per app.

The program runs gunicorn through gunicorn-herder, so a graceful binary swap of gunicorn
(a new release) is not mistaken by supervisor for a crash. The program file is staged like
all config: written as a candidate, parsed by supervisor's own config parser, then made
live with `supervisorctl reread` + `update <program>` (never a restart of supervisord,
which would restart every program). A change to the program file itself restarts the app.
"""

from __future__ import annotations

import functools
import hashlib
import shlex

from pyinfra.api import FactBase, deploy

from wsgistack.changes import will_change
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import File, Managed, ensure_all
from wsgistack.paths import HERDER, HERDER_SOURCE, TEMPLATES, AppPaths
from wsgistack.settings import AppSettings, Settings
from wsgistack.staged import StagedFiles, StagedState, candidate, is_due

# Parses a program file as supervisord would at start-up, with the users and paths of
# this host; raises (and exits 1) on any error.
PARSE = """
import sys, tempfile
from supervisor.options import ServerOptions
with tempfile.NamedTemporaryFile("w", suffix=".conf") as main:
    main.write("[supervisord]\\n[include]\\nfiles = %s\\n" % sys.argv[1])
    main.flush()
    options = ServerOptions()
    options.realize(args=["-c", main.name])
    names = [group.name for group in options.process_group_configs]
    if names != [sys.argv[2]]:
        sys.exit("defines %s, expected [%s]" % (names, sys.argv[2]))
"""


# supervisord's state of one program, asked over its XML-RPC socket (the serverurl
# supervisorctl uses): supervisorctl itself takes ~190 ms of CPU to start, this ~15 ms.
PROGRAM_STATE = """
import re, socket, sys
conf = open("/etc/supervisor/supervisord.conf").read()
url = re.search(r"(?m)^serverurl\\s*=\\s*unix://(\\S+)", conf)
body = ("<?xml version='1.0'?><methodCall><methodName>supervisor.getProcessInfo</methodName>"
        "<params><param><value><string>%s</string></value></param></params></methodCall>"
        % sys.argv[1])
sock = socket.socket(socket.AF_UNIX)
sock.connect(url.group(1) if url else "/var/run/supervisor.sock")
head = "POST /RPC2 HTTP/1.0\\r\\nContent-Type: text/xml\\r\\nContent-Length: %d\\r\\n\\r\\n"
sock.sendall((head % len(body) + body).encode())
reply = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
state = re.search(r"<name>statename</name>\\s*<value><string>(\\w+)</string>", reply)
print(state.group(1) if state else "")
"""


class ProgramState(FactBase[str]):
    """supervisor's state of a program (RUNNING, STARTING, FATAL, ...); empty if unknown."""

    default = str

    def command(self, program: str) -> str:
        return (f"python3 -I -S -c {shlex.quote(PROGRAM_STATE)} {shlex.quote(program)}"
                " 2>/dev/null || true")


@functools.cache  # the herder cannot change during a run; asked twice per host
def herder_digest() -> str:
    return hashlib.sha256(HERDER_SOURCE.read_bytes()).hexdigest()


def staged_files(paths: AppPaths) -> StagedFiles:
    return StagedFiles(f"supervisor-{paths.name}", (str(paths.supervisor_program),))


def managed(settings: Settings, app: AppSettings) -> list[Managed]:
    paths = AppPaths(app.name)
    return [File(f"Write the {app.name} candidate supervisor program",
                 candidate(paths.supervisor_program), "root", "root", "644",
                 template=TEMPLATES / "etc/supervisor/conf.d/app.conf.j2",
                 context={"app": app, "paths": paths, "settings": settings, "herder": HERDER,
                          "herder_digest": herder_digest()})]


def probes(app: AppSettings) -> list[Read]:
    return [Read.of(ProgramState, program=app.name),
            Read.of(StagedState, staged=staged_files(AppPaths(app.name)))]


@deploy("supervisor program")
def prepare_program(settings: Settings, app: AppSettings, seen: HostState) -> str:
    """Write the candidate program file; return the go-live script if anything is due."""
    paths = AppPaths(app.name)
    program = ensure_all(managed(settings, app), seen)
    staged = staged_files(paths)
    running = seen.get(ProgramState, program=app.name) in ("RUNNING", "STARTING")
    if will_change(*program) or not running or is_due(seen.get(StagedState, staged=staged)):
        return load_script(app, paths, staged)
    return ""


def load_script(app: AppSettings, paths: AppPaths, staged: StagedFiles) -> str:
    """Check the candidate, make it live, and leave the program running."""
    parse = (f"python3 -c {shlex.quote(PARSE)} {candidate(paths.supervisor_program)}"
             f" {app.name}")
    refused = f"{candidate(paths.supervisor_program)} is not a valid supervisor program:"
    return "\n".join([
        f"if ! out=$({parse} 2>&1); then",
        f"  echo {shlex.quote(refused)} >&2; echo \"$out\" | tail -n 5 >&2; exit 1",
        "fi",
        staged.promote(),
        "supervisorctl reread >/dev/null",
        f"supervisorctl update {app.name}",
        f"case \"$(supervisorctl status {app.name})\" in",
        "  *RUNNING*|*STARTING*) ;;",
        f"  *) supervisorctl start {app.name} ;;",
        "esac",
        staged.record(),
    ])
