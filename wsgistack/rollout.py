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
from dataclasses import dataclass, field

from pyinfra import host, state
from pyinfra.api import StringCommand, operation

from wsgistack import health
from wsgistack.environment import Environment
from wsgistack.hoststate import HostState
from wsgistack.settings import AppSettings, Settings


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


@dataclass(frozen=True)
class AppStep:
    """What going live means for one app on this host: golive commands, "" for nothing."""

    app: AppSettings  # the version it goes live with
    switch: str = ""  # config, release and gunicorn swap (app.switch_command)
    program: str = ""  # the supervisor program (supervisor.prepare_program)
    migrate: str = ""  # the environment's shared database (app.migrate_command)
    shared: bool = False  # its data is the environment's database, shared by its hosts


@dataclass(frozen=True)
class Plan:
    """Everything this host makes live, in its batch."""

    apps: list[AppStep]
    site: str = ""  # the nginx site (nginx.prepare_site)
    certificate: str = ""  # the site's certificate from an ACME CA (acme.prepare_certificate)
    removals: list[tuple[str, str]] = field(default_factory=list)  # (app, removal command)

    @property
    def due(self) -> bool:
        return any([self.site, self.certificate,
                    *(s.switch or s.program or s.migrate for s in self.apps),
                    *(command for _name, command in self.removals)])


def go_live_in_batches(settings: Settings, plan: Plan, seen: HostState | None = None) -> None:
    """Every batch of the host's group in order; the host acts in its own batch, then its
    apps are health-checked. A host with nothing due is checked at once, with all like it:
    it has nothing to order against the batches, so it calls no go-live operation. If this
    run calls no operation on it that may change it, the health reading taken with `seen`
    may stand."""
    if not plan.due:
        untouched = seen if only_waits() else None
        for each in plan.apps:
            health.check_app(settings, each.app, active=True, untouched=untouched)
        return
    rollout = Rollout.for_group(settings.group, settings.rollout_batch_size)
    for each in (step for step in plan.apps if step.shared):
        go_live(name=f"Migrate {each.app.name}'s {settings.group} database for"
                     f" {each.app.version}: backup, release commands, before any host switches",
                commands=[each.migrate] if each.migrate and host.name == rollout.migrator
                else [], rollout=rollout, shared=each.shared)
    for batch in host.loop(range(rollout.batch_count)):
        turn = rollout.is_turn_of(host.name, batch)
        step = f"(rollout batch {batch + 1})"

        def mine(command: str, turn: bool = turn) -> list[str]:
            return [command] if turn and command else []

        for each in plan.apps:
            go_live(name=f"Switch {each.app.name} to {each.app.version}: load check,"
                         f" graceful reload {step}", commands=mine(each.switch), rollout=rollout,
                    shared=each.shared)
            go_live(name=f"Apply the {each.app.name} supervisor program {step}",
                    commands=mine(each.program), rollout=rollout)
        go_live(name=f"Apply the {settings.site_name} nginx site: nginx -t, reload {step}",
                commands=mine(plan.site), rollout=rollout)
        for name, command in plan.removals:
            go_live(name=f"Remove {name}: program, code and config {step}",
                    commands=mine(command), rollout=rollout)
        for each in plan.apps:
            health.check_app(settings, each.app, active=turn)
    if not settings.acme:
        return
    # Once every host's site is live: the CA may check any host's challenge on any of them.
    go_live(name=f"Obtain the {settings.site_name} certificate from {settings.acme_directory}"
                 " where due (certbot, HTTP-01); make it live: nginx -t, reload",
            commands=[plan.certificate] if plan.certificate else [], rollout=rollout)
