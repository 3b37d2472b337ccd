"""Integration tests run on real sandbox hosts, which need root on the controller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.helpers import Sandbox

# Names and subnets of the tests' own sandboxes, apart from the demo sandbox (demo,
# 10.177.0.0/24), so tests never touch it.
STACK = ("itest", "10.178.0.0/24", "staging=1,production=2")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("integration tests create sandbox hosts and need root: run `make test` as"
                    " root, or `make unit` for the offline tests only", pytrace=False)


@pytest.fixture(scope="session")
def stack_sandbox() -> Sandbox:
    """Bare bookworm hosts like the inventory's: 1 staging, 2 production."""
    sandbox = Sandbox.up(*STACK)
    yield sandbox
    sandbox.down()


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The controller's secrets dir for the tests' deploys (never the operator's own)."""
    return tmp_path_factory.mktemp("secrets")
