"""The deploy summary: a line per app and host (its URL, version and health), a line per
database host, and each targeted host pyinfra could not reach or that failed first.

It belongs to the run: deploy.py takes it from pyinfra's state (`Summary.of`), the health
checks and the database host note into it as they execute, and it prints once pyinfra has
disconnected from the last host, after its own results, after the run's changes
(wsgistack.engine.preview). A dry run prints the preview of those changes alone.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import TypeVar

from pyinfra import host as current_host
from pyinfra import state as current_state
from pyinfra.api import State
from pyinfra.api.operation import OperationMeta
from pyinfra.api.state import BaseStateCallback

from wsgistack.engine.preview import Preview

Callback = TypeVar("Callback", bound=BaseStateCallback)


@dataclass(frozen=True)
class CheckResult:
    host: str
    app: str
    check: str  # "through nginx", "on gunicorn"
    url: str  # the app's public URL and the host's address
    version: str
    healthy: bool
    detail: str


def run_callback(state: State, kind: type[Callback]) -> Callback:
    """The run's one `kind` of callback: made, and handed to pyinfra, by the first host
    that asks; each later one gets the same."""
    for handler in state.callback_handlers:
        if isinstance(handler, kind):
            return handler
    made = kind()
    state.add_callback_handler(made)
    return made


@dataclass
class Summary(BaseStateCallback):
    """What this run found, by host; printed when pyinfra disconnects from the last one."""

    results: list[CheckResult] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)  # database, backup host -> what it is
    notes: dict[str, str] = field(default_factory=dict)  # web host -> e.g. its backups
    disconnected: set[str] = field(default_factory=set)
    preview: Preview = field(default_factory=Preview)
    title: str = "Deploy summary"  # what the run was, e.g. "Destroy summary"

    @classmethod
    def of(cls, state: State) -> Summary:
        """The run's summary: made, and handed pyinfra's callbacks, by the first host."""
        return run_callback(state, cls)

    def add(self, result: CheckResult) -> None:
        self.results.append(result)

    def role(self, name: str, what: str) -> None:
        """A database or backup host has no health checks of its own: the summary says what
        it is, and whether its deploy failed (the apps' checks on the web hosts say whether
        the database serves)."""
        self.roles[name] = what

    def add_to_role(self, name: str, what: str) -> None:
        """More of what a database or backup host is, e.g. how its archiving fares."""
        self.roles[name] = "; ".join(filter(None, [self.roles.get(name), what]))

    def note(self, name: str, what: str) -> None:
        """A line more for a web host, after its apps' (e.g. when its data was backed up)."""
        self.notes[name] = what

    def host_disconnect(self, state: State, host: object) -> None:  # pyinfra's callback
        self.disconnected.add(host.name)
        if self.disconnected >= {each.name for each in state.activated_hosts}:
            hosts = [each for each in state.inventory if each in state.activated_hosts]
            print(self.preview.text(state, hosts))
            if state.is_executing:
                print(self.text(state))
            # The run is over. On its way out Python would sweep every object the run made
            # for garbage (about 50 ms for 3 hosts, a no-op's twelfth): none of them is
            # worth it, so they are moved out of the collector's reach.
            gc.freeze()

    def text(self, state: State) -> str:
        """The summary's lines, by host."""
        failed = {each.name for each in state.failed_hosts}
        active = {each.name for each in state.activated_hosts}
        targets = sorted(each.name for each in state.inventory if state.is_host_in_limit(each))
        return "\n".join([f"\n--> {self.title}",
                          *(self.line(name, name in active, name in failed)
                            for name in targets)])

    def line(self, name: str, connected: bool, failed: bool) -> str:
        if name in self.roles:
            return (f"    {name}: {self.roles[name]}"
                    f"  {'FAILED (see above)' if failed else 'ok'}")
        checks = [each for each in self.results if each.host == name]
        if not checks:
            reason = ("failed before its health checks (see above)" if connected
                      else "UNREACHABLE: not deployed")
            return f"    {name}: {reason}"
        lines = []
        for app in sorted({each.app for each in checks}):
            ran = [each for each in checks if each.app == app]
            detail = "healthy" if all(each.healthy for each in ran) and len(ran) == 2 else \
                "; ".join(f"{each.check}: {each.detail}" for each in ran if not each.healthy)
            lines.append(f"    {name}: {ran[0].url}  {app} {ran[0].version}  {detail}")
        if name in self.notes:
            lines.append(f"    {name}: {self.notes[name]}")
        return "\n".join(lines)


def declare(operation: OperationMeta | None, kind: str, resource: bool = True
            ) -> OperationMeta | None:
    """What `operation` does to its resource, for the run's preview (wsgistack.engine.preview:
    create, update, replace, delete; `resource` False for a go-live step); the operation,
    for its caller."""
    Summary.of(current_state).preview.declare(current_host.name, operation, kind, resource)
    return operation


def in_place() -> None:
    """One resource more that this host has as declared."""
    Summary.of(current_state).preview.in_place(current_host.name)
