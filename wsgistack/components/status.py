"""What runs where, read only (status.py, as `pulumi stack output` and `kamal details`):
each host answers one command, golive status and the apps' health probe, and the report
says each app's live and kept releases, its program and health, the site's certificate and
its expiry, the database host's state, and the last go-live steps (who, when, from which
release to which) from the host's history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyinfra.api import FactBase, State
from pyinfra.api.state import BaseStateCallback

from wsgistack.components.archiving import archive_report
from wsgistack.config.settings import AppSettings, Settings
from wsgistack.engine.health import checks, is_healthy, probe_command, replies_in
from wsgistack.engine.staged import golive
from wsgistack.engine.summary import run_callback

SHOWN_STEPS = 5  # the last go-live steps a host's report lists


class HostStatus(FactBase[dict[str, Any]]):
    """golive status's report, with "health": the probe's replies (each app's checks in
    order); {} where golive is not on the host yet."""

    default = dict

    def command(self, apps: tuple[str, ...], site: str, database: bool, host_header: str,
                urls: tuple[str, ...]) -> str:
        probe = f"; {probe_command(host_header, 0, urls)} || true" if urls else ""
        return (f"{golive('status', apps=list(apps), site=site, database=database)}"
                f" 2>/dev/null || echo '{{}}'{probe}")

    def process(self, output: list[str]) -> dict[str, Any]:
        if not output:
            return {}
        report = dict(json.loads(output[0]))
        return {**report, "health": replies_in(output[1:])} if report else {}


def probes(settings: Settings) -> tuple[str, ...]:
    return tuple(url for app in settings.apps for _check, url in checks(settings, app))


def app_line(app: AppSettings, found: dict[str, Any], replies: list[dict]) -> str:
    """e.g. "flasktodo 1.1.0 live (kept 1.0.0, 1.1.0), RUNNING, healthy"."""
    live = f"{found['live']} live" if found.get("live") else "no release live"
    health = "healthy" if replies and all(is_healthy(each, app) for each in replies) else \
        "UNHEALTHY: " + "; ".join(each.get("error") or f"version {each.get('version')}"
                                  for each in replies if not is_healthy(each, app))
    return (f"{app.name} {live} (kept {', '.join(found.get('kept') or ['none'])}),"
            f" {found.get('program', 'not running')}, {health}")


def certificate_line(found: dict[str, Any], now: datetime) -> str:
    if not found.get("not_after"):
        return "no certificate live"
    ends = datetime.fromtimestamp(found["not_after"], UTC)
    return (f"certificate for {','.join(found.get('names', [])) or 'no name'}, ends"
            f" {ends:%Y-%m-%d} ({(ends - now).days} days)")


def step_line(step: dict[str, Any]) -> str:
    """e.g. "2026-12-07 02:30:11 UTC admin: switch flasktodo 1.0.0 -> 1.1.0, ok"; the same
    release: "switch flasktodo 1.1.0 (its config), ok"."""
    arguments = step.get("arguments", {})
    what = " ".join(str(value) for value in (step["step"], arguments.get("app")) if value)
    before, after = step.get("release_before"), step.get("release_after")
    if before != after:
        what += f" {before or '(none)'} -> {after}"
    elif after:
        what += f" {after} (its config)"
    return f"{step['at']} {step['user']}: {what}, {step['outcome']}"


def report_lines(settings: Settings, found: dict[str, Any], now: datetime) -> list[str]:
    """The host's report, a line each: its apps, certificate, database and last steps."""
    if not found:
        return ["not deployed (no golive on the host)"]
    replies, lines = list(found.get("health", [])), []
    for app in settings.apps if "certificate" in found else []:
        count = len(checks(settings, app))
        mine, replies = replies[:count], replies[count:]
        lines.append(app_line(app, found["apps"].get(app.name, {}), mine))
    if "certificate" in found:
        lines.append(certificate_line(found["certificate"], now))
    if "database" in found:
        database = found["database"]
        lines.append(f"PostgreSQL {'running' if database.get('running') else 'NOT RUNNING'};"
                     f" {archive_report(database) if database.get('full') else 'no archiving'}")
    steps = found.get("history", [])[-SHOWN_STEPS:]
    lines.append("last go-live steps: " + ("; ".join(map(step_line, reversed(steps)))
                                           if steps else "none recorded"))
    return lines


@dataclass
class StatusReport(BaseStateCallback):
    """The run's report by host; printed once pyinfra has disconnected from every host."""

    lines: dict[str, list[str]] = field(default_factory=dict)
    disconnected: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, state: State) -> StatusReport:
        return run_callback(state, cls)

    def host_disconnect(self, state: State, host: object) -> None:  # pyinfra's callback
        self.disconnected.add(host.name)
        if self.disconnected >= {each.name for each in state.activated_hosts}:
            print("\n--> Status", *(f"    {name}: {line}" for name in sorted(self.lines)
                                    for line in self.lines[name]), sep="\n")
