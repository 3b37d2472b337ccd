"""The files that let pyinfra, testinfra and people reach the hosts over SSH.

All live in the sandbox's state dir: a generated key, a known_hosts file holding each
host's real host key (so checking stays on), an ssh_config with one alias per host, and
sandbox.json, which inventory.py and the tests read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from sandbox.ca import CaEndpoints
from sandbox.errors import SandboxError
from sandbox.spec import STATE_ROOT, SandboxSpec
from sandbox.system import run


class AccessFiles:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.key = state_dir / "id_ed25519"
        self.known_hosts = state_dir / "known_hosts"
        self.ssh_config = state_dir / "ssh_config"
        self.manifest = state_dir / "sandbox.json"

    def ensure_key(self) -> str:
        """Generate the sandbox's SSH key once; return its public half."""
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wsgistack-sandbox",
                 "-f", str(self.key)])
        return Path(f"{self.key}.pub").read_text()

    def ssh_command(self) -> list[str]:
        return ["ssh", "-F", str(self.ssh_config)]

    def write(self, spec: SandboxSpec, host_keys: dict[str, list[str]]) -> None:
        known_hosts = []
        config = []
        for host in spec.hosts:
            address = spec.address(host)
            known_hosts += [f"{address},{host.name} {key}" for key in host_keys[host.name]]
            jump = spec.jump_of(host)
            config.append(f"Host {host.name}\n  HostName {address}\n"
                          + (f"  ProxyJump {jump.name}\n" if jump else ""))
        config.append(
            f"Host *\n  User {spec.login}\n"
            f"  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.known_hosts}\n  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n  BatchMode yes\n  LogLevel ERROR\n"
        )
        write_private(self.known_hosts, "\n".join(known_hosts) + "\n")
        write_private(self.ssh_config, "\n".join(config))


def write_private(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


def save_spec(spec: SandboxSpec) -> None:
    """Record the sandbox before anything is made, so `down` can always undo it."""
    spec.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(spec.state_dir, 0o700)
    files = AccessFiles(spec.state_dir)
    manifest = {
        "spec": asdict(spec),
        "ssh_user": spec.login,
        "ssh_key": str(files.key),
        "known_hosts": str(files.known_hosts),
        "ssh_config": str(files.ssh_config),
        "hosts": [
            {"name": host.name, "group": host.group, "address": str(spec.address(host)),
             **({"jump": jump.name} if (jump := spec.jump_of(host)) else {})}
            for host in spec.hosts
        ],
    }
    endpoints = CaEndpoints.of(spec)
    if endpoints:
        manifest["ca"] = endpoints.manifest()
    files.manifest.write_text(json.dumps(manifest, indent=2) + "\n")


def load_spec(name: str) -> SandboxSpec | None:
    manifest = STATE_ROOT / name / "sandbox.json"
    if not manifest.exists():
        return None
    try:
        return SandboxSpec(**json.loads(manifest.read_text())["spec"])
    except (ValueError, KeyError, TypeError) as error:
        message = f"{manifest} is unreadable ({error}): remove {manifest.parent}"
        raise SandboxError(message) from None


def existing_sandboxes() -> list[str]:
    if not STATE_ROOT.exists():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if (p / "sandbox.json").exists())
