"""What the operator reads when an operation fails."""

from __future__ import annotations

import logging

import pytest

from wsgistack.engine.changes import say_what_failed


def test_a_failed_step_closes_with_failed_not_executed_0_commands(
        caplog: pytest.LogCaptureFixture) -> None:
    say_what_failed()
    say_what_failed()  # once, however often asked
    logger = logging.getLogger("pyinfra")
    with caplog.at_level(logging.ERROR, logger="pyinfra"):
        logger.error("    [web1] Error: executed 0 commands")
        logger.error("    [web1] Error: executed 2 commands")
    assert [record.getMessage() for record in caplog.records] == [
        "    [web1] Error: failed", "    [web1] Error: executed 2 commands"]
    assert len(logger.filters) == 1
