"""The sandbox's pure parts: names, addresses, mirrors, options."""

from __future__ import annotations

import argparse

import pytest

import sandbox.__main__ as sandbox_cli
from sandbox.__main__ import parse_groups
from sandbox.errors import SandboxError
from sandbox.image import Mirrors, host_sources, parse_mirrors
from sandbox.spec import SandboxSpec


def test_default_topology_mirrors_the_inventory() -> None:
    spec = SandboxSpec()
    assert [(h.group, h.name) for h in spec.hosts] == [
        ("staging", "demo-staging1"), ("production", "demo-production1"),
        ("production", "demo-production2"), ("production-db", "demo-production-db1")]
    assert spec.suite == "bookworm"


@pytest.mark.parametrize("groups", [{"production-db": 2}, {"production-dbx": 1},
                                    {"Production": 1}, {"staging": 1, "ca": 2}])
def test_an_environment_has_at_most_one_database_host_and_a_sandbox_one_ca(
        groups: dict) -> None:
    with pytest.raises(SandboxError, match="name-db=1"):
        SandboxSpec(name="t", groups=groups)


def test_each_host_gets_its_own_slash_30() -> None:
    spec = SandboxSpec(name="t", subnet="10.9.0.0/24", groups={"staging": 2, "production": 10})
    addresses = [str(spec.address(h)) for h in spec.hosts]
    gateways = [str(spec.gateway(h)) for h in spec.hosts]
    assert addresses[:3] == ["10.9.0.2", "10.9.0.6", "10.9.0.10"]
    assert gateways[:3] == ["10.9.0.1", "10.9.0.5", "10.9.0.9"]
    assert len(set(addresses + gateways)) == 24
    assert all(len(h.veth) <= 15 for h in spec.hosts)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Demo"}, "sandbox name"),
    ({"name": "toolongname"}, "sandbox name"),
    ({"suite": "buster"}, "not supported"),
    ({"subnet": "10.0.0.1/24"}, "invalid"),
    ({"subnet": "8.8.8.0/24"}, "private"),
    ({"subnet": "10.0.0.0/30"}, "/28 or larger"),
    ({"groups": {"staging": 0}}, "do not fit"),
    ({"subnet": "10.0.0.0/28", "groups": {"production": 5}}, "do not fit"),
    ({"login": "ubuntu"}, "login 'ubuntu' is not supported"),
    ({"jumps": {"production-db1": "production9"}}, "--behind production-db1=production9"),
    ({"jumps": {"production1": "production2", "production2": "staging1"}},
     "the jump host reachable itself"),
])
def test_bad_specs_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        SandboxSpec(**kwargs)


def test_host_lookup_by_short_or_full_name() -> None:
    spec = SandboxSpec()
    assert spec.host("staging1") == spec.host("demo-staging1")
    with pytest.raises(SandboxError, match="hosts are staging1, production1, production2"):
        spec.host("web9")


def test_mirrors_come_from_the_controllers_sources() -> None:
    text = (
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert parse_mirrors(text) == Mirrors("http://mirror.example/debian",
                                          "http://security.example/debian-security")
    with pytest.raises(SandboxError, match="no Debian archive mirror"):
        parse_mirrors("Types: deb\n")


def test_hosts_use_the_same_mirrors_for_their_suite() -> None:
    sources = host_sources(Mirrors("http://m/debian", "http://s/sec"), "trixie")
    assert "URIs: http://m/debian\nSuites: trixie trixie-updates" in sources
    assert "URIs: http://s/sec\nSuites: trixie-security" in sources


def test_a_host_behind_another_and_a_sudo_login() -> None:
    spec = SandboxSpec(jumps={"production-db1": "production1"}, login="admin")
    hidden = spec.host("production-db1")
    assert spec.jump_of(hidden) == spec.host("production1") and spec.hidden == [hidden]
    assert spec.jump_of(spec.host("production1")) is None
    assert spec.as_root("id -u") == "sudo -n sh -c 'id -u'"
    assert SandboxSpec().as_root("id -u") == "id -u", "root needs no sudo"
    args = sandbox_cli.parser().parse_args(["up", "--behind", "production-db1=production1",
                                            "--login", "admin"])
    assert args.behind == {"production-db1": "production1"} and args.login == "admin"
    with pytest.raises(argparse.ArgumentTypeError):
        sandbox_cli.parse_jumps("production-db1")


def test_group_option() -> None:
    assert parse_groups("staging=1,production=3") == {"staging": 1, "production": 3}
    with pytest.raises(argparse.ArgumentTypeError):
        parse_groups("staging")


@pytest.mark.parametrize("argv", [["--name", "mine", "up"], ["up", "--name", "mine"],
                                  ["down", "--name", "mine"], ["ssh", "--name", "mine", "h1"]])
def test_the_name_goes_where_a_user_types_it(argv: list[str]) -> None:
    assert sandbox_cli.parser().parse_args(argv).name == "mine"


def test_without_a_name_the_default_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSGISTACK_SANDBOX", raising=False)
    assert sandbox_cli.parser().parse_args(["up"]).name == "demo"
    monkeypatch.setenv("WSGISTACK_SANDBOX", "fromenv")
    assert sandbox_cli.parser().parse_args(["status"]).name == "fromenv"
