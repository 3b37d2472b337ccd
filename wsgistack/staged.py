"""Staged config: written beside the live file, checked, then made live, never lost.

A deploy writes each config file as a candidate, `<file>.next`, which no service reads.
Making it live is one step that checks the candidates, copies them over the live files
(atomically: copy, then rename), applies them (a reload), and records a stamp: the digest
of the live state it applied. Whether that step is due is read from the host, not from
what this run uploaded: a candidate that differs from its live file, or live state that
differs from the stamp (a run killed between copy and reload), makes it due again.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase

STAMPS = "/var/lib/wsgistack/applied"


def candidate(path: object) -> str:
    return f"{path}.next"


@dataclass(frozen=True)
class StagedFiles:
    """Config files that go live together, and the live state their stamp covers."""

    unit: str  # names the stamp, e.g. "nginx-site", "app-flasktodo"
    files: tuple[str, ...]
    # A shell command printing more live state the stamp covers (link targets, listings).
    also: str = "true"

    @property
    def stamp(self) -> str:
        return f"{STAMPS}/{self.unit}"

    def digest(self) -> str:
        """Shell: the digest of the live state (missing files hash as missing)."""
        files = " ".join(shlex.quote(path) for path in self.files)
        return f"{{ sha256sum {files}; {self.also}; }} 2>&1 | sha256sum | cut -c1-64"

    def keep_previous(self) -> str:
        """Shell: copy each live file to <file>.prev, to put back if applying fails."""
        return "; ".join(f"if [ -e {q} ]; then cp -p {q} {q}.prev; fi"
                         for q in map(shlex.quote, self.files))

    def put_back_previous(self) -> str:
        return "; ".join(f"if [ -e {q}.prev ]; then mv -f {q}.prev {q}; fi"
                         for q in map(shlex.quote, self.files))

    def forget_previous(self) -> str:
        return "rm -f " + " ".join(f"{shlex.quote(path)}.prev" for path in self.files)

    def promote(self) -> str:
        """Shell: each candidate replaces its live file in one rename (owner and mode kept)."""
        return "; ".join(
            f"cp -p {shlex.quote(candidate(path))} {q}.tmp && mv -f {q}.tmp {q}"
            for path, q in ((path, shlex.quote(path)) for path in self.files))

    def record(self) -> str:
        """Shell: write the stamp, last, once the live state has been applied."""
        stamp = shlex.quote(self.stamp)
        return (f"mkdir -p {STAMPS} && ({self.digest()}) > {stamp}.tmp"
                f" && mv -f {stamp}.tmp {stamp}")


class StagedState(FactBase[dict[str, bool]]):
    """Whether each candidate equals its live file ("in_step"), and whether the live state
    is the one last applied ("applied")."""

    default = dict

    def command(self, staged: StagedFiles) -> str:
        same = " && ".join(f"cmp -s {shlex.quote(candidate(path))} {shlex.quote(path)}"
                           for path in staged.files)
        return (f"if {same}; then echo in_step=1; else echo in_step=0; fi;"
                f" if [ \"$({staged.digest()})\" = \"$(cat {staged.stamp} 2>/dev/null)\" ];"
                f" then echo applied=1; else echo applied=0; fi")

    def process(self, output: list[str]) -> dict[str, bool]:
        return {key: value == "1" for key, value in (line.split("=", 1) for line in output)}


def is_due(state: dict[str, bool]) -> bool:
    return not (state.get("in_step") and state.get("applied"))
