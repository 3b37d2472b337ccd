"""Removing an app marked absent: the `destroy` of this stack, one app at a time.

golive stops and removes its supervisor program (`supervisorctl update` drops it), then its
code, config, runtime dir and stamps. Its data (/var/lib/<app>), user and logs stay, unless
the entry says `"purge": True`. The nginx site is rendered without the app's locations and
goes live before the removal, so nginx stops routing to it first.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from wsgistack.config.settings import RemovedApp
from wsgistack.engine.component import Component, GoLive, Stage
from wsgistack.engine.facts import SystemAccount
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.preview import DELETE
from wsgistack.engine.staged import golive
from wsgistack.onhost.golive.layout import AppPaths
from wsgistack.onhost.golive.protocol import account_comment


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
    return tuple(map(str, paths.leftovers() + (paths.purged() if gone.purge else [])))


def removal_command(gone: RemovedApp, seen: HostState) -> str:
    """The go-live command that removes the app, or "" if nothing of it is left."""
    # Only an account the deploy made (its comment says so) is ever removed.
    user_left = gone.purge and seen.get(SystemAccount, user=gone.name).get(
        "comment") == account_comment(gone.name)
    if not seen.get(ExistingPaths, paths=removed_paths(gone)) and not user_left:
        return ""
    return golive("remove", app=gone.name, purge=gone.purge)


class Removal(Component):
    """An app marked absent: removed in the host's batch, once the site no longer routes
    to it."""

    def __init__(self, gone: RemovedApp) -> None:
        self.gone = gone

    def reads(self) -> list[Read]:
        return [Read.of(ExistingPaths, paths=removed_paths(self.gone)),
                Read.of(SystemAccount, user=self.gone.name)]

    def prepare(self, seen: HostState) -> list[GoLive]:
        return [GoLive(f"Remove {self.gone.name}: program, code and config",
                       removal_command(self.gone, seen), Stage.REMOVE, kind=DELETE)]
