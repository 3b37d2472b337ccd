"""What the benchmarks measure: one timed run, and several runs of one measurement."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Timed:
    seconds: float
    peak_rss_mb: float
    phases: dict[str, float] = field(default_factory=dict)
    # CPU time the whole machine spent meanwhile: controller and hosts share its CPUs.
    cpu_seconds: float = 0.0


def busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent busy since boot (all CPUs, not idle or iowait)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Series:
    """Several runs of one measurement."""

    label: str
    runs: list[Timed] = field(default_factory=list)

    def seconds(self) -> list[float]:
        return [run.seconds for run in self.runs]

    def stats(self, values: list[float] | None = None) -> tuple[float, float, float]:
        values = self.seconds() if values is None else values
        return min(values), statistics.median(values), max(values)
