"""A database host with no way in from the controller, only through production1, as a
database host normally sits (`sandbox up --behind production-db1=production1`): deployed
through its jump host, converged, and stopped with one clear line when either hop's host
key changes.

A sandbox of its own; the tests run in order, each leaving the hosts converged.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import Deployed, Run, deploy_environment, own_sandbox

NAME, SUBNET = "ijump", "10.193.0.0/24"


class Hidden(Deployed):
    def production(self) -> Run:
        return self.deploy("--limit", "production", "-y")

    @property
    def known_hosts(self) -> Path:
        return Path(self.sandbox.manifest["known_hosts"])

    def with_wrong_key_for(self, host: dict) -> str:
        """known_hosts as it is, with another host's keys recorded for `host`; returns
        the file as it was."""
        kept = self.known_hosts.read_text()
        other = {line.split()[1]: line.split(None, 1)[1] for line in kept.splitlines()
                 if line.startswith(self.sandbox.host("production2")["address"] + ",")}
        self.known_hosts.write_text("".join(
            (f"{line.split()[0]} {other[line.split()[1]]}"
             if line.startswith(host["address"] + ",") else line) + "\n"
            for line in kept.splitlines()))
        return kept


@pytest.fixture(scope="module")
def hidden(secrets_dir: Path) -> Iterator[Hidden]:
    with own_sandbox(NAME, SUBNET, "production=2,production-db=1",
                     options=("--behind", "production-db1=production1")) as sandbox:
        yield Hidden(sandbox, secrets_dir,
                     deploy_environment(sandbox, secrets_dir, "--limit", "production", "-y"))


def test_the_controller_cannot_reach_the_database_host(hidden: Hidden) -> None:
    database = hidden.sandbox.host("production-db1")
    with pytest.raises(OSError):
        socket.create_connection((database["address"], 22), timeout=3).close()
    reachable = hidden.sandbox.host("production1")
    socket.create_connection((reachable["address"], 22), timeout=3).close()


def test_it_is_deployed_through_its_jump_host_before_any_web_host_goes_live(
        hidden: Hidden) -> None:
    output = hidden.first.succeeded().output
    assert re.search(r"ijump-production-db1: PostgreSQL 15 at \S+ for flasktodo  ok", output)
    started = [line for line in output.splitlines() if line.startswith("--> Starting operation")]

    def first(text: str) -> int:
        return next(index for index, line in enumerate(started) if text in line)

    assert first("Make PostgreSQL 15's settings") < first("Migrate flasktodo") \
        < first("Switch flasktodo")
    assert hidden.production().succeeded().changed_ops() == []
    dry = hidden.deploy("--limit", "production", "--dry", "--debug").succeeded()
    assert dry.planned_changes() == []
    reads = re.findall(r"Running command on ([^:\s]+)", dry.output)
    assert sorted(reads) == sorted(host["name"] for host in hidden.sandbox.hosts()), \
        "one command per host (the hidden one too): its state read"
    database = hidden.sandbox.host("production-db1")
    assert hidden.sandbox.ssh(database, "hostname").stdout.strip() == database["name"], \
        "the tests reach it as the deploy does: through production1"


@pytest.mark.parametrize("hop", ["production-db1", "production1"])
def test_a_changed_host_key_on_either_hop_stops_the_host_behind_with_one_line(
        hidden: Hidden, hop: str) -> None:
    changed = hidden.sandbox.host(hop)
    kept = hidden.with_wrong_key_for(changed)
    try:
        run = hidden.production()
    finally:
        hidden.known_hosts.write_text(kept)
    assert run.returncode != 0
    assert "Traceback" not in run.output, "one line, not pyinfra's crash"
    assert (f"[{NAME}-production-db1] SSH host key error (Host key for {changed['address']}"
            " does not match.)") in run.output
    assert f"{NAME}-production-db1: UNREACHABLE: not deployed" in run.output
    assert f"{NAME}-production2: https://" in run.output, "the other hosts go on"
    assert hidden.production().succeeded().changed_ops() == []
