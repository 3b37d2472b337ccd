"""Which hosts the staging and production groups hold, for inventory.py.

An environment's group holds its web hosts and, where it has one, its database host, which
is also in the `databases` group: `--limit production` deploys the whole environment.

Two sources, one shape:
- a targets file named by $WSGISTACK_TARGETS (TOML, for real servers; see README), or
- the local sandbox named by $WSGISTACK_SANDBOX (default `demo`), the embedded default.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

GROUPS = ("staging", "production")
DATABASES = "databases"  # the group of every environment's database host
HostEntry = tuple[str, dict[str, Any]]
SANDBOX_STATE = Path("/var/lib/wsgistack-sandbox")
SANDBOX_CA = "ca"  # the sandbox's ACME CA host (sandbox/ca.py): no target
# Where a sudo user's uploads wait, each user's in its own 0700 dir (wsgistack.base)
UPLOADS = PurePosixPath("/var/lib/wsgistack/uploads")


class TargetsError(Exception):
    """The targets cannot be read; the message says which file and what to do."""


def load_targets(environ: dict[str, str] | None = None) -> dict[str, list[HostEntry]]:
    environ = dict(os.environ if environ is None else environ)
    if environ.get("WSGISTACK_TARGETS"):
        return targets_from_file(Path(environ["WSGISTACK_TARGETS"]).expanduser())
    return targets_from_sandbox(environ.get("WSGISTACK_SANDBOX", "demo"))


def targets_from_sandbox(name: str) -> dict[str, list[HostEntry]]:
    manifest = SANDBOX_STATE / name / "sandbox.json"
    if not manifest.exists():
        raise TargetsError(
            f"sandbox {name!r} is not up ({manifest} is missing): run `python -m sandbox up`,"
            " or point WSGISTACK_TARGETS at a targets file for real servers"
        )
    sandbox = json.loads(manifest.read_text())
    data = {
        **login_data(sandbox.get("ssh_user", "root"), sudo=True),
        "ssh_key": sandbox["ssh_key"],
        "ssh_known_hosts_file": sandbox["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "ssh_paramiko_connect_kwargs": connect_timeouts(CONNECT_TIMEOUT),
        "sandbox": name,
    }
    if "ca" in sandbox:
        # The sandbox's own ACME CA: no run against a sandbox asks a real one.
        data.update(acme_directory=sandbox["ca"]["directory"],
                    acme_ca_certificate=sandbox["ca"]["certificate"])
    groups: dict[str, list[HostEntry]] = {group: [] for group in (*GROUPS, DATABASES)}
    for host in sandbox["hosts"]:
        if host["group"] == SANDBOX_CA:
            continue
        environment, database, _ = host["group"].partition("-db")
        entry = (host["name"], {"ssh_hostname": host["address"], **data})
        groups.setdefault(environment, []).append(entry)
        if database:
            groups[DATABASES].append(entry)
    return groups


def targets_from_file(path: Path) -> dict[str, list[HostEntry]]:
    """Read a targets file: an optional [ssh] table for all hosts, then one table per group:
    its web `hosts` and, optionally, its `database` host."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetsError(f"targets file {path}: {error}") from None
    unknown = set(config) - {"ssh", *GROUPS}
    if unknown:
        raise TargetsError(f"targets file {path}: unknown tables {sorted(unknown)}")
    ssh = ssh_data(config.get("ssh", {}), path)
    groups: dict[str, list[HostEntry]] = {DATABASES: []}
    for group in GROUPS:
        table = config.get(group, {})
        unknown = set(table) - {"hosts", "database", "ssh"}
        if unknown:
            raise TargetsError(f"targets file {path}: [{group}] has unknown keys {sorted(unknown)}")
        hosts = table.get("hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise TargetsError(f"targets file {path}: [{group}] hosts must be a list of names")
        database = table.get("database")
        if database is not None and (not isinstance(database, str) or not database
                                     or database in hosts):
            raise TargetsError(f"targets file {path}: [{group}] database must be one host's"
                               " name, not one of its web hosts")
        group_ssh = with_login({**ssh, **ssh_data(table.get("ssh", {}), path)},
                               f"targets file {path}: [{group}]")
        groups[group] = [(name, dict(group_ssh)) for name in [*hosts, *filter(None, [database])]]
        if database:
            groups[DATABASES].append((database, dict(group_ssh)))
    return groups


SSH_KEYS = {
    "user": "ssh_user",
    "port": "ssh_port",
    "key": "ssh_key",
    "known_hosts": "ssh_known_hosts_file",
    "sudo": "_sudo",
    "connect_timeout": "ssh_paramiko_connect_kwargs",
}
# Seconds to wait for a host's SSH connection, banner and authentication.
CONNECT_TIMEOUT = 10


def connect_timeouts(seconds: int) -> dict[str, int]:
    return {"timeout": seconds, "banner_timeout": seconds, "auth_timeout": seconds}


def login_data(user: str, sudo: bool) -> dict[str, Any]:
    """pyinfra's data for logging in as `user`: root as it is; anyone else through sudo
    (where `sudo`), its uploads waiting in a dir of its own."""
    if user == "root" or not sudo:
        return {"ssh_user": user}
    return {"ssh_user": user, "_sudo": True, "_temp_dir": str(UPLOADS / user)}


def with_login(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A targets file's merged ssh data, its sudo user's upload dir added."""
    if not data.get("_sudo"):
        return data
    if not data.get("ssh_user"):
        raise TargetsError(f"{where}: sudo = true needs user (the account that logs in)")
    return {**data, **login_data(data["ssh_user"], sudo=True)}


def ssh_data(table: dict[str, Any], path: Path) -> dict[str, Any]:
    """Map the [ssh] table to pyinfra host data. Host key checking is always on."""
    unknown = set(table) - set(SSH_KEYS)
    if unknown:
        raise TargetsError(f"targets file {path}: unknown ssh keys {sorted(unknown)}")
    data = {SSH_KEYS[key]: value for key, value in table.items()}
    timeout = table.get("connect_timeout", CONNECT_TIMEOUT)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 300:
        raise TargetsError(f"targets file {path}: ssh connect_timeout must be 1-300 seconds")
    data["ssh_paramiko_connect_kwargs"] = connect_timeouts(timeout)
    for key in ("ssh_key", "ssh_known_hosts_file"):
        if key in data:
            data[key] = str(Path(data[key]).expanduser())
    data["ssh_strict_host_key_checking"] = "yes"
    return data
