"""Staged config: written beside the live file, checked, then made live, never lost.

A deploy writes each config file as a candidate, `<file>.next`, which no service reads.
Making a unit live (golive, on the host) checks the candidates, makes them live in one
rename each, applies them (a reload), and records a stamp: the digest of the live state it
applied. Whether that step is due is read from the host, not from what this run uploaded:
a candidate that differs from its live file, or live state that differs from the stamp (a
run killed between the rename and the reload), makes it due again.

The units (which files go live together) are declared in golive; this module reads what
their state is made of, inside the one-command host read, computes it (as golive's
files.digest does), and names what a deploy expects each candidate to hold.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra.api import FactBase

from wsgistack.engine.hoststate import HostState
from wsgistack.engine.managed import File
from wsgistack.engine.programs import GOLIVE
from wsgistack.onhost.golive.layout import Unit, candidate
from wsgistack.onhost.golive.protocol import command

# What starts each part of StagedState's output after the sums (its lines would never be one).
LINK, LISTING, STAMP = "@link", "@listing", "@stamp"

__all__ = [
    "StagedState",
    "Unit",
    "candidate",
    "expect",
    "expected_digests",
    "golive",
    "is_due",
    "unit_state",
]


def golive(step: str, **arguments: object) -> str:
    """The command that runs one golive step on the host, with its arguments by the names
    golive's protocol declares: `python3 -I` (no user site, no environment's path, nothing
    from the working dir) running root's own copy of golive."""
    return f"python3 -I {GOLIVE} {shlex.join(command(step, **arguments))}"


def expected_digests(files: list[File]) -> list[str]:
    """The SHA-256 of what this deploy writes to each candidate file."""
    return [hashlib.sha256(file.content).hexdigest() for file in files]


def expect(unit: Unit, digests: list[str | None]) -> list[str]:
    """golive's --expect arguments: each candidate's path and the SHA-256 it must have (a
    digest, never the content; "missing" when there is no candidate, which golive
    refuses)."""
    return [f"{path}={digest or 'missing'}"
            for path, digest in zip(unit.candidates, digests, strict=True)]


class StagedState(FactBase[dict]):
    """Whether each candidate equals its live file ("in_step"), and whether the live state
    is the one last applied ("applied"): its digest, as golive's files.digest makes it, is
    the stamp. The host prints what both are made of (one sha256sum of the live files and
    the candidates, each link's target, the listing, the stamp), and they are computed
    here: a process on the host is a fork and an exec in every converge."""

    default = dict

    def command(self, unit: Unit) -> str:
        files = " ".join(shlex.quote(str(path)) for path in (*unit.files, *unit.candidates))
        parts = [f"sha256sum -- {files}"]
        parts += [f"echo {LINK}; readlink -- {shlex.quote(str(link))}" for link in unit.links]
        if unit.listing is not None:
            parts.append(f"echo {LISTING}; find {shlex.quote(str(unit.listing))} -mindepth 1"
                         " -maxdepth 1 -printf '%f %l\\n' | LC_ALL=C sort")
        parts.append(f"echo {STAMP}; read -r stamp < {shlex.quote(str(unit.stamp))}"
                     " && echo \"$stamp\"")
        return "; ".join(parts)

    def process(self, output: list[str]) -> dict:
        sums: dict[str, str] = {}
        links: list[str] = []
        listing: list[str] = []
        stamp, section = "", ""
        for line in output:
            if line in (LINK, LISTING, STAMP):
                section = line
            elif section == "":
                digest, _, path = line.partition("  ")
                sums[path] = digest
            elif section == LINK:
                links.append(line)
            elif section == LISTING:
                listing.append(line)
            else:
                stamp = line
        return {"sums": sums, "links": links, "listing": listing, "stamp": stamp}


def unit_state(read: dict, unit: Unit) -> dict[str, bool]:
    """in_step and applied of `unit`, from what StagedState read of it (nothing, where the
    host was not read: neither)."""
    sums = read.get("sums", {})
    in_step = all(str(live) in sums and sums.get(str(candidate(live))) == sums[str(live)]
                  for live in unit.files)
    text = "".join(f"{sums[str(path)]}  {path}\n" for path in unit.files if str(path) in sums)
    text += "".join(f"{line}\n" for line in (*read.get("links", []), *read.get("listing", [])))
    applied = hashlib.sha256(text.encode()).hexdigest() == read.get("stamp")
    return {"in_step": in_step, "applied": applied}


def is_due(seen: HostState, unit: Unit) -> bool:
    """Whether golive must make `unit` live: a candidate differs from its live file, or the
    live state is not the one last applied."""
    return not all(unit_state(seen.get(StagedState, unit=unit), unit).values())
