"""Debian 13 (trixie) hosts get the same stack: deploy, HTTP through nginx, zero changes
again; and, on a database host of their environment, Debian 13's PostgreSQL (17). Then
destroy takes it all back off both hosts: the database's data kept and served again by the
next deploy, and with purge both hosts as they were before the first deploy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import Sandbox, deploy, footprint, http, left_by_destroy

PREFIX = "/flasktodo"


@pytest.fixture(scope="module")
def trixie() -> Sandbox:
    sandbox = Sandbox.up("itrixie", "10.180.0.0/24", "staging=1,staging-db=1", suite="trixie")
    yield sandbox
    sandbox.down()


@pytest.fixture(scope="module")
def bare(trixie: Sandbox) -> dict[str, set[str]]:
    """Each host's footprint before the first deploy."""
    return {host["name"]: footprint(trixie, host) for host in trixie.hosts()}


def test_trixie_deploys_serves_and_converges(trixie: Sandbox, bare: dict[str, set[str]],
                                             secrets_dir: Path) -> None:
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


def test_destroy_keeps_the_database_then_purge_leaves_the_hosts_as_they_were(
        trixie: Sandbox, bare: dict[str, set[str]], secrets_dir: Path) -> None:
    web = trixie.hosts("staging")[0]
    title = "kept in PostgreSQL through destroy"
    status, _, _ = http(web["address"], f"{PREFIX}/api/items", "staging.flasktodo.test",
                        "POST", json.dumps({"title": title}).encode(),
                        {"Content-Type": "application/json"})
    assert status == 201
    run = ("--limit", "staging", "-y")
    dry = deploy(trixie, *run[:2], "--dry", secrets_dir=secrets_dir, entry="destroy.py")
    done = deploy(trixie, *run, secrets_dir=secrets_dir, entry="destroy.py").succeeded()
    assert dry.succeeded().preview() == done.preview()
    database = trixie.hosts("staging-db")[0]
    lines = done.preview()[database["name"]][1]
    assert "- Take our settings off PostgreSQL 17" in lines
    assert any(line.startswith("- Purge the packages the deploy installed: ")
               and line.endswith("; remove postgresql-17, keeping its clusters")
               for line in lines), lines
    for host in trixie.hosts():
        assert left_by_destroy(bare[host["name"]], footprint(trixie, host),
                               ["flasktodo"]) == set(), host["name"]
    assert trixie.ssh(database, "dpkg-query -W -f '${db:Status-Abbrev}' postgresql-17"
                      ).stdout.strip() == "rc", "removed, its cluster kept"

    deploy(trixie, *run, secrets_dir=secrets_dir).succeeded()
    assert title in http(web["address"], f"{PREFIX}/", "staging.flasktodo.test")[2]
    deploy(trixie, *run, "--data", "purge=true", secrets_dir=secrets_dir,
           entry="destroy.py").succeeded()
    for host in trixie.hosts():
        assert footprint(trixie, host) == bare[host["name"]], host["name"]
