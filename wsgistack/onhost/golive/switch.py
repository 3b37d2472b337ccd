"""The steps that make an app's release live: switch (config, release, graceful gunicorn
swap, put back on failure) and migrate (a shared database, once, before any host switches)."""

from __future__ import annotations

import sys
from pathlib import PurePosixPath

from .appdata import send_off_host
from .backups import backup_database
from .files import (
    Refused,
    Staged,
    content_of,
    link_atomically,
    parse_expect,
    read_link,
    record,
    run,
    say,
    tail,
)
from .layout import AppPaths, app_unit, candidate, herder
from .program import process_info
from .releases import (
    Config,
    app_environment,
    installed,
    load_check,
    prune_releases,
    read_environment,
    run_app_commands,
    run_release_commands,
)
from .users import as_user, user_options


def reload_gunicorn(paths: AppPaths, workers: int, graceful_timeout: int) -> str:
    """Swap the running gunicorn to the live release through gunicorn-herder, which signals
    only the master supervisor's herder runs. The herder runs as the app's user: it reads
    pid files in the app's own run dir, which root never does. Decided by the herder's exit
    status (it watches the new master), never by whether anyone read its output; on
    failure, the end of gunicorn's log (root's to read) says why."""
    info = process_info(paths.name, paths.root)
    if info.get("statename") not in ("RUNNING", "STARTING") or info.get("pid", "0") == "0":
        return f"{paths.name} is not running: supervisor starts the new release"
    swapped = run([sys.executable, "-I", str(herder(paths.root)), "reload",
                   "--pidfile", str(paths.pid_file), "--supervised-pid", info["pid"],
                   "--user", paths.name, "--workers", str(workers),
                   "--graceful-timeout", str(graceful_timeout)],
                  cwd="/", **user_options(paths.name))
    if swapped.returncode != 0:
        said = tail(swapped.stderr or swapped.stdout, 20) or "gunicorn-herder failed"
        log = tail((content_of(paths.stderr_log) or b"").decode(errors="replace"), 15)
        raise Refused(said + (f"\n{paths.stderr_log}:\n{log}" if log else ""))
    return swapped.stdout.strip()


def switch(root: PurePosixPath, app: str, version: str, config: str | None,
           config_env: str | None, prefix: str, workers: int, graceful_timeout: int,
           keep_releases: int, keep_backups: int, expect: list[str],
           release_commands: list[list[str]], shared_database: bool = False) -> None:
    """With `shared_database` the data is the environment's, backed up and migrated once
    for all its hosts (`golive migrate`): this host does neither."""
    paths, own = AppPaths(app, root), Config(config, config_env)
    unit = app_unit(paths, own.name)
    release = f"releases/{version}"
    installed(paths, version)
    staged = Staged.verified(unit, parse_expect(expect))
    try:
        load_check(paths, staged, version, own, prefix)
        previous = read_link(paths.current)
        if previous != release and (sent := send_off_host(root, paths.name)):
            say(sent)
        if previous != release and not shared_database:
            as_user(paths.name, lambda: backup_database(paths, version, keep_backups))
            run_release_commands(paths, staged, version, own, prefix, release_commands)
        staged.make_live()
        link_atomically(paths.current, release)
        try:
            say(reload_gunicorn(paths, workers, graceful_timeout))
        except Refused:
            staged.put_back()
            if previous:
                link_atomically(paths.current, previous)
            raise
    finally:
        staged.clean_up()
    record(unit)
    for removed in prune_releases(paths, keep_releases):
        say(f"removed the old release {paths.name} {removed}")
    say(f"{paths.name} {version} is live")


def migrate(root: PurePosixPath, app: str, version: str, config: str | None,
            config_env: str | None, prefix: str, keep_backups: int, database_env: str | None,
            release_commands: list[list[str]]) -> None:
    """For an environment whose hosts share the app's database, once, on one host, before
    any switches: back up the database (pg_dump, as the app's user), then run the release
    commands with the new release and its candidate config and environment. A failure
    leaves every host on the release it runs."""
    paths = AppPaths(app, root)
    installed(paths, version)
    environment = {**read_environment(candidate(paths.env_file)),
                   **app_environment(paths, version, Config(config, config_env), ".next",
                                     prefix)}
    url = environment.get(database_env, "") if database_env else ""
    as_user(paths.name, lambda: backup_database(paths, version, keep_backups, url))
    run_app_commands(paths, version, environment, release_commands, "release command",
                     "no host was switched")
    say(f"{paths.name} {version}: the environment's database is migrated")
