"""Releases of an app on a host: installing one, and finding what to roll back to.

A release is /opt/<app>/releases/<version>/ with its own venv, installed from the app's
wheels. The host keeps each wheel once (/opt/<app>/wheels/, hard-linked into each release
that holds it), so a new version is sent only the wheels the host lacks. A release is
complete once its marker (the wheelhouse digest) is written, last; the marker's time
orders the releases, oldest first. Pruning old releases and backing up the
data before a switch are golive's (golive switch).
"""

from __future__ import annotations

import hashlib
import json
import shlex

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from wsgistack.build import wheelhouse
from wsgistack.config.settings import AppSettings, is_built
from wsgistack.engine import managed
from wsgistack.engine.changes import refuse
from wsgistack.engine.facts import DirEntries, FileText, LinkTarget, PythonTarget
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.preview import CREATE
from wsgistack.engine.programs import UV_PROGRAM
from wsgistack.engine.staged import golive
from wsgistack.engine.summary import declare
from wsgistack.onhost.golive.layout import AppPaths


class InstalledReleases(FactBase[list[str]]):
    """The complete releases of an app, oldest first, as golive prunes them; none where
    golive is not installed (nothing was ever deployed)."""

    default = list

    def command(self, app: str) -> str:
        return f"{golive('releases', app=app)} 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]


def release_link(version: str) -> str:
    """What `current` holds when `version` is live."""
    return f"releases/{version}"


def probes(app: AppSettings, paths: AppPaths) -> list[Read]:
    """What install_release reads: the host's Python, the release's marker, the live link,
    the stored wheels."""
    return [Read.of(PythonTarget), Read.of(DirEntries, path=str(paths.wheels)),
            Read.of(FileText, path=str(paths.release(app.version).installed_marker)),
            Read.of(LinkTarget, path=str(paths.current))]


def install_release(app: AppSettings, paths: AppPaths, seen: HostState) -> OperationMeta | None:
    """Install the wheelhouse as releases/<version> unless that release holds exactly it.

    The comparison is by state, so an interrupted install is redone by the next run, and a
    converged host uploads and installs nothing. A live release is never reinstalled: new
    bits need a new version.
    """
    build = wheelhouse.build_app(app, seen.get(PythonTarget))
    release = paths.release(app.version)
    installed = seen.get(FileText, path=str(release.installed_marker)).strip()
    if installed == release_digest(app, build):
        return None
    if seen.get(LinkTarget, path=str(paths.current)) == release_link(app.version):
        return refuse(
            name=f"Refuse to reinstall the live {app.name} {app.version}",
            message=f"{app.name} {app.version} is live on this host and was built from other"
                    " sources or dependencies: give the app a new version to deploy them",
        )
    sent = build.upload(seen.get(DirEntries, path=str(paths.wheels)))
    declare(managed.upload(
        name=f"Upload the {app.name} {app.version} wheels this host lacks",
        source=str(sent), dest=f"{paths.wheelhouse}.tar", user="root", group="root",
        mode="644",
    ), CREATE)
    return declare(server.shell(
        name=f"Install {app.name} {app.version} as a new release (its own venv)",
        commands=[install_script(app, paths, build)],
    ), CREATE)


def release_digest(app: AppSettings, build: wheelhouse.Wheelhouse) -> str:
    """What a release is made from: the wheelhouse, and the build commands run on it."""
    if not app.build_commands:
        return build.digest
    made = hashlib.sha256(f"{build.digest}\n{json.dumps(app.build_commands)}".encode())
    return made.hexdigest()[:16]


def install_script(app: AppSettings, paths: AppPaths, build: wheelhouse.Wheelhouse) -> str:
    """Shell, one script (one SSH round trip) stopping at its first failed line (`set -e`:
    so no line is an && list), in root's own /opt/<app>: unpack the upload, store the
    wheels it brought, link the release's wheels from the store, make its venv from them,
    run the build commands (golive build), link each static dir (checked again on the host:
    it must exist), and write the marker last (checked by shellcheck in `make lint`)."""
    release = paths.release(app.version)
    python = f"{release.venv}/bin/python"
    upload, store = paths.wheelhouse, paths.wheels
    links = [f"ln -f {store}/{shlex.quote(stored)} {release.wheels}/{shlex.quote(name)}"
             for name, stored in build.stored().items()]
    own = f" {release.wheels}/{shlex.quote(build.app_wheel)}" if build.app_wheel else ""
    commands = [
        f"rm -rf {release.path} {upload}",
        f"mkdir -p {release.wheels} {upload} {store}",
        f"tar -xf {upload}.tar -C {upload}",
        f"find {upload} -maxdepth 1 -name '*.whl' -exec mv -f -t {store} {{}} +",
        *links,
        # -I: nothing from the SSH session's working dir or environment on sys.path.
        f"python3 -I -m venv --without-pip {release.venv}",
        # uv, from the release's wheels alone (no index, no config file, no cache), compiled
        # as pip would: the app cannot write its root-owned venv's __pycache__ dirs.
        f"{UV_PROGRAM} pip install --quiet --offline --no-index --no-config --no-cache"
        f" --compile-bytecode --python {python} --find-links {release.wheels}"
        f" --requirement {upload}/requirements.txt{own}",
        f"rm -f {release.venv}/.lock",  # uv's, writable by all: code is read-only to others
    ]
    if app.build_commands:
        commands.append(golive("build", app=app.name, version=app.version,
                               config=app.config_name, config_env=app.config_env,
                               prefix=app.prefix, build_commands=app.build_commands))
    if app.static:
        links = [f"packages=$({python} -c 'import sysconfig;"
                 " print(sysconfig.get_path(\"purelib\"))')"]
        for index, (url, folder) in enumerate(app.static):
            found = f"{release.path}/{folder}" if is_built(folder) else f"\"$packages\"/{folder}"
            missing = f"apps[{app.name}].static: {url} -> {folder}: no such dir in the release"
            links.append(f"if [ -d {found} ]; then ln -sfn {found} {release.static(index)};"
                         f" else echo {shlex.quote(missing)} >&2; exit 1; fi")
        commands.append("\n".join(links))
    marker = release_digest(app, build)
    return "\n".join(["set -e", *commands,
                      f"echo {shlex.quote(marker)} > {release.installed_marker}"])


def rollback_target(app: AppSettings, paths: AppPaths, wanted: str | None) -> str:
    """The version to roll back to, or a refusal saying why there is none."""
    installed = host.get_fact(InstalledReleases, app=app.name)
    live = host.get_fact(LinkTarget, path=str(paths.current)).removeprefix("releases/")
    if wanted is not None:
        if wanted not in installed:
            raise NoRollback(f"{app.name} {wanted} is not installed on this host"
                             f" (installed: {', '.join(installed) or 'none'})")
        return wanted
    older = installed[:installed.index(live)] if live in installed else []
    if not older:
        raise NoRollback(f"nothing to roll back to: {app.name} has no release older than"
                         f" the live {live or 'none'} on this host")
    return older[-1]


class NoRollback(Exception):
    pass
