"""Facts of our own: small reads of host state that pyinfra has no fact for."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from wsgistack.build.wheelhouse import Target


class FileText(FactBase[str]):
    """The text of a small file on the host; empty if it does not exist."""

    default = str

    def command(self, path: str) -> str:
        return f"cat {shlex.quote(path)} 2>/dev/null || true"


class PythonTarget(FactBase[Target]):
    """The host's python3, machine and glibc, e.g. Target("3.11", "x86_64", "2.36"): what
    the wheelhouse is built for. Fixed by the OS release, so it is safe to branch on."""

    def command(self) -> str:
        # "Python 3.11.2", "x86_64", "glibc 2.36"
        return "python3 -V; uname -m; getconf GNU_LIBC_VERSION"

    def process(self, output: list[str]) -> Target:
        (_python, version), (machine,), (_glibc, glibc) = (line.split() for line in output)
        return Target(".".join(version.split(".")[:2]), machine, glibc)


class DirEntries(FactBase[list[str]]):
    """The names in a dir (but . and ..); none if it does not exist."""

    default = list

    def command(self, path: str) -> str:
        return f"ls -A {shlex.quote(path)} 2>/dev/null || true"


class LinkTarget(FactBase[str]):
    """Where a symlink points, as written in it; empty if it is not a link."""

    default = str

    def command(self, path: str) -> str:
        return f"readlink {shlex.quote(path)} || true"


class InstalledPackages(FactBase[list[str]]):
    """Which of the Debian packages are installed (dpkg status ii or hi, as pyinfra reads)."""

    default = list

    def command(self, packages: tuple[str, ...]) -> str:
        return (f"dpkg-query -W -f '${{db:Status-Abbrev}} ${{Package}}\\n'"
                f" {' '.join(map(shlex.quote, packages))} 2>/dev/null || true")

    def process(self, output: list[str]) -> list[str]:
        return [line.split()[-1] for line in output if line[:2] in ("ii", "hi")]


class ServiceStates(FactBase[dict[str, tuple[str, str]]]):
    """Each systemd unit's (SubState, UnitFileState), e.g. ("running", "enabled"): the
    properties pyinfra's systemd.service compares."""

    default = dict

    def command(self, services: tuple[str, ...]) -> str:
        return ("systemctl show -p Id -p SubState -p UnitFileState"
                f" {' '.join(map(shlex.quote, services))}")

    def process(self, output: list[str]) -> dict[str, tuple[str, str]]:
        units: list[dict[str, str]] = [{}]
        for line in output:  # one block of properties per unit, blank lines between
            key, _, value = line.partition("=")
            if not key or key in units[-1]:
                units.append({})
            if key:
                units[-1][key] = value
        return {unit["Id"]: (unit.get("SubState", ""), unit.get("UnitFileState", ""))
                for unit in units if "Id" in unit}


def is_on(state: tuple[str, str] | None) -> bool:
    """A oneshot done (or a timer waiting) and enabled at boot, as ServiceStates read it."""
    return state is not None and state[0] in ("exited", "waiting") and state[1] == "enabled"


class SystemAccount(FactBase[dict[str, str]]):
    """A user's primary gid, home, shell and comment (GECOS), and its same-named group's gid;
    {} if neither exists."""

    default = dict

    def command(self, user: str) -> str:
        return f"getent passwd {shlex.quote(user)}; getent group {shlex.quote(user)}"

    def process(self, output: list[str]) -> dict[str, str]:
        found = {}
        for line in output:
            fields = line.split(":")
            if len(fields) == 7:  # name:password:uid:gid:comment:home:shell
                found.update(gid=fields[3], comment=fields[4], home=fields[5], shell=fields[6])
            elif len(fields) == 4:  # name:password:gid:members
                found["group_gid"] = fields[2]
        return found
