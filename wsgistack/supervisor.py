"""supervisor keeps each app's gunicorn alive: one program file per app.

The program runs gunicorn through gunicorn-herder, so a graceful binary swap of gunicorn
(a new release) is not mistaken by supervisor for a crash. The program file is staged like
all config: written as a candidate, then made live by golive, which parses it with
supervisor's own config parser and applies it with `supervisorctl reread` + `update
<program>` (never a restart of supervisord, which would restart every program). A change to
the program file itself restarts the app.
"""

from __future__ import annotations

import functools
import hashlib
import shlex

from pyinfra.api import FactBase, deploy

from wsgistack.changes import will_change
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import File, Managed, ensure_all
from wsgistack.onhost.golive import program_unit
from wsgistack.paths import HERDER, HERDER_SOURCE, SUPERVISOR_QUERY, TEMPLATES, AppPaths
from wsgistack.settings import AppSettings, Settings
from wsgistack.staged import StagedState, candidate, expect, expected_digests, golive, is_due


class ProgramState(FactBase[str]):
    """supervisor's state of a program (RUNNING, STARTING, FATAL, ...); empty if unknown
    (supervisor-query asks supervisor's socket: ~15 ms of CPU, supervisorctl ~190 ms)."""

    default = str

    def command(self, program: str) -> str:
        return f"python3 -I -S {SUPERVISOR_QUERY} {shlex.quote(program)} 2>/dev/null || true"

    def process(self, output: list[str]) -> str:
        return output[0].split()[0]


@functools.cache  # the herder cannot change during a run; asked twice per host
def herder_digest() -> str:
    return hashlib.sha256(HERDER_SOURCE.read_bytes()).hexdigest()


def managed(settings: Settings, app: AppSettings) -> list[Managed]:
    paths = AppPaths(app.name)
    return [File(f"Write the {app.name} candidate supervisor program",
                 str(candidate(paths.supervisor_program)), "root", "root", "644",
                 template=TEMPLATES / "etc/supervisor/conf.d/app.conf.j2",
                 context={"app": app, "paths": paths, "settings": settings, "herder": HERDER,
                          "herder_digest": herder_digest()})]


def probes(app: AppSettings) -> list[Read]:
    return [Read.of(ProgramState, program=app.name),
            Read.of(StagedState, unit=program_unit(AppPaths(app.name)))]


@deploy("supervisor program")
def prepare_program(settings: Settings, app: AppSettings, seen: HostState) -> str:
    """Write the candidate program file; return the go-live command if anything is due."""
    files = managed(settings, app)
    program = ensure_all(files, seen)
    unit = program_unit(AppPaths(app.name))
    running = seen.get(ProgramState, program=app.name) in ("RUNNING", "STARTING")
    if will_change(*program) or not running or is_due(seen.get(StagedState, unit=unit)):
        return golive("program", app.name, "--expect",
                      *expect(unit, expected_digests(files)))
    return ""
