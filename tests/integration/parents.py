"""Every path the deploy manages or golive touches, and the check that no directory above
one of them is writable by a user other than root (who could swap what lies below it for a
link while root acts on it). The paths are taken from the code that declares them (the
stack's managed items, golive's layout and units) for group data's apps, so a new path is
covered the day it is declared.

A path that root may reach only as its owner (or through that owner's process) is on an
explicit list, with the one user whose dir it sits in.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from tests.unit.test_settings import group_data
from wsgistack.components import appdata, archiving, backup, base, database, stack
from wsgistack.config.environment import Environment, Member
from wsgistack.config.settings import Settings, load_settings
from wsgistack.onhost.golive import layout
from wsgistack.onhost.golive.layout import ROOT, AppPaths, Unit

# Prints each path whose parent chain holds a dir (or link) another user could write, with
# that dir and its owner. Missing dirs (a path this host does not have) are passed over.
UNSAFE_PARENTS = r"""
import os, pwd, stat, sys
for path in sys.stdin.read().split():
    parent = os.path.dirname(path)
    while parent != "/":
        try:
            info = os.lstat(parent)
        except FileNotFoundError:
            parent = os.path.dirname(parent)
            continue
        others = info.st_mode & 0o002 or (info.st_mode & 0o020 and info.st_gid != 0)
        if info.st_uid != 0 or others:
            print(path, parent, pwd.getpwuid(info.st_uid).pw_name)
            break
        parent = os.path.dirname(parent)
"""


def layout_settings() -> Settings:
    """Group data's apps and site, whose paths are the same in every environment (staging's
    values need no operator's pair or secret)."""
    return load_settings({**group_data("staging"), "secrets_dir": "/nonexistent"}, "staging")


def unit_paths(unit: Unit) -> list[PurePosixPath]:
    """What golive reads and writes for a unit: each file, its candidate, its staged and
    previous copies, the links and listing it reads, and its stamp."""
    return [*(path.with_name(path.name + suffix) for path in unit.files
              for suffix in ("", ".next", ".new", ".prev")),
            *unit.links, *filter(None, [unit.listing]), unit.stamp]


def app_paths(paths: AppPaths, config: str | None) -> list[PurePosixPath]:
    release = paths.release("1.0.0")
    return [paths.home, paths.releases, paths.current, paths.wheelhouse, paths.wheels,
            release.path, release.venv, release.build, release.wheels, release.installed_marker,
            release.static(0),
            paths.config_dir, paths.data, paths.build_scratch, paths.run_dir, paths.pid_file,
            paths.supervisor_program, paths.stdout_log, paths.stderr_log, paths.tmpfiles,
            paths.nginx_access_log, paths.nginx_error_log,
            *unit_paths(layout.app_unit(paths, config)), *unit_paths(layout.program_unit(paths))]


def web_host_paths(settings: Settings) -> list[str]:
    secrets = {app.name: {name: "x" * 40 for name in (*app.secret_env, database.PASSWORD)}
               for app in settings.apps}
    where = Environment(settings.group, (Member("web1", "10.9.0.2"),),
                        Member("db1", "10.9.0.6"))
    managed = stack.managed(stack.web_host(settings, where, secrets))
    site = settings.site_name
    touched = [*(PurePosixPath(item.path) for item in managed),
               *(path for app in settings.apps
                 for path in app_paths(AppPaths(app.name), app.config_name)),
               *unit_paths(layout.site_unit(site)), *unit_paths(layout.certificate_unit(site)),
               layout.lock_dir(ROOT) / "deploy.lock", layout.acme_webroot(ROOT),
               *layout.lineage(site, ROOT), layout.renewal_config(site, ROOT),
               layout.database_ca(ROOT), *app_data_paths(settings), *records()]
    return sorted(set(map(str, touched)))


def records() -> list[PurePosixPath]:
    """On every host: the deploy's records of what its installs gained (destroy's)."""
    return [layout.installed_packages(ROOT), layout.installed_accounts(ROOT),
            layout.installed_paths(ROOT)]


def app_data_paths(settings: Settings) -> list[PurePosixPath]:
    """With a backup host, restic's (named here: their content needs the inventory)."""
    directory = layout.backup_dir(ROOT)
    return [directory, directory / "ssh_key", directory / "known_hosts",
            *unit_paths(layout.app_backups_unit()),
            *(layout.data_sent(app.name) for app in settings.apps), layout.restic_cache(ROOT),
            *(base.UNIT_DIR / name for name in (appdata.SERVICE, appdata.TIMER))]


def database_host_paths(view: database.DatabaseView) -> list[str]:
    """With archiving's own, named here: its files' content needs the controller's
    inventory, which this list does without."""
    directory = layout.backup_dir(ROOT)
    touched = [*(PurePosixPath(item.path) for item in database.DatabaseServer(view).managed()),
               *unit_paths(layout.database_unit()), layout.database_backups(ROOT),
               layout.lock_dir(ROOT) / "deploy.lock",
               *(layout.postgresql_include(version, ROOT)
                 for version in database.POSTGRESQL.values()),
               directory, directory / "ssh_key", directory / "known_hosts",
               *unit_paths(layout.archiving_unit()), layout.repository_mount(ROOT),
               *(base.UNIT_DIR / name for name in archiving.UNITS), *records()]
    return sorted(set(map(str, touched)))


def backup_host_paths(senders: list[backup.Sender]) -> list[str]:
    touched = [*(path for sender in senders for path in (
                   layout.backup_store(ROOT, sender.store),
                   layout.backup_store(ROOT, sender.store) / "repository",
                   backup.AUTHORIZED_KEYS / sender.account)),
               *unit_paths(layout.backup_store_unit()), layout.lock_dir(ROOT) / "deploy.lock",
               *records()]
    return sorted(set(map(str, touched)))


def handled_by_their_owner(settings: Settings) -> dict[str, str]:
    """Paths root reaches only as the user whose dir they sit in (golive's as_user, the
    herder run as the app's user), each with that user."""
    owned = {}
    for app in settings.apps:
        paths = AppPaths(app.name)
        owned.update({str(path): app.name for path in (
            paths.backups, paths.database, paths.pid_file,
            *(paths.data_dir(name) for name in app.data_dirs))})
    for version in database.POSTGRESQL.values():
        owned[str(layout.postgresql_include(version, ROOT))] = "postgres"
    return owned


def unsafe(found: str, owned: dict[str, str]) -> list[str]:
    """UNSAFE_PARENTS' lines, less those of paths handled by the owner of the dir found."""
    lines = []
    for line in found.splitlines():
        path, _parent, owner = line.split()
        if owned.get(path) != owner:
            lines.append(line)
    return lines
