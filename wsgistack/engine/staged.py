"""Staged config: written beside the live file, checked, then made live, never lost.

A deploy writes each config file as a candidate, `<file>.next`, which no service reads.
Making a unit live (golive, on the host) checks the candidates, makes them live in one
rename each, applies them (a reload), and records a stamp: the digest of the live state it
applied. Whether that step is due is read from the host, not from what this run uploaded:
a candidate that differs from its live file, or live state that differs from the stamp (a
run killed between the rename and the reload), makes it due again.

The units (which files go live together) are declared in golive; this module reads their
state with shell, inside the one-command host read, and names what a deploy expects each
candidate to hold.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.api import FactBase

from wsgistack.engine.managed import File
from wsgistack.engine.programs import GOLIVE
from wsgistack.onhost.golive.layout import Unit, candidate
from wsgistack.onhost.golive.protocol import command

__all__ = ["StagedState", "Unit", "candidate", "digest_command", "expect",
           "expected_digests", "golive", "is_due"]


def golive(step: str, **arguments: object) -> str:
    """The command that runs one golive step on the host, with its arguments by the names
    golive's protocol declares: `python3 -I` (no user site, no environment's path, nothing
    from the working dir) running root's own copy of golive."""
    return f"python3 -I {GOLIVE} {shlex.join(command(step, **arguments))}"


def digest_command(unit: Unit) -> str:
    """Shell printing golive.digest(unit): one sha256sum over the unit's files (a missing
    one is left out), each link's target, the listing's entries with their link targets,
    hashed together."""
    files = " ".join(shlex.quote(str(path)) for path in unit.files)
    parts = [f"sha256sum {files}", *(f"readlink {shlex.quote(str(link))}" for link in unit.links)]
    if unit.listing is not None:
        parts.append(f"find {shlex.quote(str(unit.listing))} -mindepth 1 -maxdepth 1"
                     " -printf '%f %l\\n' | LC_ALL=C sort")
    return f"{{ {'; '.join(parts)}; }} 2>/dev/null | sha256sum"


def expected_digests(files: list[File]) -> list[str]:
    """The SHA-256 of what this deploy writes to each candidate file."""
    return [hashlib.sha256(file.content).hexdigest() for file in files]


def expect(unit: Unit, digests: list[str | None]) -> list[str]:
    """golive's --expect arguments: each candidate's path and the SHA-256 it must have (a
    digest, never the content; "missing" when there is no candidate, which golive
    refuses)."""
    return [f"{path}={digest or 'missing'}"
            for path, digest in zip(unit.candidates, digests, strict=True)]


class StagedState(FactBase[dict[str, bool]]):
    """Whether each candidate equals its live file ("in_step"), and whether the live state
    is the one last applied ("applied")."""

    default = dict

    def command(self, unit: Unit) -> str:
        # Builtins where they do (`read`, `${digest%% *}`): each process is a fork and an
        # exec on every converge.
        same = " && ".join(f"cmp -s {shlex.quote(str(candidate(path)))} {shlex.quote(str(path))}"
                           for path in unit.files)
        return (f"if {same}; then echo in_step=1; else echo in_step=0; fi;"
                f" digest=$({digest_command(unit)}); stamp=;"
                f" read -r stamp 2>/dev/null < {shlex.quote(str(unit.stamp))};"
                " if [ \"${digest%% *}\" = \"$stamp\" ]; then echo applied=1;"
                " else echo applied=0; fi")

    def process(self, output: list[str]) -> dict[str, bool]:
        return {key: value == "1" for key, value in (line.split("=", 1) for line in output)}


def is_due(state: dict[str, bool]) -> bool:
    return not (state.get("in_step") and state.get("applied"))
