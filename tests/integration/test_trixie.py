"""Debian 13 (trixie) hosts get the same stack: deploy, HTTP through nginx, zero changes
again; and, on a database host of their environment, Debian 13's PostgreSQL (17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import Sandbox, deploy, http

PREFIX = "/flasktodo"


@pytest.fixture(scope="module")
def trixie() -> Sandbox:
    sandbox = Sandbox.up("itrixie", "10.180.0.0/24", "staging=1,staging-db=1", suite="trixie")
    yield sandbox
    sandbox.down()


def test_trixie_deploys_serves_and_converges(trixie: Sandbox, secrets_dir: Path) -> None:
    host = trixie.hosts("staging")[0]
    assert "trixie" in trixie.ssh(host, "cat /etc/os-release").stdout
    first = deploy(trixie, "--limit", "staging", "-y", secrets_dir=secrets_dir)
    assert first.returncode == 0, first.output[-5000:]
    status, _, page = http(host["address"], f"{PREFIX}/", "staging.flasktodo.test")
    assert status == 200 and "FlaskTODO" in page
    # Built for the host's own Python (3.13 on trixie): the wheelhouse follows the host.
    python = trixie.ssh(host, "ls /opt/flasktodo/current/venv/lib").stdout.split()
    assert python == ["python3.13"]
    assert "staging-db1: PostgreSQL 17 at" in first.output
    env = trixie.ssh(host, "cat /etc/flasktodo/env").stdout
    assert "DATABASE_URL=" in env, "staging's items in its database host's PostgreSQL"
    status, _, _body = http(host["address"], f"{PREFIX}/healthz", "staging.flasktodo.test")
    assert status == 200
    second = deploy(trixie, "--limit", "staging", "-y", secrets_dir=secrets_dir)
    assert second.returncode == 0 and second.changed_ops() == [], second.output[-3000:]
