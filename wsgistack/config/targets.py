"""Which hosts the staging and production groups hold, for inventory.py.

An environment's group holds its web hosts and, where it has one, its database host, which
is also in the `databases` group: `--limit production` deploys the whole environment.

Two sources, one shape:
- a targets file named by $WSGISTACK_TARGETS (TOML, for real servers; see README), or
- the local sandbox named by $WSGISTACK_SANDBOX (default `demo`), the embedded default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from paramiko import Transport

GROUPS = ("staging", "production")
DATABASES = "databases"  # the group of every environment's database host
BACKUPS = "backups"  # the group of every environment's backup host
# The roles an environment's own hosts may have beside its web hosts: the targets file's key,
# the sandbox group's suffix, the inventory group that gathers them.
ROLES = {"database": ("-db", DATABASES), "backup": ("-backup", BACKUPS)}
HostEntry = tuple[str, dict[str, Any]]
SANDBOX_STATE = Path("/var/lib/wsgistack-sandbox")
SANDBOX_CA = "ca"  # the sandbox's ACME CA host (sandbox/ca.py): no target
# Where a sudo user's uploads wait, each user's in its own 0700 dir (wsgistack.components.base)
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
        "ssh_paramiko_connect_kwargs": connect_kwargs(CONNECT_TIMEOUT),
        "sandbox": name,
    }
    if "ca" in sandbox:
        # The sandbox's own ACME CA: no run against a sandbox asks a real one.
        data.update(acme_directory=sandbox["ca"]["directory"],
                    acme_ca_certificate=sandbox["ca"]["certificate"])
    groups: dict[str, list[HostEntry]] = {group: [] for group in (*GROUPS, DATABASES, BACKUPS)}
    hosts = {host["name"]: {"ssh_hostname": host["address"], **data,
                            **({"jump": host["jump"]} if "jump" in host else {})}
             for host in sandbox["hosts"] if host["group"] != SANDBOX_CA}
    add_jumps(hosts)
    for host in sandbox["hosts"]:
        if host["group"] == SANDBOX_CA:
            continue
        environment, role = sandbox_role(host["group"])
        entry = (host["name"], hosts[host["name"]])
        groups.setdefault(environment, []).append(entry)
        if role:
            groups[role].append(entry)
    return groups


def sandbox_role(group: str) -> tuple[str, str | None]:
    """A sandbox group's environment, and the role group its host is in (None: a web host):
    "production-db" is production's, in `databases`."""
    for suffix, role in ROLES.values():
        if group.endswith(suffix):
            return group.removesuffix(suffix), role
    return group, None


def targets_from_file(path: Path) -> dict[str, list[HostEntry]]:
    """Read a targets file: an optional [ssh] table for all hosts, one table per group (its
    web `hosts` and, optionally, its `database` and `backup` hosts, with its own
    [<group>.ssh]), and
    optional [host."<name>"] tables of one host's own ssh keys (e.g. its `jump` host)."""
    try:
        config = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise TargetsError(f"targets file {path}: {error}") from None
    where = f"targets file {path}"
    unknown = set(config) - {"ssh", "host", *GROUPS}
    if unknown:
        raise TargetsError(f"{where}: unknown tables {sorted(unknown)}")
    ssh = {"ssh_paramiko_connect_kwargs": connect_kwargs(CONNECT_TIMEOUT),
           **ssh_data(config.get("ssh", {}), path)}
    data: dict[str, dict[str, Any]] = {}  # each host's, shared by every group it is in
    members: dict[str, list[str]] = {role: [] for _suffix, role in ROLES.values()}
    for group in GROUPS:
        table = config.get(group, {})
        hosts, roles = group_hosts(table, f"{where}: [{group}]")
        group_ssh = {**ssh, **ssh_data(table.get("ssh", {}), path)}
        members[group] = [*hosts, *roles.values()]
        for key, name in roles.items():
            members[ROLES[key][1]].append(name)
        data.update((name, dict(group_ssh)) for name in members[group])
    for name, table in config.get("host", {}).items():
        if name not in data:
            raise TargetsError(f"{where}: [host.\"{name}\"] is no host of staging or production")
        data[name].update(ssh_data(table, path))
    for name in data:
        data[name] = with_login(data[name], f"{where}: {name}")
    add_jumps(data)
    return {group: [(name, data[name]) for name in names] for group, names in members.items()}


