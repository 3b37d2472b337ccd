"""One app on a host: its user, directories, config, releases, and the switch between them.

Preparing (any time, all hosts at once) writes the candidate config and installs the new
release beside the live one. Going live (in the host's rollout batch) load-checks the
release with the candidate config, switches `current` to it, and swaps gunicorn to it
gracefully; if the new gunicorn does not come up, the previous config and release are put
back while the old gunicorn goes on serving.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import deploy
from pyinfra.operations import server

from wsgistack import releases
from wsgistack.base import NOLOGIN
from wsgistack.changes import refuse, will_change
from wsgistack.database import PASSWORD, url, uses_database
from wsgistack.environment import Environment
from wsgistack.facts import LinkTarget, SystemAccount
from wsgistack.hoststate import HostState, Read
from wsgistack.managed import Directory, File, Managed, OwnersDirectory, ensure_all
from wsgistack.onhost.golive import account_comment, app_unit
from wsgistack.paths import TEMPLATES, AppPaths
from wsgistack.releases import config_arguments, install_release, release_link
from wsgistack.settings import SERVER_NAMES_ENV, AppSettings, Settings, SettingsError
from wsgistack.staged import (
    StagedState,
    candidate,
    command_options,
    expect,
    expected_digests,
    golive,
    is_due,
)


def directories(app: AppSettings, paths: AppPaths) -> list[Managed]:
    """Root's dirs in root's own parents; the dirs inside the app's data dir are made by
    the app's user (golive data-dir): root never acts inside a dir the app can write."""
    return [
        *(Directory(f"Create {path} ({purpose})", str(path), user, group, mode)
          for path, user, group, mode, purpose in [
              (paths.home, "root", "root", "755", "releases, read-only to the app"),
              (paths.config_dir, "root", app.name, "750", "config, readable by the app only"),
              (paths.data, app.name, app.name, "750", "data, the app's own"),
              (paths.run_dir, app.name, app.name, "755", "runtime dir for the pid file"),
          ]),
        *(OwnersDirectory(f"Create {paths.data_dir(name)} ({purpose}, as {app.name})",
                          str(paths.data_dir(name)), app.name, "750",
                          golive("data-dir", app.name, name))
          for name, purpose in [("backups", "database backups"),
                                *((name, "declared in data_dirs") for name in app.data_dirs)]),
        File(f"Recreate {paths.run_dir} at every boot (tmpfiles.d)", str(paths.tmpfiles),
             "root", "root", "644", template=TEMPLATES / "etc/tmpfiles.d/app.conf.j2",
             context={"app": app, "paths": paths}),
    ]


def environment(settings: Settings, app: AppSettings, secrets: dict[str, str],
                where: Environment) -> list[tuple[str, str]]:
    """The app's process environment from its env file: the server names, its plain
    variables, its secret ones, and its database's URL (with its password) where its
    environment has a database host."""
    database = [(app.database_env, url(app, where, secrets[PASSWORD]))
                if app.database_env and uses_database(app, where) else ()]
    return [(SERVER_NAMES_ENV, " ".join(settings.server_names)), *app.env,
            *((name, secrets[name]) for name in app.secret_env), *filter(None, database)]


class TemplateSecrets(dict):
    """The app's secrets as its config template sees them (`secrets.NAME`): a name not in
    its secret_env stops the run with one line, not a template error."""

    def __init__(self, app: AppSettings, secrets: dict[str, str]) -> None:
        super().__init__(secrets)
        self.app = app

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self:
            raise SettingsError([f"apps[{self.app.name}].config: {self.app.config} uses"
                                 f" secrets.{name}, which is not in its secret_env"])
        return self[name]


def config_files(settings: Settings, app: AppSettings, paths: AppPaths,
                 secrets: dict[str, str], where: Environment) -> list[Managed]:
    """The candidate config files, in app_unit's order: made live by the switch."""
    own = [File(f"Write {app.name}'s candidate {app.config_name} (its own config, from"
                f" {app.config.name})", str(candidate(paths.config(app.config_name))), "root",
                app.name, "640", template=app.config,
                context={"app": app, "paths": paths, "settings": settings,
                         "secrets": TemplateSecrets(app, secrets)},
                secret=True)] if app.config else []
    return [
        *own,
        File(f"Write {app.name}'s candidate gunicorn settings",
             str(candidate(paths.gunicorn_config)), "root", app.name, "640",
             template=TEMPLATES / "etc/app/gunicorn.conf.py.j2",
             context={"app": app, "paths": paths, "settings": settings}),
        File(f"Write {app.name}'s candidate environment (its variables and secrets)",
             str(candidate(paths.env_file)), "root", app.name, "640",
             template=TEMPLATES / "etc/app/env.j2",
             context={"app": app, "paths": paths,
                      "environment": environment(settings, app, secrets, where)},
             secret=True),
    ]


