"""A component: one part of the stack on a host, with the one interface every phase uses.

- `managed()`: the paths and files it manages, as data (wsgistack.engine.managed);
- `reads()`: the facts of its own it compares against;
  both are read from the host in one command (wsgistack.components.stack) before anything is
  compared;
- `packages()`: Debian packages it needs besides the base ones;
- `prepare(seen)`: make the host what it declares where `seen` differs (pyinfra's
  operations: packages, uploads, new releases, candidate config), and return its go-live
  steps: the golive commands that make the prepared changes live, in the rollout;
- `teardown(purge)` and `accounts()`: what destroy takes back off (wsgistack.engine.teardown):
  by default every path it manages.

The components of a host are listed once, in wsgistack.components.stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Managed
from wsgistack.engine.preview import UPDATE


class Stage(IntEnum):
    """When a go-live step runs in the rollout (wsgistack.engine.rollout), in this order."""

    MIGRATE = 0  # once, on the first host to go live, before any host switches
    APP = 1  # in the host's batch: each app's switch and program
    SITE = 2  # in the host's batch, once its apps are live: the nginx site
    REMOVE = 3  # in the host's batch, once the site no longer routes to them: removals
    LAST = 4  # once every batch is live: the site's certificate from an ACME CA


@dataclass(frozen=True)
class Account:
    """An account the deploy made, marked by its comment: destroy removes it only where the
    comment still says so."""

    user: str
    comment: str


@dataclass(frozen=True)
class GoLive:
    """A go-live step. Every host of a group declares the same steps in the same order
    (pyinfra orders operations by the order hosts call them); `command` is "" on a host
    where nothing is due."""

    name: str  # the operation's name, for the operator
    command: str
    stage: Stage
    shared: bool = False  # the app's data is the environment's: a failed migration stops it
    kind: str = UPDATE  # what it does to its resource, for the run's preview


class Component:
    """One part of the stack on a host; a part without a phase declares nothing in it."""

    title = ""  # the deploy's name in pyinfra's output

    def managed(self) -> list[Managed]:
        return []

    def reads(self) -> list[Read]:
        return []

    def packages(self) -> tuple[str, ...]:
        return ()

    def installs_packages(self, seen: HostState) -> bool:
        """Whether preparing it installs packages: then the host read may be stale (packages
        make paths of their own), and every item is applied and checked live."""
        return False

    def prepare(self, seen: HostState) -> list[GoLive]:
        return []

    def teardown(self, purge: bool) -> list[Managed | str]:
        """What destroy takes off: its managed items (a candidate with its live file), and
        paths of its own besides; data only with `purge`."""
        return self.managed()

    def accounts(self, purge: bool) -> list[Account]:
        """The accounts it makes, which destroy removes (one that owns data, with purge)."""
        return []
