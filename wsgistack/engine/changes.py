"""Gating follow-up operations on the operations that trigger them, and refusing outright."""

from __future__ import annotations

import logging
import shlex

from pyinfra.api import StringCommand, operation
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operation import OperationMeta


class OperatorError(PyinfraError):
    """What the operator must fix (bad settings, an app that does not build): pyinfra
    prints the message alone, with no place in this project's code before it, as it does
    for an exception without a traceback."""

    @property  # type: ignore[override]
    def __traceback__(self) -> None:  # what pyinfra reads to name a file and line
        return None

    @__traceback__.setter
    def __traceback__(self, _traceback: object) -> None:
        pass


def will_change(*ops: OperationMeta | None) -> bool:
    """True when any op is planned to change the host.

    A follow-up is planned only then, so a dry run lists exactly what a real run does.
    """
    return any(op.will_change for op in ops if op is not None)


@operation(is_idempotent=False)
def refuse(message: str):
    """Fail this host, changing nothing, with one line saying why and what to do."""
    yield StringCommand(f"echo {shlex.quote(message)} >&2; exit 1")


class SaysWhatFailed(logging.Filter):
    """pyinfra closes every failed operation with "Error: executed 0 commands" when its
    first command failed, though that command ran (golive, certbot) and said why on the
    lines just above: the operator reads "failed" there instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.endswith("executed 0 commands"):
            record.msg = record.msg.removesuffix("executed 0 commands") + "failed"
        return True


def say_what_failed() -> None:
    """Install SaysWhatFailed on pyinfra's logger (once)."""
    logger = logging.getLogger("pyinfra")
    if not any(isinstance(each, SaysWhatFailed) for each in logger.filters):
        logger.addFilter(SaysWhatFailed())
