"""golive's database steps, offline: a shared database migrated once (`migrate`, and a
switch that leaves it alone), and a database host's settings and roles (`database`) and
daily dumps (`database-backup`), in a scratch root with psql, pg_dump, postgres and
systemctl recorded. The app and PostgreSQL's account are the user running the tests."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.test_golive import APP, CONFIG, Host, host, install_release, sha256, write
from wsgistack.components.database import scram_verifier
from wsgistack.onhost.golive import database
from wsgistack.onhost.golive.files import Refused, Staged, digest
from wsgistack.onhost.golive.layout import Unit, candidate, database_unit

__all__ = ["host"]  # the fixture, shared with test_golive

URL = ("postgresql://app:p%40ss-word@10.0.0.9:5432/app?sslmode=verify-full"
       "&sslrootcert=%2Fetc%2Fssl%2Fwsgistack%2Fdatabase.crt")
# A stand-in that records its argv, the libpq variables it was given and its stdin, as a
# JSON line in {log} (whatever environment it is given), and writes --file= if asked.
# $STUB_FAIL names a program that fails.
RECORDER = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
record = {{"argv": sys.argv[1:], "stdin": "" if sys.stdin.isatty() else sys.stdin.read(),
           "env": {{k: v for k, v in os.environ.items() if k.startswith("PG")}}}}
open({log!r}, "a").write(json.dumps({{name: record}}) + "\\n")
for arg in sys.argv[1:]:
    if arg.startswith("--file="):
        open(arg.removeprefix("--file="), "w").write("a dump")
sys.exit(3 if os.environ.get("STUB_FAIL") == name else 0)
"""


