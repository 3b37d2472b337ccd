"""The benchmark's figures as docs/performance.md and a plot of converge time per host count."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.series import Series

PLOT = "converge-vs-hosts.png"
HOST_COUNTS = (1, 3, 10)


def row(series: Series, values: list[float] | None = None, label: str = "",
        cpu: bool = True) -> str:
    low, median, high = series.stats(values)
    cpu_median = f"{series.stats([run.cpu_seconds for run in series.runs])[1]:.2f}" if cpu \
        else ""
    return (f"| {label or series.label} | {len(series.runs)} | {low:.2f} | {median:.2f}"
            f" | {high:.2f} | {cpu_median} |")


def phase_rows(series: Series) -> list[str]:
    return [row(series, [run.phases[phase] for run in series.runs],
                label=f"{series.label}: {phase}", cpu=False)
            for phase in series.runs[0].phases]


def cpu_floor(results: dict[str, Series], count: int) -> float:
    """Wall seconds a no-op converge of `count` hosts needs at least: the machine's CPU
    seconds for it, spread perfectly over every CPU."""
    series = results[f"noop-{count}"]
    return series.stats([run.cpu_seconds for run in series.runs])[1] / (os.cpu_count() or 1)


def peak_rss(series: Series) -> float:
    return max(run.peak_rss_mb for run in series.runs)


def targets(results: dict[str, Series]) -> list[str]:
    def median(key: str) -> float:
        return results[key].stats()[1]

    peak = peak_rss(results["noop-10"])
    checks = [  # issue 26's where it set one
        ("no-op converge of 3 hosts at most 2.0x the SSH baseline for 3 hosts",
         median("noop-3") / median("baseline-3"), 2.0, "x"),
        ("no-op converge of 10 hosts at most 1.5x the time for 1 host",
         median("noop-10") / median("noop-1"), 1.5, "x"),
        ("controller peak memory for 10 hosts under 200 MB", peak, 200, " MB"),
        ("redeploy of a new app version on one host at most 3 s", median("redeploy-1"), 3,
         " s"),
        ("controller: a new version's wheelhouse (its lock unchanged) under 1 s",
         median("build"), 1, " s"),
        ("fresh deploy of a bare host at most 1.3x its apt time (apt alone, the same"
         " packages)", median("fresh") / median("apt"), 1.3, "x"),
    ]
    floor = median("pyinfra-3") / median("baseline-3")
    return [*(f"| {name} | {value:.2f}{unit} | {'met' if value <= limit else 'MISSED'} |"
              for name, value, limit, unit in checks),
            "", f"pyinfra alone on the same 3 hosts (its start, the inventory and `true`) takes"
            f" {floor:.2f}x the SSH baseline: no deploy run by pyinfra goes under it."]


def plot(results: dict[str, Series], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4))
    for prefix, label in (("noop", "no-op converge"), ("dry", "--dry"),
                          ("baseline", "SSH baseline")):
        medians = [results[f"{prefix}-{count}"].stats()[1] for count in HOST_COUNTS]
        axes.plot(HOST_COUNTS, medians, marker="o", label=label)
    axes.plot(HOST_COUNTS, [cpu_floor(results, count) for count in HOST_COUNTS],
              linestyle="--", color="grey", label="CPU floor of the no-op converge")
    axes.set_xlabel("hosts")
    axes.set_ylabel("seconds (median)")
    axes.set_ylim(bottom=0)
    axes.set_xticks(HOST_COUNTS)
    axes.legend()
    axes.set_title("Converge time against host count")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_report(results: dict[str, Series], docs: Path) -> str:
    docs.mkdir(exist_ok=True)
    plot(results, docs / PLOT)
    lines = [
        "# Performance",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}, on sandbox hosts (Debian 12"
        f" under systemd-nspawn) on one controller ({platform.machine()}, "
        f"{os.cpu_count()} CPUs). Seconds, wall clock on the controller.",
        "",
        "| measurement | runs | min | median | max | machine CPU s (median) |",
        "|---|---|---|---|---|---|",
        *phase_rows(results["fresh"]),
        row(results["fresh"]),
        row(results["apt"]),
        *(row(results[f"{kind}-{count}"]) for kind in ("noop", "dry", "baseline")
          for count in HOST_COUNTS),
        row(results["pyinfra-3"]),
        row(results["noop-database-host"]),
        row(results["noop-production"]),
        row(results["build"]),
        row(results["redeploy-1"]),
        row(results["rolling"]),
        "",
        "Controller peak memory (max RSS of the pyinfra process), no-op converge: "
        + ", ".join(f"{count} host(s) {peak_rss(results[f'noop-{count}']):.0f} MB"
                    for count in HOST_COUNTS) + ".",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *targets(results),
        "",
        "The machine's CPUs bound a converge from below: the no-op converge used the CPU"
        " seconds in the table's last column, so on these "
        f"{os.cpu_count()} CPUs it needs at least "
        + ", ".join(f"{cpu_floor(results, count):.2f} s for {count} host(s)"
                    for count in HOST_COUNTS) + ".",
        "",
        f"![converge time against host count]({PLOT})",
        "",
    ]
    text = "\n".join(lines)
    (docs / "performance.md").write_text(text + _notes(docs))
    return text


def _notes(docs: Path) -> str:
    """The hand-written analysis below the figures, kept across runs."""
    notes = docs / "performance-notes.md"
    return "\n" + notes.read_text() if notes.exists() else ""