def group_hosts(table: dict[str, Any], where: str) -> tuple[list[str], dict[str, str]]:
    """A group table's web hosts, and its database and backup hosts by key, checked."""
    unknown = set(table) - {"hosts", "ssh", *ROLES}
    if unknown:
        raise TargetsError(f"{where} has unknown keys {sorted(unknown)}")
    hosts = table.get("hosts", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and is_host(h) for h in hosts):
        raise TargetsError(f"{where} hosts must be a list of host names or addresses"
                           f" ({HOST_FORM})")
    roles = {key: table[key] for key in ROLES if table.get(key) is not None}
    taken = list(hosts)
    for key, name in roles.items():
        if not isinstance(name, str) or not is_host(name) or name in taken:
            raise TargetsError(f"{where} {key} must be one host's name, not one of its other"
                               " hosts")
        taken.append(name)
    return hosts, roles


# --- hosts behind a jump host -----------------------------------------------------------

JUMP_CONFIGS = Path("~/.cache/wsgistack/ssh")  # the ssh configs made for pyinfra, by digest


@dataclass(frozen=True)
class JumpHost:
    """How to log in to a jump host: as OpenSSH's ProxyJump does, with its own host key
    checked against the same known_hosts as the hosts behind it."""

    alias: str  # the host's name in ProxyJump (its `Host` block here)
    hostname: str  # where it is
    user: str | None
    port: int
    key: str | None
    known_hosts: str | None
    timeout: int

    def config(self) -> list[str]:
        lines = [f"Host {self.alias}", f"  HostName {self.hostname}",
                 "  StrictHostKeyChecking yes", f"  ConnectTimeout {self.timeout}"]
        # Only another port than 22: pyinfra passes a configured port on as text, and
        # paramiko then looks up "[host]:22" in known_hosts, where a key for port 22 is
        # recorded as "host".
        lines += [f"  Port {self.port}"] if self.port != 22 else []
        lines += [f"  User {self.user}"] if self.user else []
        lines += [f"  IdentityFile {self.key}", "  IdentitiesOnly yes"] if self.key else []
        lines += [f"  UserKnownHostsFile {self.known_hosts}"] if self.known_hosts else []
        return lines


def jump_host(jump: str, data: dict[str, dict[str, Any]], behind: dict[str, Any]) -> JumpHost:
    """The jump host `[user@]host[:port]`: a host of the targets logs in as it does; any
    other (a bastion) as the host behind it does, but for the user and port it names."""
    user, _, address = jump.rpartition("@")
    name, _, port = address.partition(":")
    login = data.get(name, behind)
    return JumpHost(name, str(login.get("ssh_hostname") or name), user or login.get("ssh_user"),
                    int(port or login.get("ssh_port", 22)), login.get("ssh_key"),
                    login.get("ssh_known_hosts_file"),
                    login["ssh_paramiko_connect_kwargs"]["timeout"])


def add_jumps(data: dict[str, dict[str, Any]]) -> None:
    """Give each host with a `jump` an ssh config (pyinfra's ssh_config_file) that reaches it
    through its jump host: `ProxyJump`, with host key checking on both hops."""
    behind = {name: host.pop("jump") for name, host in data.items() if host.get("jump")}
    if not behind:
        return
    lines = ["# Made by wsgistack.config.targets for pyinfra: the hosts reached through a jump"
             " host, and how to log in to each jump host."]
    jumps = {}
    for name, jump in behind.items():
        lines += [f"Host {data[name].get('ssh_hostname') or name}", f"  ProxyJump {jump}"]
        jumps[jump] = jump_host(jump, data, data[name])
    for jump in jumps.values():
        lines += jump.config()
    path = write_ssh_config("\n".join(lines) + "\n")
    for name in behind:
        data[name]["ssh_config_file"] = str(path)
    report_jump_host_key_errors()


def report_jump_host_key_errors() -> None:
    """pyinfra 3.10 reports a changed host key of a host as one line, but crashes the whole
    run (AttributeError: no `_ssh_config`) when the changed key is its jump host's: the
    handler reads the client's config, which is set only once every hop has connected. A
    default lets it report it for the host behind the jump host, as one line naming the
    jump host's address, and the other hosts go on."""
    from pyinfra.connectors.sshuserclient.client import SSHClient
    if not hasattr(SSHClient, "_ssh_config"):
        SSHClient._ssh_config = {}  # type: ignore[attr-defined]


