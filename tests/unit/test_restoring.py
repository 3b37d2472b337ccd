"""restore.py's decisions, offline: which apps, whether the database goes with them, and
what the operations say each restore would replace."""

from dataclasses import replace
from pathlib import Path

import pytest

from tests.unit.test_database import PRODUCTION
from tests.unit.test_settings import group_data
from wsgistack.components import restoring
from wsgistack.config.environment import Member
from wsgistack.config.settings import Settings, SettingsError, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Staging's: its apps keep their data in files of their own (SQLite)."""
    return load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")


def test_the_restore_says_what_each_backup_replaces() -> None:
    assert restoring.data_replaced({"backup": "1a2b3c4d", "time": "2026-12-07 02:00:03 UTC",
                                    "files": 3, "bytes": 40960, "replaced": 2, "added": 1,
                                    "kept": 4}) == (
        "backup 1a2b3c4d of 2026-12-07 02:00:03 UTC, 3 files (40.0 KB): 2 replace the data"
        " dir's, 1 are added; 4 not in it stay as they are")
    assert restoring.database_replaced({
        "backup": "20261207-015047F", "type": "full", "ended": "2026-12-07 01:50:51 UTC",
        "databases": ["flasktodo", "postgres"], "size": "15 MB"}, "latest") == (
        "backup 20261207-015047F (full, ended 2026-12-07 01:50:51 UTC) and the WAL after it,"
        " up to latest, replace the whole cluster (flasktodo, postgres: 15 MB now)")
    assert [restoring.size(n) for n in (812, 3500, 27 * 1024 ** 2)] == [
        "812 bytes", "3.4 KB", "27.0 MB"]


def test_nothing_to_restore_from_stops_the_restore_in_one_line() -> None:
    with pytest.raises(SettingsError, match="web1: flasktodo: nothing to restore from: it"
                                            " holds no backup"):
        restoring.checked({"refused": "it holds no backup"}, "web1: flasktodo")
    plan = {"backup": "1a2b3c4d"}
    assert restoring.checked(plan, "web1: flasktodo") is plan


def test_one_app_is_restored_alone_and_an_unknown_one_is_refused(settings: Settings) -> None:
    [flasktodo] = restoring.apps_to_restore(settings, "flasktodo")
    assert flasktodo.name == "flasktodo"
    assert restoring.apps_to_restore(settings, None) == settings.apps
    with pytest.raises(SettingsError, match=r"app: 'nope' is no app of staging \(its apps:"
                                            r" flasktodo\)"):
        restoring.apps_to_restore(settings, "nope")


def test_the_database_goes_back_with_all_its_apps_or_not_at_all(settings: Settings) -> None:
    """pgBackRest restores the cluster whole: one app of two that keep their data there is
    refused; an app whose data is its own files leaves the database as it is."""
    where = replace(PRODUCTION, backup=Member("backup1", "10.9.0.14"))
    app = settings.apps[0]
    one, two = (replace(app, name=name, database_env="DATABASE_URL") for name in ("one", "two"))
    files = replace(app, name="files", database_env=None)
    both = replace(settings, apps=[one, two, files])
    assert restoring.restores_database(both, where, [one, two, files])
    assert not restoring.restores_database(both, where, [files])
    with pytest.raises(SettingsError, match="app: one's data is staging's database, which"
                                            " pgBackRest restores whole, with two's"):
        restoring.restores_database(both, where, [one])
    assert not restoring.restores_database(both, replace(where, backup=None), [one, two])
