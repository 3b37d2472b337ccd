"""Each host's network: its own namespace, a veth pair to the controller, and NAT out.

The controller end of host i is .4i+1/30 of the sandbox subnet and the host's eth0 is
.4i+2/30, so every host has a distinct address and its own loopback.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.spec import STATE_ROOT, HostSpec, SandboxSpec
from sandbox.system import run, succeeds

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# The value ip_forward had before the first sandbox turned it on, restored by the last down.
IP_FORWARD_BEFORE = STATE_ROOT / "ip_forward.before"


def netns_path(host: HostSpec) -> Path:
    return Path("/run/netns") / host.name


def check_subnet_free(spec: SandboxSpec) -> None:
    """Refuse a subnet that some other interface or route on this machine already uses."""
    ours = {host.veth for host in spec.hosts}
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        destination = route.get("dst", "")
        if destination in ("default", "") or route.get("dev") in ours:
            continue
        try:
            network = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:
            continue
        if network.prefixlen > 0 and network.overlaps(spec.network):
            raise SandboxError(
                f"subnet {spec.subnet} is already used on this machine (route {destination}"
                f" dev {route.get('dev')}): choose another with --subnet"
            )


def ensure_link(spec: SandboxSpec, host: HostSpec) -> None:
    """Create the host's namespace and veth pair, addressed and routed; safe to repeat."""
    if not netns_path(host).exists():
        run(["ip", "netns", "add", host.name])
    inside = ["ip", "-n", host.name]
    if not succeeds(["ip", "link", "show", host.veth]):
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.name])
    prefix = spec.slot(host).prefixlen
    run(["ip", "addr", "replace", f"{spec.gateway(host)}/{prefix}", "dev", host.veth])
    run(["ip", "link", "set", host.veth, "up"])
    run([*inside, "addr", "replace", f"{spec.address(host)}/{prefix}", "dev", "eth0"])
    run([*inside, "link", "set", "eth0", "up"])
    bring_up_loopback(host)
    run([*inside, "route", "replace", "default", "via", str(spec.gateway(host))])


def bring_up_loopback(host: HostSpec) -> None:
    """systemd in a container cannot bring lo up itself; without it 127.0.0.1 is dead."""
    run(["ip", "-n", host.name, "link", "set", "lo", "up"])


def remove_link(host: HostSpec) -> None:
    if succeeds(["ip", "link", "show", host.veth]):
        run(["ip", "link", "del", host.veth])
    if netns_path(host).exists():
        run(["ip", "netns", "del", host.name])


def ensure_nat(spec: SandboxSpec) -> None:
    """Masquerade the sandbox subnet so hosts reach the Debian mirror through the controller."""
    enable_forwarding()
    if nat_present(spec):
        return
    hidden = ", ".join(str(spec.address(host)) for host in spec.hidden)
    # A host behind a jump host: nothing this machine sends reaches it; its jump host's
    # packets, which this machine forwards, do.
    output = ("  chain output {\n"
              "    type filter hook output priority filter; policy accept;\n"
              f"    ip daddr {{ {hidden} }} drop\n"
              "  }\n") if hidden else ""
    run(["nft", "-f", "-"], input=(
        f"table ip {spec.nft_table} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {spec.subnet} ip daddr != {spec.subnet} masquerade\n"
        "  }\n"
        f"{output}"
        "}\n"
    ))


def nat_present(spec: SandboxSpec) -> bool:
    return succeeds(["nft", "list", "table", "ip", spec.nft_table])


def remove_nat(spec: SandboxSpec) -> None:
    if nat_present(spec):
        run(["nft", "delete", "table", "ip", spec.nft_table])


def enable_forwarding() -> None:
    if not IP_FORWARD_BEFORE.exists():
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        IP_FORWARD_BEFORE.write_text(IP_FORWARD.read_text())
    IP_FORWARD.write_text("1\n")


def restore_forwarding() -> None:
    """Put ip_forward back as it was; called when no sandbox is left."""
    if IP_FORWARD_BEFORE.exists():
        IP_FORWARD.write_text(IP_FORWARD_BEFORE.read_text())
        IP_FORWARD_BEFORE.unlink()
