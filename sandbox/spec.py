"""What a sandbox is made of: its name, suite, subnet and hosts, computed, never stored twice."""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.errors import SandboxError

STATE_ROOT = Path("/var/lib/wsgistack-sandbox")
CACHE_ROOT = Path("/var/cache/wsgistack-sandbox")
SUITES = ("bookworm", "trixie")
LOGINS = ("root", "admin")  # admin: Debian's cloud images' sudo user
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")
# Each host gets a /30 of the sandbox subnet: .1 on the controller, .2 on the host.
HOST_PREFIX_LENGTH = 30
# A host group: an environment's web hosts ("production"), its database host
# ("production-db") or its backup host ("production-backup"), at most one of each; "ca" is
# the sandbox's own ACME CA (sandbox/ca.py).
GROUP_PATTERN = re.compile(r"^[a-z]+(-db|-backup)?$")
SINGLE_HOST_GROUP = re.compile(r"^([a-z]+-db|[a-z]+-backup|ca)$")


@dataclass(frozen=True)
class HostSpec:
    """One sandbox host, e.g. `demo-staging1` in group `staging`."""

    sandbox: str
    group: str  # "production"; "production-db", "production-backup" for its database, backups
    index: int  # position in the sandbox, 0-based: picks the /30 and the veth name
    number: int  # position in its group, 1-based: part of the name

    @property
    def short_name(self) -> str:
        return f"{self.group}{self.number}"

    @property
    def name(self) -> str:
        """Machine name, hostname, network namespace and SSH alias."""
        return f"{self.sandbox}-{self.short_name}"

    @property
    def veth(self) -> str:
        """Controller end of the veth pair (at most 15 characters)."""
        return f"v{self.sandbox}{self.index}"


@dataclass(frozen=True)
class SandboxSpec:
    """A named sandbox: its hosts by group, the Debian suite and the subnet they live in."""

    name: str = "demo"
    suite: str = "bookworm"
    subnet: str = "10.177.0.0/24"
    groups: dict[str, int] = field(default_factory=lambda: {
        "staging": 1, "production": 2, "production-db": 1})
    # Who logs in over SSH: root, or a sudo user as on a cloud image (root's login refused)
    login: str = "root"
    # Hosts the controller cannot reach, only through another host: {"production-db1":
    # "production1"}, by short name
    jumps: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise SandboxError(
                f"sandbox name {self.name!r} is invalid: use 1-8 lowercase letters or digits,"
                " starting with a letter"
            )
        if self.suite not in SUITES:
            raise SandboxError(f"suite {self.suite!r} is not supported: use one of {SUITES}")
        network = self.network
        if not network.is_private or network.prefixlen > 28:
            raise SandboxError(
                f"subnet {self.subnet} must be a private IPv4 network of /28 or larger"
            )
        for group, count in self.groups.items():
            matched = GROUP_PATTERN.match(group)
            if not matched or count < 0 or (SINGLE_HOST_GROUP.match(group) and count > 1):
                raise SandboxError(f"group {group!r}={count} is invalid: use name=COUNT,"
                                   " name-db=1 for an environment's database host,"
                                   " name-backup=1 for its backup host, or ca=1"
                                   " for the sandbox's ACME CA")
        if self.login not in LOGINS:
            raise SandboxError(f"login {self.login!r} is not supported: use one of {LOGINS}")
        names = {host.short_name for host in self.hosts}
        for hidden, jump in self.jumps.items():
            if hidden not in names or jump not in names or jump in self.jumps:
                raise SandboxError(f"--behind {hidden}={jump} is invalid: name two of the"
                                   f" sandbox's hosts ({', '.join(sorted(names))}), the jump"
                                   " host reachable itself")
        capacity = network.num_addresses // 4
        if not 0 < len(self.hosts) <= capacity:
            raise SandboxError(
                f"{len(self.hosts)} hosts do not fit subnet {self.subnet}: 1 to {capacity}"
            )

    @property
    def network(self) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as error:
            raise SandboxError(f"subnet {self.subnet!r} is invalid: {error}") from None

    @property
    def hosts(self) -> list[HostSpec]:
        hosts = []
        for group, count in self.groups.items():
            for number in range(1, count + 1):
                hosts.append(HostSpec(self.name, group, len(hosts), number))
        return hosts

    def host(self, name: str) -> HostSpec:
        for host in self.hosts:
            if name in (host.name, host.short_name):
                return host
        known = ", ".join(host.short_name for host in self.hosts)
        raise SandboxError(f"no host {name!r} in sandbox {self.name!r}: hosts are {known}")

    def jump_of(self, host: HostSpec) -> HostSpec | None:
        """The host that `host` is reached through, if the controller cannot reach it."""
        jump = self.jumps.get(host.short_name)
        return self.host(jump) if jump else None

    @property
    def hidden(self) -> list[HostSpec]:
        return [host for host in self.hosts if self.jump_of(host)]

    def slot(self, host: HostSpec) -> ipaddress.IPv4Network:
        return list(self.network.subnets(new_prefix=HOST_PREFIX_LENGTH))[host.index]

    def gateway(self, host: HostSpec) -> ipaddress.IPv4Address:
        """The controller's address on the host's link."""
        return self.slot(host).network_address + 1

    def address(self, host: HostSpec) -> ipaddress.IPv4Address:
        return self.slot(host).network_address + 2

    @property
    def sudo(self) -> bool:
        """Whether commands that need root go through sudo."""
        return self.login != "root"

    def as_root(self, command: str) -> str:
        """`command` as root on a host, through sudo where the login is not root's."""
        return f"sudo -n sh -c {shlex.quote(command)}" if self.sudo else command

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def nft_table(self) -> str:
        return f"wsgistack_sandbox_{self.name}"
