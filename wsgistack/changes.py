"""Gating follow-up operations on the operations that trigger them, and refusing outright."""

from __future__ import annotations

import shlex

from pyinfra.api import StringCommand, operation
from pyinfra.api.operation import OperationMeta


def will_change(*ops: OperationMeta | None) -> bool:
    """True when any op is planned to change the host.

    A follow-up is planned only then, so a dry run lists exactly what a real run does.
    """
    return any(op.will_change for op in ops if op is not None)


@operation(is_idempotent=False)
def refuse(message: str):
    """Fail this host, changing nothing, with one line saying why and what to do."""
    yield StringCommand(f"echo {shlex.quote(message)} >&2; exit 1")
