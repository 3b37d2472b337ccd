"""One app on a host: its user, directories, config, releases, and the switch between them.

Preparing (any time, all hosts at once) writes the candidate config and installs the new
release beside the live one. Going live (in the host's rollout batch) load-checks the
release with the candidate config, switches `current` to it, and swaps gunicorn to it
gracefully; if the new gunicorn does not come up, the previous config and release are put
back while the old gunicorn goes on serving.
"""

from __future__ import annotations

from pyinfra.operations import server

from wsgistack.components import releases
from wsgistack.components.base import NOLOGIN, add_account
from wsgistack.components.database import PASSWORD, url, uses_database
from wsgistack.components.releases import install_release, release_link
from wsgistack.config.environment import Environment
from wsgistack.config.settings import SERVER_NAMES_ENV, AppSettings, Settings, SettingsError
from wsgistack.engine.changes import refuse, will_change
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.facts import LinkTarget, SystemAccount
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Directory, File, Managed, OwnersDirectory, ensure_all
from wsgistack.engine.preview import CREATE, UPDATE
from wsgistack.engine.staged import (
    StagedState,
    candidate,
    expect,
    expected_digests,
    golive,
    is_due,
)
from wsgistack.engine.summary import declare
from wsgistack.onhost.golive.layout import AppPaths, app_unit
from wsgistack.onhost.golive.protocol import account_comment
from wsgistack.paths import TEMPLATES


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
                          golive("data-dir", app=app.name, name=name))
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


class App(Component):
    """One app: its user, dirs, candidate config and new release, prepared at once on every
    host; its switch in the host's batch, and where its data is the environment's database,
    its migration once before any host switches."""

    title = "App user, config and release"

    def __init__(self, settings: Settings, app: AppSettings, secrets: dict[str, str],
                 where: Environment) -> None:
        self.settings, self.app, self.secrets, self.where = settings, app, secrets, where
        self.paths = AppPaths(app.name)

    def managed(self) -> list[Managed]:
        return [*directories(self.app, self.paths), *self.config_files()]

    def teardown(self, purge: bool) -> list[Managed | str]:
        """Nothing here: its removal is golive remove's (engine.teardown), which goes into
        its own dirs as it must, and keeps its data unless purge."""
        return []

    def config_files(self) -> list[Managed]:
        return config_files(self.settings, self.app, self.paths, self.secrets, self.where)

    def reads(self) -> list[Read]:
        return [Read.of(SystemAccount, user=self.app.name),
                Read.of(StagedState, unit=app_unit(self.paths, self.app.config_name)),
                *releases.probes(self.app, self.paths)]

    def prepare(self, seen: HostState) -> list[GoLive]:
        settings, app, paths = self.settings, self.app, self.paths
        shared = uses_database(app, self.where)
        create_user(app, paths, seen)
        ensure_all(directories(app, paths), seen)
        candidates = self.config_files()
        config = ensure_all(candidates, seen)
        install = install_release(app, paths, seen)
        new_release = seen.get(LinkTarget, path=str(paths.current)) != release_link(app.version)
        due = (will_change(*config, install) or new_release
               or is_due(seen, app_unit(paths, app.config_name)))
        switch = GoLive(f"Switch {app.name} to {app.version}: load check, graceful reload",
                        switch_command(settings, app, expected_digests(candidates), shared)
                        if due else "", Stage.APP, shared=shared)
        if not shared:
            return [switch]
        return [GoLive(f"Migrate {app.name}'s {settings.group} database for {app.version}:"
                       " backup, release commands, before any host switches",
                       migrate_command(settings, app) if due and new_release else "",
                       Stage.MIGRATE, shared=True), switch]


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
    if not account:
        declare(add_account(name=f"Create the {app.name} system user and group (no login"
                                 " shell)", user=app.name, home=str(paths.data),
                            comment=comment), CREATE)
        return
    declare(server.group(name=f"Make {app.name} a system group", group=app.name, system=True),
            UPDATE)
    declare(server.user(  # an account of a deploy before the mark, or changed since
        name=f"Make {app.name} the app's system user (no login shell)",
        user=app.name, group=app.name, system=True, shell=NOLOGIN,
        home=str(paths.data), create_home=False, comment=comment,
    ), UPDATE)


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
    return golive("switch", app=app.name, version=app.version, config=app.config_name,
                  config_env=app.config_env, prefix=app.prefix, workers=app.workers,
                  graceful_timeout=settings.gunicorn_graceful_timeout,
                  keep_releases=settings.keep_releases, keep_backups=settings.keep_backups,
                  expect=expect(app_unit(AppPaths(app.name), app.config_name), digests),
                  release_commands=() if shared else app.release_commands,
                  shared_database=shared)


def migrate_command(settings: Settings, app: AppSettings) -> str:
    """golive migrate: the environment's database backed up (pg_dump) and the release
    commands run, once, before any of its hosts switches; "" for an app with none."""
    if not app.release_commands:
        return ""
    return golive("migrate", app=app.name, version=app.version, config=app.config_name,
                  config_env=app.config_env, prefix=app.prefix,
                  keep_backups=settings.keep_backups, database_env=app.database_env,
                  release_commands=app.release_commands)
