"""Facts of our own: small reads of host state that pyinfra has no fact for."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class FileText(FactBase[str]):
    """The text of a small file on the host; empty if it does not exist."""

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)} 2>/dev/null || true"


class PythonTarget(FactBase[tuple[str, str]]):
    """(python version, machine) of the host's python3, e.g. ("3.11", "x86_64"): what the
    wheelhouse is built for. Fixed by the OS release, so it is safe to branch on."""

    def command(self) -> str:
        return ("python3 -c 'import platform, sys;"
                " print(\"%d.%d\" % sys.version_info[:2], platform.machine())'")

    def process(self, output: list[str]) -> tuple[str, str]:
        version, machine = output[0].split()
        return version, machine


class LinkTarget(FactBase[str]):
    """Where a symlink points, as written in it; empty if it is not a link."""

    def command(self, path: str) -> str:
        return f"readlink {shlex.quote(path)} || true"
