"""Integration tests run on real sandbox hosts, which need root on the controller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.helpers import (
    Deployment,
    Sandbox,
    deploy,
    footprint,
    provide_production_tls,
    snapshot,
)

# Names and subnets of the tests' own sandboxes, apart from the demo sandbox (demo,
# 10.177.0.0/24), so tests never touch it.
STACK = ("itest", "10.178.0.0/24", "staging=1,production=2")


# Fixtures of the whole session: the modules that use them run in one runner (xdist group).
SESSION_SANDBOX = {"stack_sandbox", "deployment"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark integration tests, and keep each module's tests in one runner (its sandbox is
    the module's), those on the session's stack sandbox all in one."""
    integration = [item for item in items if "tests/integration/" in str(item.path)]
    on_stack = {item.path for item in integration if SESSION_SANDBOX & set(item.fixturenames)}
    for item in integration:
        item.add_marker(pytest.mark.integration)
        item.add_marker(pytest.mark.xdist_group("stack" if item.path in on_stack
                                                else item.path.stem))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop, rather than run a module's tests in several runners at once on one sandbox,
    where pytest-xdist could not group them (it renames node ids: pytest 9 ignores that)."""
    if session.config.getoption("dist", "no") != "loadgroup":
        return
    ungrouped = [item.nodeid for item in session.items
                 if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if ungrouped:
        raise pytest.UsageError(f"pytest-xdist did not group {ungrouped[0]} (and"
                                f" {len(ungrouped) - 1} more): pytest {pytest.__version__}"
                                " with this pytest-xdist cannot run them side by side")


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
    """The controller's secrets dir for the tests' deploys (never the operator's own), with
    the TLS pair a production operator provides, where production looks for it."""
    secrets = tmp_path_factory.mktemp("secrets")
    provide_production_tls(secrets)
    return secrets


@pytest.fixture(scope="session")
def deployment(stack_sandbox: Sandbox, secrets_dir: Path) -> Deployment:
    """A dry run on the bare stack hosts (which must change nothing), a deploy, a second
    deploy (which must change nothing) and a dry run on converged hosts."""
    sandbox = stack_sandbox
    before = snapshot(sandbox)
    bare_staging = footprint(sandbox, sandbox.hosts("staging")[0])
    bare_dry_run = deploy(sandbox, "--dry", secrets_dir=secrets_dir)
    after = snapshot(sandbox)
    first = deploy(sandbox, "-y", secrets_dir=secrets_dir)
    assert first.returncode == 0, first.output[-5000:]
    second = deploy(sandbox, "-y", secrets_dir=secrets_dir)
    converged_dry_run = deploy(sandbox, "--dry", secrets_dir=secrets_dir)
    return Deployment(sandbox, secrets_dir, bare_dry_run, before, after, bare_staging, first,
                      second, converged_dry_run)
