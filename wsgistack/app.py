"""One app on a host: its user, directories, config files and virtualenv."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files, pip, server

from wsgistack import wheelhouse
from wsgistack.facts import FileText, PythonTarget
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.settings import AppSettings, Settings


@dataclass(frozen=True)
class AppChanges:
    """The operations whose change means gunicorn must load the app again."""

    config: OperationMeta
    gunicorn_config: OperationMeta
    install: OperationMeta | None

    @property
    def ops(self) -> list[OperationMeta | None]:
        return [self.config, self.gunicorn_config, self.install]

    def code_or_config_changed(self) -> bool:
        return any(op.did_change() for op in self.ops if op is not None)


@deploy("App user, files and virtualenv")
def install_app(settings: Settings, app: AppSettings, secret_key: str) -> AppChanges:
    paths = AppPaths(app.name)
    create_user(app)
    create_directories(app, paths)
    config = files.template(
        name=f"Write {app.name}'s config file (secret key, database, debug off)",
        src=str(TEMPLATES / "etc/app/config.py.j2"), dest=str(paths.config),
        user="root", group=app.name, mode="640",
        app=app, paths=paths, secret_key=secret_key,
    )
    gunicorn_config = files.template(
        name=f"Write {app.name}'s gunicorn settings",
        src=str(TEMPLATES / "etc/app/gunicorn.conf.py.j2"), dest=str(paths.gunicorn_config),
        user="root", group=app.name, mode="640",
        app=app, paths=paths, settings=settings,
    )
    install = install_release(app, paths)
    return AppChanges(config, gunicorn_config, install)


def create_user(app: AppSettings) -> None:
    server.group(name=f"Create the {app.name} group", group=app.name, system=True)
    server.user(
        name=f"Create the {app.name} system user (no login shell)",
        user=app.name, group=app.name, system=True, shell="/usr/sbin/nologin",
        home=str(AppPaths(app.name).data), create_home=False,
    )


def create_directories(app: AppSettings, paths: AppPaths) -> None:
    directories = [
        (paths.home, "root", "root", "755", "code and virtualenv, read-only to the app"),
        (paths.config_dir, "root", app.name, "750", "config, readable by the app only"),
        (paths.data, app.name, app.name, "750", "data, the app's own"),
        (paths.run_dir, app.name, app.name, "755", "runtime dir for the pid file"),
    ]
    for path, user, group, mode, purpose in directories:
        files.directory(name=f"Create {path} ({purpose})", path=str(path),
                        user=user, group=group, mode=mode)
    files.template(
        name=f"Recreate {paths.run_dir} at every boot (tmpfiles.d)",
        src=str(TEMPLATES / "etc/tmpfiles.d/app.conf.j2"), dest=str(paths.tmpfiles),
        mode="644", app=app, paths=paths,
    )


def install_release(app: AppSettings, paths: AppPaths) -> OperationMeta | None:
    """Install the wheelhouse into the venv unless the venv already holds exactly it.

    The venv records the digest of the wheelhouse it was installed from, last, only after
    a successful install: the comparison is by state, so an interrupted run is finished by
    the next one, and a converged host uploads and installs nothing.
    """
    python, machine = host.get_fact(PythonTarget)
    build = wheelhouse.build(app.source, python, machine)
    pip.venv(name=f"Create {app.name}'s virtualenv", path=str(paths.venv), python="python3")
    installed = host.get_fact(FileText, path=str(paths.installed_marker)) or ""
    if installed.strip() == build.digest:
        return None
    files.sync(
        name=f"Upload the {app.name} {app.version} wheelhouse",
        src=str(build.path), dest=str(paths.wheelhouse), delete=True,
        user="root", group="root", mode="644", dir_mode="755",
    )
    package = app.wsgi.split(":")[0].split(".")[0]
    static_dir = (f"$({paths.venv}/bin/python -c 'import importlib.util, os;"
                  f" print(os.path.dirname(importlib.util.find_spec(\"{package}\").origin))')")
    pip_install = f"{paths.venv}/bin/pip install --quiet --no-index --find-links {paths.wheelhouse}"
    return server.shell(
        name=f"Install {app.name} {app.version} and its pinned dependencies into the venv",
        commands=[
            f"{pip_install} --requirement {paths.wheelhouse}/requirements.txt",
            f"{pip_install} --no-deps --force-reinstall {paths.wheelhouse}/{build.app_wheel}",
            f"ln -sfn {static_dir}/static {paths.static}",
            f"echo {shlex.quote(build.digest)} > {paths.installed_marker}",
        ],
    )
