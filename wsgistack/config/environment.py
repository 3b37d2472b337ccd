"""An environment's hosts as the inventory holds them: its web hosts, and its database and
backup hosts if it has them (wsgistack.config.targets puts each in the environment's group,
and in `databases` or `backups`).

Every host of the environment sees the same view, whatever `--limit` says: the database
host lets in all the web hosts, and every web host knows where the database is.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pyinfra import host, state
from pyinfra.api import Host

from wsgistack.config.targets import BACKUPS, DATABASES


@dataclass(frozen=True)
class Member:
    """One host of an environment, and the address the others reach it at."""

    name: str
    address: str  # its ssh_hostname in the inventory, else its name

    @classmethod
    def of(cls, each: Host) -> Member:
        return cls(each.name, str(each.data.get("ssh_hostname") or each.name))

    @property
    def network(self) -> str:
        """The address as a network of one host, as pg_hba.conf and nftables take it; a
        name stays a name."""
        try:
            return str(ipaddress.ip_network(self.address))
        except ValueError:
            return self.address

    @property
    def ip_version(self) -> int | None:
        """4 or 6 for an IP address; None for a name."""
        try:
            return ipaddress.ip_address(self.address).version
        except ValueError:
            return None

    @property
    def is_ipv6(self) -> bool:
        return self.ip_version == 6

    @property
    def url_host(self) -> str:
        """The address as a URL's host part: an IPv6 address in brackets."""
        return f"[{self.address}]" if self.is_ipv6 else self.address


@dataclass(frozen=True)
class Environment:
    group: str
    web: tuple[Member, ...]  # in inventory order: the rollout's order
    database: Member | None = None
    backup: Member | None = None

    @classmethod
    def of(cls, group: str) -> Environment:
        members = state.inventory.get_group(group, default=[])

        def role(name: str) -> list[Member]:
            return [Member.of(each) for each in members
                    if each in state.inventory.get_group(name, default=[])]

        database, backup = role(DATABASES), role(BACKUPS)
        return cls(group, tuple(Member.of(each) for each in members
                                if Member.of(each) not in (*database, *backup)),
                   (database or [None])[0], (backup or [None])[0])


def is_database_host() -> bool:
    """Whether the host being deployed is its environment's database host."""
    return DATABASES in host.groups


def is_backup_host() -> bool:
    """Whether the host being deployed is its environment's backup host."""
    return BACKUPS in host.groups


def is_web_host() -> bool:
    """Whether the host being deployed is one of its environment's web hosts."""
    return not (is_database_host() or is_backup_host())
