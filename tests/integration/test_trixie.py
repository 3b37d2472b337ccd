"""Debian 13 (trixie) hosts get the same stack: deploy, HTTP through nginx, zero changes again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import Sandbox, deploy, http

PREFIX = "/flasktodo"


@pytest.fixture(scope="module")
def trixie() -> Sandbox:
    sandbox = Sandbox.up("itrixie", "10.180.0.0/24", "staging=1", suite="trixie")
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
    second = deploy(trixie, "--limit", "staging", "-y", secrets_dir=secrets_dir)
    assert second.returncode == 0 and second.changed_ops() == [], second.output[-3000:]
