"""status.py's report, offline: what golive status and the health probe answered, as the
operator reads it."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.unit.test_settings import group_data
from wsgistack.components.status import report_lines
from wsgistack.config.settings import Settings, load_settings

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
HEALTHY = {"status": "ok", "version": "1.1.0"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")


def test_a_web_hosts_apps_certificate_and_last_steps(settings: Settings) -> None:
    version = settings.apps[0].version
    found = {"apps": {"flasktodo": {"live": version, "kept": ["1.0.0", version],
                                    "program": "RUNNING"}},
             "certificate": {"not_after": datetime(2027, 3, 7, 2, 0, tzinfo=UTC).timestamp(),
                             "names": ["staging.flasktodo.test"]},
             "history": [
                 {"at": "2026-12-07 02:30:11 UTC", "user": "admin", "step": "switch",
                  "arguments": {"app": "flasktodo"}, "release_before": "1.0.0",
                  "release_after": version, "outcome": "ok"},
                 {"at": "2026-12-07 02:31:00 UTC", "user": "root", "step": "site",
                  "arguments": {"site": "wsgistack"}, "outcome": "failed (1)"}],
             "health": [{**HEALTHY, "version": version}] * 2}
    assert report_lines(settings, found, NOW) == [
        f"flasktodo {version} live (kept 1.0.0, {version}), RUNNING, healthy",
        "certificate for staging.flasktodo.test, ends 2027-03-07 (89 days)",
        "last go-live steps: 2026-12-07 02:31:00 UTC root: site, failed (1); 2026-12-07"
        f" 02:30:11 UTC admin: switch flasktodo 1.0.0 -> {version}, ok"]


def test_an_unhealthy_app_and_a_stopped_database_are_said(settings: Settings) -> None:
    found = {"apps": {"flasktodo": {"live": None, "kept": [], "program": "FATAL"}},
             "certificate": {}, "history": [],
             "health": [{"status": "error", "error": "HTTP 502: Bad Gateway"}] * 2}
    lines = report_lines(settings, found, NOW)
    assert lines[0] == ("flasktodo no release live (kept none), FATAL, UNHEALTHY: HTTP 502: Bad"
                        " Gateway; HTTP 502: Bad Gateway")
    assert lines[1:] == ["no certificate live", "last go-live steps: none recorded"]
    database = report_lines(settings, {"database": {"running": False}, "history": []}, NOW)
    assert database[0] == "PostgreSQL NOT RUNNING; no archiving"
    assert report_lines(settings, {}, NOW) == ["not deployed (no golive on the host)"]
