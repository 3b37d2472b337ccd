"""An app's installed releases, and what a release runs with before it is live: its
environment, its load check and its release commands, as the app's user."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from .files import Refused, Staged, read_link, remove_path, run, say, tail
from .layout import AppPaths
from .users import user_options

RELEASE_COMMAND_TIMEOUT = 900  # seconds one release or build command may take


def installed_releases(paths: AppPaths) -> tuple[list[str], list[str]]:
    """(complete releases oldest first, by their marker's time; incomplete ones)."""
    complete, incomplete = [], []
    with contextlib.suppress(FileNotFoundError), os.scandir(paths.releases) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                marker = os.lstat(paths.release(entry.name).installed_marker)
                complete.append((marker.st_mtime_ns, entry.name))
            except FileNotFoundError:
                incomplete.append(entry.name)
    return [name for _time, name in sorted(complete)], sorted(incomplete)


def prune_releases(paths: AppPaths, keep: int) -> list[str]:
    """Remove all but the newest `keep` complete releases, never the live one, and every
    release whose install never finished, then the stored wheels no release holds.
    Returns the releases it removed."""
    complete, incomplete = installed_releases(paths)
    live = PurePosixPath(read_link(paths.current)).name
    removed = [name for name in complete[:max(len(complete) - keep, 0)] + incomplete
               if name != live]
    for name in removed:
        remove_path(paths.release(name).path)
    prune_wheels(paths)
    return removed


def prune_wheels(paths: AppPaths) -> None:
    """Remove each stored wheel that no release links to (its only link is the store's)."""
    with contextlib.suppress(FileNotFoundError), os.scandir(paths.wheels) as entries:
        for entry in entries:
            held = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and held.st_nlink == 1:
                os.unlink(entry.path)


def read_environment(path: PurePosixPath) -> dict[str, str]:
    """The variables of an app's env file (NAME=<JSON string> lines), as gunicorn.conf.py
    loads them."""
    variables = {}
    with open(path) as env:
        for line in env:
            name, _, value = line.rstrip("\n").partition("=")
            if name and not name.startswith("#"):
                variables[name] = json.loads(value)
    return variables


@dataclass(frozen=True)
class Config:
    """The app's own config file, if any (`name` in /etc/<app>/), and the variable that
    names it to the app."""

    name: str | None = None
    env: str | None = None


def app_environment(paths: AppPaths, version: str, config: Config,
                    suffix: str, prefix: str) -> dict[str, str]:
    """What the new release runs with before it is live: its config file as `suffix`
    (".next", the candidate; ".new", as staged), the prefix, and the app's own home, user
    and tools (the release's venv first on PATH)."""
    own = {config.env: f"{paths.config(config.name)}{suffix}"} if config.name else {}
    return {**own, "SCRIPT_NAME": prefix,
            "HOME": str(paths.data), "USER": paths.name, "LANG": "C.UTF-8",
            "PATH": f"{paths.release(version).venv}/bin:/usr/local/bin:/usr/bin:/bin"}


def load_check(paths: AppPaths, staged: Staged, version: str, config: Config,
               prefix: str) -> None:
    """Import the new release with the staged config, as the app's user, from the
    release's own (root-owned) directory: what gunicorn will load, before it is live."""
    release = paths.release(version)
    gunicorn = release.venv / "bin/gunicorn"
    try:
        checked = run([str(release.venv / "bin/python"), str(gunicorn), "--check-config",
                       "--config", str(staged.new(paths.gunicorn_config))],
                      env=app_environment(paths, version, config, ".new", prefix),
                      cwd=release.path, **user_options(paths.name))
    except OSError as error:
        raise Refused(f"{paths.name} {version} failed its load check; nothing was switched:"
                      f" {gunicorn}: {error.strerror}") from None
    if checked.returncode != 0:
        raise Refused(f"{paths.name} {version} failed its load check; nothing was switched:\n"
                      + tail(checked.stdout + checked.stderr, 25))


def run_app_commands(paths: AppPaths, version: str, environment: dict[str, str],
                     commands: list[list[str]], kind: str, outcome: str,
                     options: dict[str, object] | None = None) -> None:
    """Each command, in order, as the app's user (or as `options` say), in the release's
    dir, with `environment`; the first failure refuses, saying `kind` ("release command")
    and `outcome` ("nothing was switched")."""
    options = user_options(paths.name) if options is None else options
    for argv in commands:
        shown = " ".join(argv)
        refused = f"{paths.name} {version}: the {kind} `{shown}`"
        try:
            done = run(argv, env=environment, cwd=paths.release(version).path,
                       timeout=RELEASE_COMMAND_TIMEOUT, **options)
        except OSError as error:
            raise Refused(f"{refused} could not run ({error.strerror}); {outcome}") from None
        except TimeoutError:
            raise Refused(f"{refused} took over {RELEASE_COMMAND_TIMEOUT}s; {outcome}") from None
        if done.returncode != 0:
            raise Refused(f"{refused} failed (exit {done.returncode}); {outcome}:\n"
                          + tail(done.stdout + done.stderr, 25))
        say(f"ran {shown}")


def run_release_commands(paths: AppPaths, staged: Staged, version: str, config: Config,
                         prefix: str, commands: list[list[str]]) -> None:
    """The release commands (e.g. a migration), with the new release and its staged config
    and environment."""
    environment = {**read_environment(staged.new(paths.env_file)),
                   **app_environment(paths, version, config, ".new", prefix)}
    run_app_commands(paths, version, environment, commands, "release command",
                     "nothing was switched")


def installed(paths: AppPaths, version: str) -> None:
    if not os.path.isfile(paths.release(version).installed_marker):
        raise Refused(f"{paths.name} {version} is not installed on this host")


def releases(root: PurePosixPath, app: str) -> None:
    """What rollback.py chooses from and what `switch` prunes by; a read."""
    print("\n".join(installed_releases(AppPaths(app, root))[0]))
