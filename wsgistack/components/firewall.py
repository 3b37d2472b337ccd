"""A port of ours open to the environment's own hosts only: PostgreSQL's on the database
host (its web hosts), the backup store's SFTP on the backup host (its senders).

Each is an nftables table of its own (any other firewall on the host is left as it is),
/etc/wsgistack/firewall/<name>.nft, loaded by wsgistack-firewall@<name>.service at boot
and with any restart of nftables.service, before the service behind the port starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.operations import systemd

from wsgistack.components import base
from wsgistack.config.environment import Member
from wsgistack.engine.changes import will_change
from wsgistack.engine.facts import is_on
from wsgistack.engine.hoststate import HostState
from wsgistack.engine.managed import Absent, Directory, File, Managed, ensure
from wsgistack.engine.staged import golive
from wsgistack.onhost.golive.layout import ROOT
from wsgistack.paths import TEMPLATES

DIRECTORY = ROOT / "etc/wsgistack/firewall"
UNIT = "wsgistack-firewall@.service"


def firewall_service(name: str) -> str:
    return f"wsgistack-firewall@{name}.service"


@dataclass(frozen=True)
class Firewall:
    """`port` answers `clients` and the host itself, and nobody else."""

    name: str  # the table is wsgistack_<name>
    port: int
    what: str  # e.g. "PostgreSQL's port", as the files and operations name it
    clients: tuple[Member, ...]

    @property
    def table(self) -> str:
        return f"wsgistack_{self.name}"

    @property
    def service(self) -> str:
        return firewall_service(self.name)

    def rules(self) -> File:
        path = DIRECTORY / f"{self.name}.nft"
        return File(f"Write the firewall table for {self.what}", str(path), "root", "root",
                    "644", template=TEMPLATES / "etc/wsgistack/firewall/table.nft.j2",
                    context={"firewall": self, "path": path})

    def managed(self) -> list[Managed]:
        return [Directory(f"Create {DIRECTORY}", str(DIRECTORY), "root", "root", "755"),
                self.rules(), base.unit_file(UNIT, {"unit_dir": base.UNIT_DIR,
                                                    "directory": DIRECTORY})]

    def teardown(self) -> list[Managed]:
        """The table unloaded (its unit stopped, disabled) and removed, then its files."""
        rules = self.rules().path
        return [Absent(f"Unload the firewall table for {self.what}, and remove it", rules,
                       command=f"systemctl disable --now {self.service}"
                               f" && {golive('remove-paths', paths=[rules])}"),
                *self.managed()]

    def ensure(self, seen: HostState, services: dict[str, tuple[str, str]]) -> None:
        """The table written and loaded, systemd reloaded first where its unit changed."""
        directory, rules, unit = self.managed()
        changed = [ensure(directory, seen), ensure(unit, seen)]
        written = ensure(rules, seen)
        if will_change(*changed):
            systemd.daemon_reload(name="Reload systemd: the firewall's unit changed")
        if not is_on(services.get(self.service)):
            systemd.service(name=f"Keep the firewall table for {self.what} loaded, and at boot",
                            service=self.service, running=True, enabled=True)
        elif will_change(written):
            systemd.service(name=f"Load the changed firewall table for {self.what}",
                            service=self.service, reloaded=True)
