"""One app on a host: its user, directories, config, releases, and the switch between them.

Preparing (any time, all hosts at once) writes the candidate config and installs the new
release beside the live one. Going live (in the host's rollout batch) load-checks the
release with the candidate config, switches `current` to it, and swaps gunicorn to it
gracefully; if the new gunicorn does not come up, the previous config and release are put
back while the old gunicorn goes on serving.
"""

from __future__ import annotations

import shlex

from pyinfra.api import deploy
from pyinfra.operations import server

from wsgistack import releases
from wsgistack.changes import will_change
from wsgistack.facts import LinkTarget, SystemAccount
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import Directory, File, Managed, ensure_all
from wsgistack.paths import HERDER, TEMPLATES, AppPaths
from wsgistack.releases import backup_script, install_release, prune_script, release_link
from wsgistack.settings import AppSettings, Settings
from wsgistack.staged import StagedFiles, StagedState, candidate, is_due

NOLOGIN = "/usr/sbin/nologin"


def staged_files(paths: AppPaths) -> StagedFiles:
    """The app's live state: its two config files and the release `current` points to."""
    return StagedFiles(f"app-{paths.name}", (str(paths.config), str(paths.gunicorn_config)),
                       also=f"readlink {paths.current}")


def directories(app: AppSettings, paths: AppPaths) -> list[Managed]:
    return [
        *(Directory(f"Create {path} ({purpose})", str(path), user, group, mode)
          for path, user, group, mode, purpose in [
              (paths.home, "root", "root", "755", "releases, read-only to the app"),
              (paths.config_dir, "root", app.name, "750", "config, readable by the app only"),
              (paths.data, app.name, app.name, "750", "data, the app's own"),
              (paths.backups, app.name, app.name, "750", "database backups"),
              (paths.run_dir, app.name, app.name, "755", "runtime dir for the pid file"),
          ]),
        File(f"Recreate {paths.run_dir} at every boot (tmpfiles.d)", str(paths.tmpfiles),
             "root", "root", "644", template=TEMPLATES / "etc/tmpfiles.d/app.conf.j2",
             context={"app": app, "paths": paths}),
    ]


def config_files(settings: Settings, app: AppSettings, paths: AppPaths,
                 secret_key: str) -> list[Managed]:
    """The candidate config files: made live by the switch (switch_script)."""
    return [
        File(f"Write {app.name}'s candidate config (secret key, database, debug off)",
             candidate(paths.config), "root", app.name, "640",
             template=TEMPLATES / "etc/app/config.py.j2",
             context={"app": app, "paths": paths, "secret_key": secret_key}),
        File(f"Write {app.name}'s candidate gunicorn settings",
             candidate(paths.gunicorn_config), "root", app.name, "640",
             template=TEMPLATES / "etc/app/gunicorn.conf.py.j2",
             context={"app": app, "paths": paths, "settings": settings}),
    ]


def managed(settings: Settings, app: AppSettings, secret_key: str) -> list[Managed]:
    paths = AppPaths(app.name)
    return directories(app, paths) + config_files(settings, app, paths, secret_key)


def probes(app: AppSettings) -> list[Read]:
    paths = AppPaths(app.name)
    return [Read.of(SystemAccount, user=app.name),
            Read.of(StagedState, staged=staged_files(paths)),
            *releases.probes(app, paths)]


@deploy("App user, config and release")
def prepare_app(settings: Settings, app: AppSettings, secret_key: str, seen: HostState) -> str:
    """Prepare the app; return the go-live script if anything is due, else ""."""
    paths = AppPaths(app.name)
    create_user(app, paths, seen)
    ensure_all(directories(app, paths), seen)
    config = ensure_all(config_files(settings, app, paths, secret_key), seen)
    install = install_release(app, paths, seen)
    live_release = seen.get(LinkTarget, path=str(paths.current))
    staged = staged_files(paths)
    if (will_change(*config, install) or live_release != release_link(app.version)
            or is_due(seen.get(StagedState, staged=staged))):
        return switch_script(settings, app, paths, staged)
    return ""


def create_user(app: AppSettings, paths: AppPaths, seen: HostState) -> None:
    account = seen.get(SystemAccount, user=app.name)
    if ("gid" in account and account["gid"] == account.get("group_gid")
            and account["home"] == str(paths.data) and account["shell"] == NOLOGIN):
        return
    server.group(name=f"Create the {app.name} group", group=app.name, system=True)
    server.user(
        name=f"Create the {app.name} system user (no login shell)",
        user=app.name, group=app.name, system=True, shell=NOLOGIN,
        home=str(paths.data), create_home=False,
    )


def switch_script(settings: Settings, app: AppSettings, paths: AppPaths,
                  staged: StagedFiles) -> str:
    """Load-check, switch config and release, swap gunicorn; put all back if it fails."""
    release = paths.release(app.version)
    check = (f"cd {paths.data} && runuser -u {app.name} -- env"
             f" {app.config_env}={candidate(paths.config)} SCRIPT_NAME={app.prefix}"
             f" HOME={paths.data} {release.venv}/bin/gunicorn --check-config"
             f" --config {candidate(paths.gunicorn_config)}")
    refused = f"{app.name} {app.version} failed its load check; nothing was switched:"
    link = f"ln -sfn \"$1\" {paths.current}.tmp && mv -Tf {paths.current}.tmp {paths.current}"
    reload = (f"python3 {HERDER} reload --pidfile {paths.pid_file} --workers {app.workers}"
              f" --graceful-timeout {settings.gunicorn_graceful_timeout}"
              f" --log {paths.stderr_log}")
    return "\n".join([
        f"if ! out=$( ({check}) 2>&1); then",
        f"  echo {shlex.quote(refused)} >&2; echo \"$out\" | tail -n 25 >&2; exit 1",
        "fi",
        f"link() {{ {link}; }}",
        f"previous=$(readlink {paths.current} || true)",
        f"if [ \"$previous\" != {release_link(app.version)} ]; then",
        backup_script(app, paths, settings.keep_backups),
        "fi",
        staged.keep_previous(),
        staged.promote(),
        f"link {release_link(app.version)}",
        f"if ! {reload}; then",
        f"  {staged.put_back_previous()}",
        "  if [ -n \"$previous\" ]; then link \"$previous\"; fi",
        "  exit 1",
        "fi",
        staged.forget_previous(),
        staged.record(),
        prune_script(paths, settings.keep_releases),
    ])