def write_ssh_config(text: str) -> Path:
    """The config in the controller's cache, named by its digest (0600, in a 0700 dir)."""
    directory = JUMP_CONFIGS.expanduser()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.conf"
    if not path.exists():
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text)
        temporary.chmod(0o600)
        temporary.replace(path)
    return path


# What reaches the ssh config pyinfra reads (and OpenSSH's ProxyJump): never whitespace or a
# control character, which would start a directive of its own (e.g. a ProxyCommand that
# runs on the controller, even with --dry).
HOST = re.compile(r"^(?!-)[A-Za-z0-9._:%-]{1,253}$")  # a name, an IPv4 or an IPv6 address
HOST_FORM = "a name or an address: letters, digits, '.', '-', ':'"
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PATH = re.compile(r"^[^\x00-\x20\x7f]+$")  # no whitespace, no control characters
JUMP = re.compile(r"^(?:(?P<user>[^@]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]+)"
                  r"(?::(?P<port>[0-9]{1,5}))?$")


def is_host(text: str) -> bool:
    return bool(HOST.match(text))


def is_port(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def is_jump(value: object) -> bool:
    found = JUMP.match(value) if isinstance(value, str) else None
    return bool(found and is_host(found["host"].strip("[]"))
                and (found["user"] is None or USER.match(found["user"]))
                and (found["port"] is None or is_port(int(found["port"]))))


# Each ssh key's check, and what it must be (said in the refusal).
SSH_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "jump": (is_jump, "[user@]host[:port]"),
    "user": (lambda v: isinstance(v, str) and bool(USER.match(v)), "a login name"),
    "port": (is_port, "a port, 1-65535"),
    "key": (lambda v: isinstance(v, str) and bool(PATH.match(v)),
            "a file's path without spaces or control characters"),
    "known_hosts": (lambda v: isinstance(v, str) and bool(PATH.match(v)),
                    "a file's path without spaces or control characters"),
    "sudo": (lambda v: isinstance(v, bool), "true or false"),
    "connect_timeout": (lambda v: is_port(v) and v <= 300, "1-300 seconds"),
}

SSH_KEYS = {
    "jump": "jump",  # [user@]host[:port] it is reached through (add_jumps)
    "user": "ssh_user",
    "port": "ssh_port",
    "key": "ssh_key",
    "known_hosts": "ssh_known_hosts_file",
    "sudo": "_sudo",
    "connect_timeout": "ssh_paramiko_connect_kwargs",
}
# Seconds to wait for a host's SSH connection, banner and authentication.
CONNECT_TIMEOUT = 10


def connect_kwargs(seconds: int) -> dict[str, Any]:
    """What pyinfra hands paramiko's connect(): its timeouts, and a transport that sends
    at once."""
    return {"timeout": seconds, "banner_timeout": seconds, "auth_timeout": seconds,
            "transport_factory": transport_sending_at_once}


def transport_sending_at_once(sock: Any, **arguments: Any) -> Transport:
    """paramiko's Transport, over a TCP socket with Nagle's algorithm off (TCP_NODELAY).
    paramiko leaves it on, so a packet it writes while its last one is unacknowledged waits
    for the host's delayed ACK, 40 ms on Linux: each command pyinfra ran took 48 ms on a LAN
    (3.5 ms without), and connecting 40 ms more. paramiko writes whole SSH packets, so none
    is sent in pieces. A jump host's channel or a proxy command is no TCP socket of ours and
    is left as it is."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Transport(sock, **arguments)


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
    """Map an ssh table to pyinfra host data (what it sets, over the tables above it). Host
    key checking is always on."""
    unknown = set(table) - set(SSH_KEYS)
    if unknown:
        raise TargetsError(f"targets file {path}: unknown ssh keys {sorted(unknown)}")
    for key, value in table.items():
        check, form = SSH_CHECKS[key]
        if not check(value):
            raise TargetsError(f"targets file {path}: ssh {key} must be {form}, not {value!r}")
    data = {SSH_KEYS[key]: value for key, value in table.items()}
    if "connect_timeout" in table:
        data["ssh_paramiko_connect_kwargs"] = connect_kwargs(table["connect_timeout"])
    for key in ("ssh_key", "ssh_known_hosts_file"):
        if key in data:
            data[key] = str(Path(data[key]).expanduser())
    data["ssh_strict_host_key_checking"] = "yes"
    return data
