"""supervisor keeps each app's gunicorn alive: one program file per app.

The program runs gunicorn through gunicorn-herder, so a graceful binary swap of gunicorn
(a new release) is not mistaken by supervisor for a crash. The program file is staged like
all config: written as a candidate, then made live by golive, which parses it with
supervisor's own config parser and applies it as `supervisorctl reread` + `update
<program>` would, by XML-RPC (never a restart of supervisord, which would restart every
program). The host read learns supervisor's state of the program with the app's health
(engine.health.AppReading). A change to
the program file itself restarts the app.
"""

from __future__ import annotations

import functools
import hashlib

from wsgistack.config.settings import AppSettings, Settings
from wsgistack.engine.changes import will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.health import program_state, reading
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import File, Managed, ensure_all
from wsgistack.engine.programs import HERDER, HERDER_SOURCE
from wsgistack.engine.staged import StagedState, candidate, expect, expected_digests, golive, is_due
from wsgistack.onhost.golive.layout import AppPaths, program_unit
from wsgistack.paths import TEMPLATES


@functools.cache  # the herder cannot change during a run; asked twice per host
def herder_digest() -> str:
    return hashlib.sha256(HERDER_SOURCE.read_bytes()).hexdigest()


class Program(Component):
    """An app's supervisor program: its candidate, and the program going live in the
    host's batch (also when it is not running)."""

    title = "supervisor program"

    def __init__(self, settings: Settings, app: AppSettings) -> None:
        self.settings, self.app = settings, app

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Nothing here: golive remove stops the program and removes it (engine.teardown)."""
        return []

    def managed(self) -> list[Managed]:
        app, paths = self.app, AppPaths(self.app.name)
        return [File(f"Write the {app.name} candidate supervisor program",
                     str(candidate(paths.supervisor_program)), "root", "root", "644",
                     template=TEMPLATES / "etc/supervisor/conf.d/app.conf.j2",
                     context={"app": app, "paths": paths, "settings": self.settings,
                              "herder": HERDER, "herder_digest": herder_digest()})]

    def reads(self) -> list[Read]:
        return [reading(self.settings, self.app),
                Read.of(StagedState, unit=program_unit(AppPaths(self.app.name)))]

    def prepare(self, seen: HostState) -> list[GoLive]:
        """Write the candidate program file; golive program if anything is due."""
        app, files = self.app, self.managed()
        program = ensure_all(files, seen)
        unit = program_unit(AppPaths(app.name))
        running = program_state(seen, self.settings, app) in ("RUNNING", "STARTING")
        due = will_change(*program) or not running or is_due(seen, unit)
        return [GoLive(f"Apply the {app.name} supervisor program",
                       golive("program", app=app.name, expect=expect(unit, expected_digests(files)))
                       if due else "", Stage.APP)]
