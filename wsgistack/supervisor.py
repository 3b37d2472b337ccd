"""supervisor keeps each app's gunicorn alive: one program file per app.

The program runs gunicorn through gunicorn-herder, so a graceful binary swap of gunicorn
(a new release) is not mistaken by supervisor for a crash. The program file is staged like
all config: written as a candidate, parsed by supervisor's own config parser, then made
live with `supervisorctl reread` + `update <program>` (never a restart of supervisord,
which would restart every program). A change to the program file itself restarts the app.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.operations import files

from wsgistack.changes import will_change
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


class ProgramState(FactBase[str]):
    """supervisor's state of a program (RUNNING, STARTING, FATAL, ...); empty if unknown."""

    def command(self, program: str) -> str:
        return f"supervisorctl status {shlex.quote(program)} 2>/dev/null | awk '{{print $2}}'"


def herder_digest() -> str:
    return hashlib.sha256(HERDER_SOURCE.read_bytes()).hexdigest()


@deploy("supervisor program")
def prepare_program(settings: Settings, app: AppSettings) -> str:
    """Write the candidate program file; return the go-live script if anything is due."""
    paths = AppPaths(app.name)
    program = files.template(
        name=f"Write the {app.name} candidate supervisor program",
        src=str(TEMPLATES / "etc/supervisor/conf.d/app.conf.j2"),
        dest=candidate(paths.supervisor_program), mode="644", create_remote_dir=False,
        app=app, paths=paths, settings=settings, herder=HERDER,
        herder_digest=herder_digest(),
    )
    staged = StagedFiles(f"supervisor-{app.name}", (str(paths.supervisor_program),))
    running = host.get_fact(ProgramState, program=app.name) in ("RUNNING", "STARTING")
    if will_change(program) or not running or is_due(host.get_fact(StagedState, staged=staged)):
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
