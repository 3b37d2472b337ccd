"""golive's steps are declared once (protocol.STEPS): what the deploy sends is what golive
reads back, for every step, and a value out of form is refused on both sides."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wsgistack.engine.staged import golive
from wsgistack.onhost.golive import cli
from wsgistack.onhost.golive.protocol import ARGV, EXPECT, FLAG, NUMBER, REST, STEPS, Arg, parser

SAMPLES = {"app": "shop", "site": "web", "version": "1.2.0+local", "name": "uploads",
           "config": "config.py", "config_env": "SHOP_CONFIG", "prefix": "/shop",
           "database_env": "DATABASE_URL", "directory": "https://ca.test/dir",
           "email": "ops@example.test", "ca_bundle": "/etc/ssl/ca.pem",
           "build_user": "wsgistack-build", "stanza": "production",
           "to": "2026-12-06 14:05:00.123+00", "kind": "diff"}


def sample(arg: Arg) -> object:
    """A value of the argument's kind, with what a shell or a parser could get wrong."""
    if arg.kind == FLAG:
        return True
    if arg.kind == NUMBER:
        return 7
    if arg.kind == ARGV:
        return (("manage.py", "migrate", "--noinput"), ("sh", "-c", "echo 'a b' \"$HOME\""))
    if arg.kind == EXPECT:
        return ["/etc/shop/env.next=" + "a" * 64, "/etc/shop/gunicorn.conf.py.next=" + "b" * 64]
    if arg.kind == REST:
        return ["django-admin", "--settings", "x y"]
    if arg.name == "version" and arg.pattern is not None and arg.pattern.pattern == "^[0-9]{2}$":
        return "15"
    if arg.repeated:
        return {"names": ["example.test", "www.example.test"], "apps": ["shop", "blog"],
                "packages": ["nginx", "libpq5", "g++-12"],
                "paths": ["/etc/ssl/wsgistack", "/var/lib/wsgistack/a@b.service"],
                "empty_dirs": ["/var/lib/wsgistack/applied", "/var/lib/wsgistack"]}.get(
            arg.name, ["TERM"])
    return SAMPLES.get(arg.name, "value")


def read_back(arg: Arg, value: object) -> object:
    """What golive's parser gives its host function for `value`."""
    if arg.kind == ARGV:
        return [list(each) for each in value]
    return value


@pytest.mark.parametrize("name", sorted(STEPS))
def test_what_the_deploy_sends_is_what_golive_reads(name: str) -> None:
    step = STEPS[name]
    values = {arg.name: sample(arg) for arg in step.args}
    parsed = vars(parser("").parse_args(step.command(**values)))
    assert parsed.pop("step") == name
    assert parsed.pop("root") == "/"
    assert parsed == {arg.name: read_back(arg, values[arg.name]) for arg in step.args}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_names_a_host_function_taking_its_arguments(name: str) -> None:
    step = STEPS[name]
    function = cli.host_function(step)
    code = function.__code__
    taken = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
    assert taken[0] == "root"
    assert set(taken[1:]) == {arg.name for arg in step.args}


def test_the_deploy_refuses_a_value_golive_would_refuse() -> None:
    with pytest.raises(ValueError, match="not a valid app"):
        golive("releases", app="../etc")
    with pytest.raises(SystemExit):
        parser("").parse_args(["releases", "../etc"])


def test_an_unknown_or_missing_argument_is_the_callers_bug() -> None:
    with pytest.raises(TypeError, match="takes no"):
        golive("remove", app="shop", wipe=True)
    with pytest.raises(TypeError, match="needs"):
        golive("program", app="shop")


def test_the_command_runs_roots_own_golive_isolated_and_quoted() -> None:
    command = golive("run", app="shop", argv=["echo", "a b; rm -rf /"])
    assert command == ("python3 -I /usr/local/lib/wsgistack/golive run shop"
                       " --prefix '' -- echo 'a b; rm -rf /'")


def test_the_controller_reaches_host_code_through_the_layout_and_the_protocol_only() -> None:
    """The layers issue 23 set: golive's modules stay small, and no controller module
    imports host code but the layout and the protocol (the go-live steps' own)."""
    package = Path(cli.__file__).resolve().parents[2]  # wsgistack/
    allowed = {"wsgistack.onhost.golive.layout", "wsgistack.onhost.golive.protocol"}
    reaching = []
    for module in package.rglob("*.py"):
        if "onhost" in module.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "wsgistack.onhost.golive") and node.module not in allowed:
                reaching.append(f"{module.relative_to(package)}: {node.module}")
    assert reaching == []
    golive = Path(cli.__file__).parent
    assert {module.name: len(module.read_text().splitlines()) for module in golive.glob("*.py")
            if len(module.read_text().splitlines()) >= 400} == {}
