"""supervisor keeps each app's gunicorn alive: one program file per app."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server

from wsgistack.app import AppChanges
from wsgistack.changes import will_change
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.settings import AppSettings, Settings


@deploy("supervisor program")
def supervise(settings: Settings, app: AppSettings, changes: AppChanges) -> None:
    paths = AppPaths(app.name)
    program = files.template(
        name=f"Write the {app.name} supervisor program",
        src=str(TEMPLATES / "etc/supervisor/conf.d/app.conf.j2"),
        dest=str(paths.supervisor_program), mode="644",
        app=app, paths=paths, settings=settings,
    )
    # reread + update applies this program's change alone (and starts a new program);
    # restarting supervisord would restart every program on the host.
    if will_change(program):
        server.shell(
            name=f"Load the changed {app.name} program into supervisor",
            commands=["supervisorctl reread", f"supervisorctl update {app.name}"],
            _if=program.did_change,
        )
    elif will_change(*changes.ops):
        server.shell(
            name=f"Restart {app.name} on its new code or config",
            commands=[f"supervisorctl restart {app.name}"],
            _if=changes.code_or_config_changed,
        )