def managed(settings: Settings, app: AppSettings, secrets: dict[str, str],
            where: Environment) -> list[Managed]:
    paths = AppPaths(app.name)
    return directories(app, paths) + config_files(settings, app, paths, secrets, where)


def probes(app: AppSettings) -> list[Read]:
    paths = AppPaths(app.name)
    return [Read.of(SystemAccount, user=app.name),
            Read.of(StagedState, unit=app_unit(paths, app.config_name)),
            *releases.probes(app, paths)]


@dataclass(frozen=True)
class Prepared:
    """What going live means for the app on this host: golive commands, "" for none."""

    switch: str = ""  # config, release and gunicorn swap
    migrate: str = ""  # the environment's database, once before any host switches


@deploy("App user, config and release")
def prepare_app(settings: Settings, app: AppSettings, secrets: dict[str, str],
                seen: HostState, where: Environment) -> Prepared:
    """Prepare the app: what is due to go live."""
    paths = AppPaths(app.name)
    create_user(app, paths, seen)
    ensure_all(directories(app, paths), seen)
    candidates = config_files(settings, app, paths, secrets, where)
    config = ensure_all(candidates, seen)
    install = install_release(app, paths, seen)
    new_release = seen.get(LinkTarget, path=str(paths.current)) != release_link(app.version)
    if (will_change(*config, install) or new_release
            or is_due(seen.get(StagedState, unit=app_unit(paths, app.config_name)))):
        shared = uses_database(app, where)
        return Prepared(switch_command(settings, app, expected_digests(candidates), shared),
                        migrate_command(settings, app) if shared and new_release else "")
    return Prepared()


def create_user(app: AppSettings, paths: AppPaths, seen: HostState) -> None:
    """The app's own user and group, made by the deploy and marked so (their comment):
    an account the deploy did not make is never changed into the app's (an app named
    after the operator's own sudo account would lock the operator out)."""
    account = seen.get(SystemAccount, user=app.name)
    comment = account_comment(app.name)
    problem = foreign_account(app, account, comment, seen)
    if problem:
        refuse(name=f"Refuse to take over the account {app.name}", message=problem)
        return
    if ("gid" in account and account["gid"] == account.get("group_gid")
            and account["home"] == str(paths.data) and account["shell"] == NOLOGIN
            and account["comment"] == comment):
        return
    server.group(name=f"Create the {app.name} group", group=app.name, system=True)
    server.user(
        name=f"Create the {app.name} system user (no login shell)",
        user=app.name, group=app.name, system=True, shell=NOLOGIN,
        home=str(paths.data), create_home=False, comment=comment,
    )


def foreign_account(app: AppSettings, account: dict[str, str], comment: str,
                    seen: HostState) -> str:
    """Why the host's account or group named after the app is not the deploy's to use
    ("" if there is none, or it is the deploy's: marked, or made by a deploy before the
    mark, whose app has a live release of this stack)."""
    if not account:
        return ""
    paths = AppPaths(app.name)
    ours = account.get("comment") == comment or (
        account.get("home") == str(paths.data) and account.get("shell") == NOLOGIN
        and seen.get(LinkTarget, path=str(paths.current)).startswith("releases/"))
    if "gid" not in account:
        return (f"apps[{app.name}]: the group {app.name} exists on this host without a user"
                f" {app.name}: it is not one the deploy made; name the app otherwise (or, if"
                f" it is a failed deploy's leftover, remove it: groupdel {app.name})")
    if not ours:
        return (f"apps[{app.name}]: the account {app.name} exists on this host and the deploy"
                " did not make it: an app never takes over an account; name the app otherwise")
    return ""


def switch_command(settings: Settings, app: AppSettings, digests: list[str | None],
                   shared: bool) -> str:
    """golive switch: verify the candidates have these SHA-256 `digests`, load-check the
    release with them, back up the data and run the release commands (on a new release,
    unless the data is `shared` by the environment's hosts: then migrate_command did both),
    make config and release live, swap gunicorn; put all back if the new gunicorn fails."""
    return golive("switch", app.name, app.version, *config_arguments(app), "--prefix", app.prefix,
                  "--workers", app.workers,
                  "--graceful-timeout", settings.gunicorn_graceful_timeout,
                  "--keep-releases", settings.keep_releases,
                  "--keep-backups", settings.keep_backups,
                  "--expect", *expect(app_unit(AppPaths(app.name), app.config_name), digests),
                  *(["--shared-database"] if shared else
                    command_options("--release-command", app.release_commands)))


def migrate_command(settings: Settings, app: AppSettings) -> str:
    """golive migrate: the environment's database backed up (pg_dump) and the release
    commands run, once, before any of its hosts switches; "" for an app with none."""
    if not app.release_commands:
        return ""
    return golive("migrate", app.name, app.version, *config_arguments(app),
                  "--prefix", app.prefix, "--keep-backups", settings.keep_backups,
                  "--database-env", app.database_env,
                  *command_options("--release-command", app.release_commands))
