"""Running controller commands, with failures turned into one clear line."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from sandbox.errors import SandboxError


def run(args: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    """Run a command on the controller and return its stdout; raise SandboxError on failure."""
    try:
        result = subprocess.run(
            list(args), input=input, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise SandboxError(f"{args[0]} is not installed on this machine") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise SandboxError(f"`{' '.join(args)}` failed: {last}")
    return result.stdout


def succeeds(args: Sequence[str]) -> bool:
    """True when the command exits 0 (for probing state)."""
    return subprocess.run(list(args), capture_output=True, check=False).returncode == 0
