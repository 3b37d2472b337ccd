"""Rolling a group out in batches: each batch goes live and passes its health checks before
the next one starts, and the first failure stops the rollout.

Everything that only prepares a host (packages, uploads, new releases, candidate config)
runs on all hosts at once. What changes what users see (switching releases, reloads) runs
in the host's batch. pyinfra orders operations by the order each host calls them, so every
host with something to make live calls the go-live operations of every batch, in batch
order, and they act only in its own batch: the operations of batch 2 then come after the
health checks of batch 1 on every host. (pyinfra's own --serial --fail-percent 0 does not
stop a rollout: pyinfra #1195.)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host, state
from pyinfra.api import StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server

from wsgistack.config.environment import Environment
from wsgistack.config.settings import AppSettings, Settings
from wsgistack.engine import health
from wsgistack.engine.component import GoLive, Stage
from wsgistack.engine.hoststate import HostState
from wsgistack.engine.summary import declare


@dataclass(frozen=True)
class Rollout:
    group: str
    hosts: tuple[str, ...]  # the group's web hosts this run aims at, in inventory order
    batch_size: int

    @classmethod
    def for_group(cls, group: str, batch_size: int) -> Rollout:
        web = {member.name for member in Environment.of(group).web}
        hosts = tuple(each.name for each in state.inventory.get_group(group)
                      if each.name in web and state.is_host_in_limit(each))
        return cls(group, hosts, batch_size)

    @property
    def migrator(self) -> str:
        """The host that migrates a database its environment's hosts share, before any of
        them switches: the first to go live."""
        return self.hosts[0]

    @property
    def batch_count(self) -> int:
        return -(-len(self.hosts) // self.batch_size)

    def batch_of(self, name: str) -> int:
        return self.hosts.index(name) // self.batch_size

    def is_turn_of(self, name: str, batch: int) -> bool:
        return self.batch_of(name) == batch

    def stopped_by(self, name: str, shared: bool = False) -> list[str]:
        """Hosts of earlier batches that failed after connecting, and, where the hosts
        share a database (`shared`), the migrator in any batch: a failed migration
        switches no host. An unreachable host is reported by pyinfra and skipped; it does
        not stop the others."""
        failed = state.failed_hosts & state.activated_hosts
        return sorted(each.name for each in failed if each.name in self.hosts and (
            self.batch_of(each.name) < self.batch_of(name)
            or (shared and each.name == self.migrator != name)))


@operation(is_idempotent=False)
def go_live(commands: list[str], rollout: Rollout, shared: bool = False):
    """Run the golive commands that make prepared changes live (each holds the host's
    deploy lock); refuse, changing nothing, if a host of an earlier batch failed (or the
    migrator, where the hosts share a database)."""
    if not commands:
        return
    stopped_by = rollout.stopped_by(host.name, shared) if state.is_executing else []
    if stopped_by:
        message = (f"rollout of {rollout.group} stopped: {', '.join(stopped_by)} failed;"
                   f" {host.name} keeps what it runs")
        yield StringCommand(f"echo {shlex.quote(message)} >&2; exit 1")
        return
    for command in commands:
        yield StringCommand(command)


IN_BATCH = (Stage.APP, Stage.SITE, Stage.REMOVE)
DATABASE_FIRST = "The environment's database host first: its operations before any go-live"


@operation()
def database_host_first():
    """Changes nothing. Every host of an environment with a database host calls it from the
    same line (deploy.py), so it is one operation they share, which pyinfra orders after
    each host's earlier operations and before its later ones: the database host is
    converged before any web host goes live (a shared database's migration first), however
    few operations the web hosts have left."""
    yield from ()


def only_waits() -> bool:
    """Whether every operation this run calls on the host is database_host_first."""
    return all(state.get_op_meta(op_hash).names <= {DATABASE_FIRST}
               for op_hash in host.op_hash_order)


def previewed(step: GoLive, operation: OperationMeta | None) -> None:
    """The step's operation in the run's preview: what it does to what it makes live."""
    declare(operation, step.kind, resource=False)


def go_live_here(steps: list[GoLive]) -> None:
    """A host outside the rollout (the database host): its steps now, in order."""
    for step in sorted(steps, key=lambda step: step.stage):
        if step.command:
            previewed(step, server.shell(name=step.name, commands=[step.command]))


def go_live_in_batches(settings: Settings, apps: list[AppSettings], steps: list[GoLive],
                       seen: HostState | None = None) -> None:
    """Every batch of the host's group in order: the host runs its steps of each stage in
    its own batch, then its `apps` are health-checked. MIGRATE steps run once, on the
    group's first host, before any batch; LAST steps once every batch is done. A host with
    nothing due is checked at once, with all like it: it has nothing to order against the
    batches, so it calls no go-live operation. If this run calls no operation on it that
    may change it, the health reading taken with `seen` may stand."""
    if not any(step.command for step in steps):
        untouched = seen if only_waits() else None
        for each in apps:
            health.check_app(settings, each, active=True, untouched=untouched)
        return
    rollout = Rollout.for_group(settings.group, settings.rollout_batch_size)
    ordered = sorted(steps, key=lambda step: step.stage)
    for step in (step for step in ordered if step.stage == Stage.MIGRATE):
        previewed(step, go_live(name=step.name, rollout=rollout, shared=step.shared,
                                commands=[step.command] if step.command
                                and host.name == rollout.migrator else []))
    for batch in host.loop(range(rollout.batch_count)):
        turn = rollout.is_turn_of(host.name, batch)
        for step in (step for step in ordered if step.stage in IN_BATCH):
            previewed(step, go_live(name=f"{step.name} (rollout batch {batch + 1})",
                                    rollout=rollout, shared=step.shared,
                                    commands=[step.command] if turn and step.command else []))
        for each in apps:
            health.check_app(settings, each, active=turn)
    for step in (step for step in ordered if step.stage == Stage.LAST):
        previewed(step, go_live(name=step.name, rollout=rollout,
                                commands=[step.command] if step.command else []))
