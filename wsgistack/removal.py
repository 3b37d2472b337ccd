"""Removing an app marked absent: the `destroy` of this stack, one app at a time.

Its supervisor program is stopped and removed (`supervisorctl update` drops it), then its
code, config, runtime dir and stamps. Its data (/var/lib/<app>), user and logs stay, unless
the entry says `"purge": True`. The nginx site is rendered without the app's locations and
goes live before the removal, so nginx stops routing to it first.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from wsgistack.facts import SystemAccount
from wsgistack.hoststate import HostState, Read
from wsgistack.paths import AppPaths
from wsgistack.settings import RemovedApp
from wsgistack.staged import STAMPS, candidate


def leftovers(paths: AppPaths) -> list[str]:
    """What the app leaves on a host when removed without purge."""
    return [str(path) for path in (
        paths.home, paths.config_dir, paths.supervisor_program,
        candidate(paths.supervisor_program), paths.tmpfiles, paths.run_dir,
        f"{STAMPS}/app-{paths.name}", f"{STAMPS}/supervisor-{paths.name}")]


def purged(paths: AppPaths) -> list[str]:
    """What a purge removes as well: the data and the logs."""
    return [str(paths.data), str(paths.stdout_log), str(paths.stderr_log),
            f"/var/log/nginx/{paths.name}.access.log", f"/var/log/nginx/{paths.name}.error.log"]


class ExistingPaths(FactBase[list[str]]):
    """Which of the paths exist on the host."""

    default = list

    def command(self, paths: tuple[str, ...]) -> str:
        return " ".join(["for path in", *map(shlex.quote, paths),
                         "; do if [ -e \"$path\" ] || [ -L \"$path\" ]; then echo \"$path\";"
                         " fi; done"])

    def process(self, output: list[str]) -> list[str]:
        return output


def removed_paths(gone: RemovedApp) -> tuple[str, ...]:
    paths = AppPaths(gone.name)
    return tuple(leftovers(paths) + (purged(paths) if gone.purge else []))


def probes(gone: RemovedApp) -> list[Read]:
    return [Read.of(ExistingPaths, paths=removed_paths(gone)),
            Read.of(SystemAccount, user=gone.name)]


def removal_script(gone: RemovedApp, seen: HostState) -> str:
    """The go-live script that removes the app, or "" if nothing of it is left."""
    paths = AppPaths(gone.name)
    remove = removed_paths(gone)
    user_left = gone.purge and "gid" in seen.get(SystemAccount, user=gone.name)
    if not seen.get(ExistingPaths, paths=remove) and not user_left:
        return ""
    name = shlex.quote(gone.name)
    lines = [
        f"supervisorctl stop {name} >/dev/null 2>&1 || true",
        f"rm -f {paths.supervisor_program} {candidate(paths.supervisor_program)}",
        "supervisorctl reread >/dev/null",
        f"supervisorctl update {name} >/dev/null 2>&1 || true",
        "rm -rf " + " ".join(map(shlex.quote, remove)),
    ]
    if gone.purge:
        lines.append(f"if id -u {name} >/dev/null 2>&1; then userdel {name}; fi")
        lines.append(f"if getent group {name} >/dev/null; then groupdel {name}; fi")
    return "\n".join(lines)
