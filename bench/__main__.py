"""Benchmarks on sandbox hosts: `make bench`, never part of `make test`.

Measures, each at least BENCH_RUNS times (default 5), reporting min, median and max:
a fresh deploy of a bare host split by phase, and apt alone on another bare host; a no-op
converge and a --dry run on 1, 3 and 10 converged hosts, a no-op converge of the database
host alone and of production (9 web hosts and its database host), a redeploy of a new app
version on one host and rolled across the production group, a baseline of one SSH round
trip per host reading the same state, and pyinfra alone on 3 hosts.
Writes docs/performance.md and docs/converge-vs-hosts.png, and prints the figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

from bench.report import write_report
from bench.series import Series, Timed, busy_cpu_seconds
from tests.integration.helpers import (
    REPO,
    Sandbox,
    app_release,
    apps_data,
    deploy_command,
    provide_production_tls,
    sandbox_cli,
)
from wsgistack.build import sources, wheelhouse
from wsgistack.build.wheelhouse import Target
from wsgistack.components.base import PACKAGES
from wsgistack.paths import BUILD_DIR

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
# 10 web hosts and production's database host
FLEET = ("bench", "10.183.0.0/24", "staging=1,production=9,production-db=1")
DATABASE_PASSWORD = {"PRODUCTION_FLASKTODO_DATABASE_PASSWORD":
                     "bench-database-password-0123456789-abcdefghij"}
BARE = ("benchb", "10.184.0.0/24", "staging=1")  # made anew for each fresh deploy
HOST_COUNTS = (1, 3, 10)
PHASES = {"waiting for apt (what ran beside it did not cover)": "Wait for nginx, supervisor",
          "wheelhouse upload": "Upload the flasktodo",
          "venv build": "as a new release"}
# apt alone on a bare host, installing what a web host's deploy installs (the fresh deploy's
# target is a ratio to it)
APT_ALONE = ("apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y install"
             f" --no-install-recommends {' '.join(PACKAGES)}")
# What a converge reads, read in one SSH round trip: packages, managed files, the venv.
BASELINE_READ = (
    "dpkg-query -W nginx supervisor python3-venv;"
    " sha256sum /etc/nginx/sites-available/wsgistack* /etc/flasktodo/*"
    " /etc/supervisor/conf.d/flasktodo.conf* /etc/tmpfiles.d/flasktodo.conf"
    " /usr/local/lib/wsgistack/gunicorn-herder;"
    " readlink /opt/flasktodo/current; /opt/flasktodo/current/venv/bin/python -c"
    " 'import importlib.metadata as m; print(sorted(f\"{d.name}=={d.version}\""
    " for d in m.distributions()))'")


def run_pyinfra(sandbox: Sandbox, *args: str, secrets_dir: Path, entry: str = "deploy.py"
                ) -> Timed:
    """One pyinfra run; time per operation from when pyinfra starts each one."""
    command, env = deploy_command(sandbox, *args, secrets_dir=secrets_dir,
                                  extra_env=DATABASE_PASSWORD, entry=entry)
    env["PYTHONUNBUFFERED"] = "1"
    busy, started = busy_cpu_seconds(), time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    marks: list[tuple[float, str]] = []
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("--> Starting operation:") or line.startswith("--> Results"):
            marks.append((time.monotonic(), line.split(":", 1)[-1].strip()))
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds, cpu_seconds = time.monotonic() - started, busy_cpu_seconds() - busy
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: pyinfra {' '.join(args)} failed:\n{''.join(output[-40:])}")
    phases = {phase: sum(end - start for (start, name), (end, _) in pairwise(marks)
                         if needle in name)
              for phase, needle in PHASES.items()}
    phases["the rest (connect, facts, other operations)"] = seconds - sum(phases.values())
    return Timed(seconds, usage.ru_maxrss / 1024, phases, cpu_seconds)


def limit(sandbox: Sandbox, count: int) -> list[str]:
    """The first `count` web hosts."""
    names = [host["name"] for host in sandbox.hosts() if not host["group"].endswith("-db")][:count]
    return [arg for name in names for arg in ("--limit", name)]


def pyinfra_alone(sandbox: Sandbox, count: int, secrets_dir: Path) -> Timed:
    """pyinfra's own share of a no-op converge: its start, this inventory, a connection to
    each of the first `count` web hosts and `true` there. No run of `pyinfra inventory.py
    deploy.py` can take less."""
    return run_pyinfra(sandbox, "-y", *limit(sandbox, count), "--", "true",
                       secrets_dir=secrets_dir, entry="exec")


def baseline(sandbox: Sandbox, count: int) -> Timed:
    """One SSH round trip per host, all hosts at once, reading what a converge reads."""
    hosts = [host for host in sandbox.hosts() if not host["group"].endswith("-db")][:count]
    busy, started = busy_cpu_seconds(), time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda host: sandbox.ssh(host, BASELINE_READ), hosts))
    return Timed(time.monotonic() - started, 0, cpu_seconds=busy_cpu_seconds() - busy)


def fresh_deploys(secrets_dir: Path) -> tuple[Series, Series]:
    """A fresh deploy of a bare host, and apt alone on another bare host, RUNS times each."""
    deploys = Series("fresh deploy of a bare Debian 12 host")
    apt = Series(f"apt alone on a bare Debian 12 host: {', '.join(PACKAGES)}")
    for _ in range(RUNS):
        deploys.runs.append(on_a_bare_host(
            lambda sandbox: run_pyinfra(sandbox, "-y", secrets_dir=secrets_dir)))
        apt.runs.append(on_a_bare_host(apt_alone))
    return deploys, apt


def on_a_bare_host(measure: Callable[[Sandbox], Timed]) -> Timed:
    sandbox = Sandbox.up(*BARE)
    try:
        return measure(sandbox)
    finally:
        sandbox.down()


def apt_alone(sandbox: Sandbox) -> Timed:
    busy, started = busy_cpu_seconds(), time.monotonic()
    sandbox.ssh(sandbox.hosts()[0], APT_ALONE)
    return Timed(time.monotonic() - started, 0, cpu_seconds=busy_cpu_seconds() - busy)


BOOKWORM = Target("3.11", "x86_64", "2.36")  # the fleet's hosts


def build(source: Path) -> Timed:
    """Build a version's wheelhouse ahead of its redeploy, so that figure is the hosts'.
    Cold: a build left by an earlier bench run of the same version is removed first."""
    wheelhouse.forget("flasktodo")
    shutil.rmtree(BUILD_DIR / "apps" / f"flasktodo-{sources.digest(source)}",
                  ignore_errors=True)  # and its own wheel
    busy, started = busy_cpu_seconds(), time.monotonic()
    wheelhouse.build("flasktodo", source, None, BOOKWORM)  # the fleet's hosts
    return Timed(time.monotonic() - started, 0, cpu_seconds=busy_cpu_seconds() - busy)


def repeat(label: str, measure: Callable[[], Timed]) -> Series:
    return Series(label, [measure() for _ in range(RUNS)])


def main() -> None:
    secrets_dir = Path(tempfile.mkdtemp(prefix="bench-secrets-"))
    provide_production_tls(secrets_dir)
    releases = Path(tempfile.mkdtemp(prefix="bench-releases-"))
    results: dict[str, Series] = {}
    results["fresh"], results["apt"] = fresh_deploys(secrets_dir)
    fleet = Sandbox.up(*FLEET)
    try:
        first = run_pyinfra(fleet, "-y", secrets_dir=secrets_dir)
        print(f"fleet of 10 deployed in {first.seconds:.1f}s")
        for count in HOST_COUNTS:
            results[f"noop-{count}"] = repeat(
                f"no-op converge, {count} host(s)",
                lambda c=count: run_pyinfra(fleet, "-y", *limit(fleet, c), secrets_dir=secrets_dir))
            results[f"dry-{count}"] = repeat(
                f"--dry on converged hosts, {count} host(s)",
                lambda c=count: run_pyinfra(fleet, "--dry", *limit(fleet, c),
                                            secrets_dir=secrets_dir))
            results[f"baseline-{count}"] = repeat(
                f"baseline: one SSH round trip per host, {count} host(s)",
                lambda c=count: baseline(fleet, c))
        results["pyinfra-3"] = repeat(
            "pyinfra alone: its start, the inventory and `true` on 3 hosts",
            lambda: pyinfra_alone(fleet, 3, secrets_dir))
        results["noop-database-host"] = repeat(
            "no-op converge, the database host alone",
            lambda: run_pyinfra(fleet, "-y", "--limit", fleet.host("production-db1")["name"],
                                secrets_dir=secrets_dir))
        results["noop-production"] = repeat(
            "no-op converge, production: 9 web hosts and its database host",
            lambda: run_pyinfra(fleet, "-y", "--limit", "production", secrets_dir=secrets_dir))
        sources = [app_release(releases, f"2.0.{n}") for n in range(1, 2 * RUNS + 1)]
        results["build"] = Series("controller: build the wheelhouse of a new version",
                                  [build(source) for source in sources])
        one_host, rolling = sources[:RUNS], sources[RUNS:]
        results["redeploy-1"] = Series("redeploy of a new app version, 1 host", [
            run_pyinfra(fleet, "-y", "--limit", fleet.hosts("staging")[0]["name"],
                        "--data", apps_data(source), secrets_dir=secrets_dir)
            for source in one_host])
        results["rolling"] = Series("redeploy of a new app version rolled across production"
                                    " (9 web hosts, batch size 1; its database migrated"
                                    " once)", [
            run_pyinfra(fleet, "-y", "--limit", "production", "--data", apps_data(source),
                        secrets_dir=secrets_dir)
            for source in rolling])
    finally:
        fleet.down()
    print(write_report(results, REPO / "docs"))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it creates sandbox hosts)")
    sandbox_cli(FLEET[0], "down", check=False)
    main()
