"""What a run creates, updates, replaces and deletes on each host, as `pulumi preview` and
`pulumi up` say it: a line per resource changed, named as its operation is, and the counts,
"no changes, N resources unchanged" on a converged host.

The kind of each change is declared where its operation is made (`declare`): a managed
item the host lacks is created, one that differs is updated, an absent one deleted
(wsgistack.engine.managed.ensure); packages and accounts are created; any other operation
that changes the host (a go-live step, a service started) is an update. A dry run counts
the operations that would change the host; a real run, those that did: the same plan, so
the same numbers where the host did what the plan read (the tests compare them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pyinfra.api import Host, State
from pyinfra.api.operation import OperationMeta
from pyinfra.context import ctx_host, ctx_state

CREATE, UPDATE, REPLACE, DELETE = "create", "update", "replace", "delete"
KINDS = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-"}
AS_DONE = {CREATE: "created", UPDATE: "updated", REPLACE: "replaced", DELETE: "deleted"}


@dataclass
class Preview:
    """The run's changes by host, from the operations pyinfra holds."""

    # (host, operation hash) -> its kind there: one operation creates a file on one host and
    # updates it on another
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    resources: set[tuple[str, str]] = field(default_factory=set)  # ...that apply a resource
    unchanged: Counter[str] = field(default_factory=Counter)  # host -> resources in place

    def declare(self, host_name: str, operation: OperationMeta | None, kind: str,
                resource: bool) -> None:
        """`resource`: the operation applies one (a file, a package), which counts as
        unchanged where it changes nothing; not a step that makes others live."""
        if operation is not None:
            self.kinds.setdefault((host_name, operation._hash), kind)
            if resource:
                self.resources.add((host_name, operation._hash))

    def in_place(self, host_name: str) -> None:
        self.unchanged[host_name] += 1

    def changes(self, state: State, host: Host) -> dict[str, tuple[str, str]]:
        """Each operation that changes the host, by hash: (kind, resource). What would change
        (a dry run) or did (a real one, as far as it went)."""
        found = {}
        with ctx_state.use(state), ctx_host.use(host):
            for op_hash in host.op_hash_order:
                meta = state.get_op_data_for_host(host, op_hash).operation_meta
                if state.is_executing:
                    changed = meta.is_complete() and meta.did_change()
                else:
                    changed = meta.will_change
                if changed:
                    found[op_hash] = (self.kinds.get((host.name, op_hash), UPDATE),
                                      ", ".join(sorted(state.get_op_meta(op_hash).names)))
        return found

    def counts(self, state: State, host: Host) -> tuple[Counter[str], int, list[str]]:
        """The host's changes by kind, its resources left as they were (items found in place,
        declared operations that change nothing), and a line per change."""
        changes = self.changes(state, host)
        unchanged = self.unchanged[host.name] + sum(
            1 for op_hash in host.op_hash_order
            if (host.name, op_hash) in self.resources and op_hash not in changes)
        return (Counter(kind for kind, _ in changes.values()), unchanged,
                [f"{KINDS[kind]} {name}" for kind, name in changes.values()])

    def text(self, state: State, hosts: list[Host]) -> str:
        done = state.is_executing
        lines = ["\n--> " + ("Changes made" if done else "Preview: what a real run changes")]
        total: Counter[str] = Counter()
        unchanged_in_all = 0
        for each in hosts:
            counts, unchanged, changed = self.counts(state, each)
            total.update(counts)
            unchanged_in_all += unchanged
            lines.append(f"    {each.name}: {counted(counts, unchanged, done)}")
            lines += [f"        {line}" for line in changed]
        lines.append(f"    in all: {counted(total, unchanged_in_all, done)}")
        return "\n".join(lines)


def counted(counts: Counter[str], unchanged: int, done: bool) -> str:
    """e.g. "3 to create, 2 to update, 41 unchanged"; "no changes, 41 resources unchanged"."""
    if not counts:
        return f"no changes, {unchanged} resources unchanged"
    said = [f"{counts[kind]} {AS_DONE[kind] if done else 'to ' + kind}" for kind in KINDS
            if counts[kind]]
    return ", ".join([*said, f"{unchanged} unchanged"])