def recorders(bin_dir: Path, log: Path, *names: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = bin_dir / name
        path.write_text(RECORDER.format(python=sys.executable, log=str(log)))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def calls(log: Path, name: str) -> list[dict]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [entry[name] for entry in map(json.loads, lines) if name in entry]


# --- a database the environment's hosts share -------------------------------------------

def test_a_switch_on_a_shared_database_neither_backs_up_nor_runs_release_commands(
        host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    Path(host.paths.database).write_text("")  # a SQLite file that must not be backed up
    done = host.switch("1.0.1", commands=([sys.executable, "-c", "raise SystemExit(9)"],),
                       extra=("--shared-database",))
    assert done.returncode == 0, done.stderr
    assert os.readlink(host.paths.current) == "releases/1.0.1"
    assert list(Path(host.paths.backups).iterdir()) == []


def migrate(host: Host, *commands: list[str], database_env: str = "") -> object:
    return host.golive("migrate", APP, "1.0.1", "--config", CONFIG, "--config-env", "APP_CONFIG",
                       "--prefix", "/app", "--keep-backups", "2",
                       *(["--database-env", database_env] if database_env else []),
                       *(arg for argv in commands
                         for arg in ("--release-command", json.dumps(argv))))


SEES = ("import json, os; open(os.environ['HOME'] + '/seen.json', 'w').write(json.dumps("
        "{'config': os.environ['APP_CONFIG'], 'url': os.environ.get('DATABASE_URL')}))")


def test_migrate_dumps_the_database_then_runs_the_commands_with_the_candidates(
        host: Host) -> None:
    """Once per environment, before any host switches: pg_dump (its password in libpq's
    variables, never argv), then the release commands with the candidate config and env."""
    release = install_release(host.paths, "1.0.1", time.time())
    write(candidate(host.paths.env_file), f"DATABASE_URL={json.dumps(URL)}\n", 0o640)
    write(candidate(host.paths.config(CONFIG)), "SECRET_KEY = 'k'\n", 0o640)
    recorders(Path(host.environ["PATH"].split(":")[0]), host.log, "pg_dump")
    done = migrate(host, [sys.executable, "-c", SEES], database_env="DATABASE_URL")
    assert done.returncode == 0, done.stderr
    [dump] = calls(host.log, "pg_dump")
    assert dump["env"] == {"PGHOST": "10.0.0.9", "PGPORT": "5432", "PGUSER": "app",
                           "PGPASSWORD": "p@ss-word", "PGDATABASE": "app",
                           "PGSSLMODE": "verify-full",
                           "PGSSLROOTCERT": "/etc/ssl/wsgistack/database.crt",
                           "PGCONNECT_TIMEOUT": "10"}
    assert not any("p@ss" in arg for arg in dump["argv"])
    [backup] = Path(host.paths.backups).glob(f"{APP}-*-before-1.0.1.dump")
    assert backup.read_text() == "a dump"
    seen = json.loads((Path(host.paths.data) / "seen.json").read_text())
    assert seen == {"config": f"{host.paths.config(CONFIG)}.next", "url": URL}
    assert os.readlink(host.paths.current) == "releases/1.0.0", "no host switched"
    assert release.exists()


def test_a_failed_migration_says_no_host_was_switched(host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    write(candidate(host.paths.env_file), "", 0o640)
    failed = migrate(host, [sys.executable, "-c", "raise SystemExit(4)"])
    assert failed.returncode == 1
    assert "failed (exit 4); no host was switched" in failed.stderr
    assert os.readlink(host.paths.current) == "releases/1.0.0"


# --- the database host ------------------------------------------------------------------

VERIFIER = scram_verifier("a-password-long-enough-0123456789abc", APP)


@pytest.fixture
def database_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch root with PostgreSQL 15's binary recorded, psql and systemctl on PATH."""
    root, log = tmp_path / "root", tmp_path / "calls.log"
    recorders(root / "usr/lib/postgresql/15/bin", log, "postgres")
    recorders(tmp_path / "bin", log, "psql", "pg_dump", "systemctl")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(database, "POSTGRES", APP)
    (root / "etc/postgresql/15/main/conf.d").mkdir(parents=True)
    (root / "etc/wsgistack/postgresql").mkdir(parents=True)
    return root


def stage(root: Path, settings: str, hba: str = "local all all peer\n",
          apps: list | None = None) -> dict[PurePosixPath, str]:
    unit = database_unit(PurePosixPath(root))
    roles = json.dumps({"apps": [{"name": APP, "verifier": VERIFIER}] if apps is None
                        else apps})
    contents = [settings, hba, "certificate\n", "key\n", roles]
    for path, content in zip(unit.candidates, contents, strict=True):
        write(path, content, 0o640)
    return {path: sha256(content.encode())
            for path, content in zip(unit.candidates, contents, strict=True)}


def test_database_settings_go_live_and_each_app_gets_its_role(database_host: Path) -> None:
    root, log = database_host, database_host.parent / "calls.log"
    database.apply_database("15", PurePosixPath(root), stage(root, "port = 5432\n"))
    unit = database_unit(PurePosixPath(root))
    assert Path(unit.files[0]).read_text() == "port = 5432\n"
    assert Path(unit.stamp).read_text().strip() == digest(unit)
    include = root / "etc/postgresql/15/main/conf.d/wsgistack.conf"
    assert include.read_text().endswith(
        f"include '{root}/etc/wsgistack/postgresql/postgresql.conf'\n"), \
        "the cluster's conf.d includes our settings, which stay in root's own dir"
    [checked] = calls(log, "postgres")
    assert "-C" in checked["argv"], "the settings parsed before PostgreSQL sees them"
    assert [call["argv"] for call in calls(log, "systemctl")][-1] == [
        "restart", "postgresql@15-main"]
    roles = calls(log, "psql")[-1]["stdin"]
    assert f"ALTER ROLE \"{APP}\" WITH LOGIN NOSUPERUSER" in roles and VERIFIER in roles
    assert f"REVOKE ALL ON DATABASE \"{APP}\" FROM PUBLIC;" in roles
    assert all(VERIFIER not in arg for call in calls(log, "psql") for arg in call["argv"])
    database.apply_database("15", PurePosixPath(root),
                          stage(root, "port = 5432\n", hba="local all all trust\n"))
    assert [call["argv"] for call in calls(log, "systemctl")][-1] == [
        "reload", "postgresql@15-main"], "only pg_hba.conf changed: a reload"


def test_settings_postgres_cannot_parse_are_never_left_live(
        database_host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = database_host
    monkeypatch.setenv("STUB_FAIL", "postgres")
    with pytest.raises(Refused, match="refused the candidate settings"):
        database.apply_database("15", PurePosixPath(root), stage(root, "port = 'nope'\n"))
    unit = database_unit(PurePosixPath(root))
    assert not any(os.path.exists(path) for path in unit.files), "as before: none live"
    assert not (root / "etc/postgresql/15/main/conf.d/wsgistack.conf").exists(), \
        "nor the include of them"


def test_the_database_check_notices_a_cluster_that_no_longer_includes_our_settings(
        database_host: Path) -> None:
    root = database_host
    database.apply_database("15", PurePosixPath(root), stage(root, "port = 5432\n"))
    (root / "etc/postgresql/15/main/conf.d/wsgistack.conf").write_text("# emptied\n")
    assert database.database_check(PurePosixPath(root)).splitlines()[0] == (
        f"{root}/etc/postgresql/15/main/conf.d/wsgistack.conf does not include our settings")


@pytest.mark.parametrize("entry", [
    {"name": "Bad;Name", "verifier": VERIFIER},
    {"name": "app", "verifier": "plain-password"},
    {"name": "app", "verifier": VERIFIER + "'; DROP ROLE postgres; --"},
])
def test_apps_json_holds_only_app_names_and_scram_verifiers(database_host: Path,
                                                            entry: dict) -> None:
    root = database_host
    with pytest.raises(Refused, match="not an app name and a SCRAM verifier"):
        database.apply_database("15", PurePosixPath(root),
                              stage(root, "port = 5432\n", apps=[entry]))


def test_the_daily_dump_keeps_the_newest_of_each_app(database_host: Path) -> None:
    root = database_host
    write(root / "etc/wsgistack/postgresql/apps.json",
          json.dumps({"apps": [{"name": APP, "verifier": VERIFIER}]}))
    backups = root / "var/lib/wsgistack/database-backups"
    backups.mkdir(parents=True)
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        write(backups / f"{APP}-{stamp}.dump", "old")
    database.backup_databases(PurePosixPath(root), keep=2)
    kept = sorted(path.name for path in backups.iterdir())
    assert len(kept) == 2 and kept[0] == f"{APP}-20260102T000000Z.dump"
    assert (backups / kept[1]).read_text() == "a dump"


def test_put_back_leaves_no_file_that_was_not_live_before(tmp_path: Path) -> None:
    live, new = tmp_path / "was-live", tmp_path / "is-new"
    write(live, "old\n")
    unit = Unit("test", (PurePosixPath(live), PurePosixPath(new)))
    for path in unit.candidates:
        write(path, "candidate\n")
    staged = Staged.verified(unit, {path: sha256(b"candidate\n") for path in unit.candidates})
    staged.make_live()
    staged.put_back()
    assert live.read_text() == "old\n" and not new.exists()
