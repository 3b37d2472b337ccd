"""Gating follow-up operations (reloads, restarts) on the operations that trigger them."""

from __future__ import annotations

from pyinfra.api.operation import OperationMeta


def will_change(*ops: OperationMeta | None) -> bool:
    """True when any op is planned to change the host.

    A follow-up is planned only then, so a dry run lists exactly what a real run does; it
    also carries `_if` on the same ops' real outcome, checked when it runs.
    """
    return any(op.will_change for op in ops if op is not None)
