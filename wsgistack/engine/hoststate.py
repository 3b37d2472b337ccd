"""The host's state, read in one round trip: what every component compares against.

pyinfra reads each fact with its own command over SSH (a round trip each), and its
operations read several facts each, twice when a deploy asks whether they will change.
So the stack gathers what every component needs to know (the state of each managed path
and a few reads of our own facts) and reads it all with one command. A component calls an
operation only where that state differs from what it declares; the operation makes the
change (wsgistack.engine.managed: one command each). A converged host costs one command.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase

# Starts each read's section of the batch's output; followed by the read's index.
MARK = "@@wsgistack-read"


@dataclass(frozen=True)
class Read:
    """One of our facts with its arguments, to be read in a batch."""

    fact: type[FactBase]
    arguments: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, fact: type[FactBase], **arguments: Any) -> Read:
        return cls(fact, tuple(sorted(arguments.items())))

    def command(self) -> str:
        return self.fact().command(**dict(self.arguments))

    def process(self, lines: list[str]) -> Any:
        """As pyinfra does: no output gives the fact's default."""
        fact = self.fact()
        return fact.process(lines) if lines else fact.default()


@dataclass(frozen=True)
class PathState:
    kind: str  # stat's %F: "regular file", "directory", "symbolic link", ...
    mode: int  # permission bits as written in octal, e.g. 640
    user: str
    group: str
    sha1: str = ""  # regular files only

    def matches(self, kind: str, user: str, group: str, mode: str) -> bool:
        return (self.kind, self.user, self.group, self.mode) == (kind, user, group, int(mode))


class PathStates(FactBase[dict[str, PathState]]):
    """Type, mode and owner of each path that exists, and the SHA-1 of those `hashed`
    (files whose content is declared; never a log, which only grows)."""

    default = dict

    def command(self, paths: tuple[str, ...], hashed: tuple[str, ...] = ()) -> str:
        quoted = " ".join(map(shlex.quote, paths))
        digests = (f" sha1sum -- {' '.join(map(shlex.quote, hashed))} 2>/dev/null"
                   " | sed 's/^/H\t/';") if hashed else ""
        return f"stat -c 'S\t%n\t%F\t%a\t%U\t%G' -- {quoted} 2>/dev/null;{digests} true"

    def process(self, output: list[str]) -> dict[str, PathState]:
        states, sums = {}, {}
        for line in output:
            tag, _, rest = line.partition("\t")
            if tag == "S":
                path, kind, mode, user, group = rest.split("\t")
                # stat says "regular empty file" for an empty one: a file all the same.
                kind = kind.replace("regular empty file", "regular file")
                states[path] = PathState(kind, int(mode), user, group)
            elif tag == "H":
                digest, _, path = rest.partition("  ")
                sums[path] = digest
        return {path: PathState(state.kind, state.mode, state.user, state.group,
                                sums.get(path, ""))
                for path, state in states.items()}


class Batch(FactBase[dict[int, list[str]]]):
    """Several of our facts in one command: each one's output lines, by its index.

    Each read runs in the batch's own shell, not a subshell of its own: a fork is about a
    millisecond of the host's CPU, and a converge reads 15 or so. So a read's command must
    not `exit`, and a variable it sets it sets first."""

    default = dict

    def command(self, reads: tuple[Read, ...]) -> str:
        return "\n".join(f"echo {MARK} {index}; {{ {read.command()}\n}} 2>/dev/null"
                         for index, read in enumerate(reads)) + "\ntrue"

    def process(self, output: list[str]) -> dict[int, list[str]]:
        sections: dict[int, list[str]] = {}
        current: list[str] = []
        for line in output:
            if line.startswith(MARK + " "):
                current = sections.setdefault(int(line.split()[1]), [])
            else:
                current.append(line)
        return sections


@dataclass(frozen=True)
class HostState:
    """What one batch read of a host found."""

    paths: dict[str, PathState]
    facts: dict[Read, Any]
    # False when this run changes the host before its items are compared (it installs
    # packages, which make paths of their own: nginx enables Debian's default site): the
    # read may be stale, so every item is applied again (each sets its whole declared state).
    settled: bool = True
    read_at: float = 0.0  # time.monotonic() when the host answered

    @staticmethod
    def batch(paths: Iterable[str], hashed: Iterable[str], reads: Iterable[Read]
              ) -> tuple[Read, ...]:
        """The reads of one command: the state of `paths` (and the content digest of those
        `hashed`) first, then each of `reads` once."""
        path_read = Read.of(PathStates, paths=tuple(sorted(set(paths))),
                            hashed=tuple(sorted(set(hashed))))
        return (path_read, *dict.fromkeys(reads))

    @classmethod
    def read(cls, batch: tuple[Read, ...]) -> HostState:
        """Read `batch` (from HostState.batch) in one command."""
        sections = host.get_fact(Batch, reads=batch)
        facts = {read: read.process(sections.get(index, []))
                 for index, read in enumerate(batch)}
        return cls(facts.pop(batch[0]), facts, read_at=time.monotonic())

    def path(self, path: object) -> PathState | None:
        """The path's state; None if it does not exist."""
        return self.paths.get(str(path))

    def get(self, fact: type[FactBase], **arguments: Any) -> Any:
        return self.value(Read.of(fact, **arguments))

    def value(self, read: Read) -> Any:
        """A fact read in the batch. Every read is declared (a component's reads()), so a
        converged host costs one command: an undeclared one is a bug, not a slow path."""
        if read not in self.facts:
            raise LookupError(f"{read} was not read with the host's state: declare it in"
                              " its component's reads() (wsgistack/engine/component.py)")
        return self.facts[read]
