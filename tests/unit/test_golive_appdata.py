"""golive's app data off the host, offline: the data dir streamed by the app's user
(SQLite by its online backup, links and a live database's -wal never sent), unpacked back
(never outside the dir, never through a link), and the steps around restic, with a
stand-in restic that keeps each stream as a snapshot in a scratch dir. The app's user is
whoever runs the tests."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import stat
import sys
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.test_golive import APP, sha256, write
from wsgistack.onhost.golive import appdata
from wsgistack.onhost.golive.files import Refused
from wsgistack.onhost.golive.layout import AppPaths, app_backups_unit

# restic as the steps use it: `backup --stdin` keeps stdin as a snapshot, `snapshots`
# lists them, `dump` writes one back, `cat config` fails until `init`.
RESTIC = """#!{python}
import json, os, sys, time
store = {store!r}
args = sys.argv[1:]
if "init" in args:
    os.makedirs(store, exist_ok=True); sys.exit(0)
if "cat" in args:
    if os.environ.get("STUB_WRONG_PASSWORD"):
        sys.exit("Fatal: wrong password or no key found")
    sys.exit(0 if os.path.isdir(store) else 1)
if "backup" in args:
    data = sys.stdin.buffer.read()
    os.makedirs(store, exist_ok=True)
    name = "%.6f" % time.time()
    open(os.path.join(store, name), "wb").write(data)
    print(json.dumps({{"message_type": "summary", "snapshot_id": name}}))
    sys.exit(0)
if "snapshots" in args:
    names = sorted(os.listdir(store)) if os.path.isdir(store) else []
    print(json.dumps([{{"id": n, "short_id": n[-8:], "time": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                       time.gmtime(float(n))) + "Z"}}
                      for n in names]))
    sys.exit(0)
if "dump" in args:
    sys.stdout.buffer.write(open(os.path.join(store, args[args.index("dump") + 1]), "rb").read())
    sys.exit(0)
if "forget" in args and "--keep-within" in args:  # keeps what is younger: all here
    open({log!r}, "a").write(" ".join(args) + "\\n"); sys.exit(0)
if "forget" in args:
    os.unlink(os.path.join(store, args[-1])); sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch root with the app's data dir and a live restic.json; restic stood in."""
    root = tmp_path / "root"
    paths = AppPaths(APP, PurePosixPath(root))
    Path(paths.backups).mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    restic = bin_dir / "restic"
    restic.write_text(RESTIC.format(python=sys.executable, store=str(tmp_path / "repository"),
                                    log=str(tmp_path / "forgotten.log")))
    restic.chmod(restic.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    config, key = app_backups_unit(PurePosixPath(root)).files
    write(config, json.dumps(CONFIG), 0o600)
    write(key, "a derived key\n", 0o600)
    return root


CONFIG = {"repository": "sftp:a@b:/repository", "password_file": "/nonexistent",
          "sftp_command": "ssh", "host": "web1", "group": "staging", "apps": [APP],
          "keep_days": 30}


def data_of(root: Path) -> Path:
    return Path(AppPaths(APP, PurePosixPath(root)).data)


def sqlite_with(path: Path, *titles: str) -> None:
    with sqlite3.connect(path) as database:
        database.execute("CREATE TABLE IF NOT EXISTS items (title TEXT)")
        database.executemany("INSERT INTO items VALUES (?)", [(title,) for title in titles])
    database.close()


def titles(path: Path) -> list[str]:
    with sqlite3.connect(path) as database:
        found = [row[0] for row in database.execute("SELECT title FROM items ORDER BY title")]
    database.close()
    return found


def members(stream: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r|") as tar:
        return [member.name for member in tar]


def test_the_data_dir_is_sent_with_every_sqlite_database_and_no_link(host: Path) -> None:
    data = data_of(host)
    sqlite_with(data / "db.sqlite3", "kept")  # Django's default name
    (data / "uploads").mkdir()
    (data / "uploads" / "photo.jpg").write_bytes(b"jpeg")
    (data / "uploads" / "secret").symlink_to("/etc/shadow")
    (data / "db.sqlite3-wal").write_bytes(b"a live database's log")
    (data / "backups" / "flasktodo-before-1.0.sqlite3").write_bytes(b"a local copy")
    out = io.BytesIO()
    assert appdata.write_data_tar(PurePosixPath(data), out) == ["db.sqlite3"]
    assert sorted(members(out.getvalue())) == ["db.sqlite3", "uploads", "uploads/photo.jpg"]


def test_sent_and_restored_over_a_new_host_the_data_comes_back_whole(host: Path) -> None:
    data = data_of(host)
    sqlite_with(data / "db.sqlite3", "before the loss")
    (data / "uploads").mkdir()
    (data / "uploads" / "photo.jpg").write_bytes(b"jpeg")
    config = appdata.load_config(app_backups_unit(PurePosixPath(host)).files[0])
    assert "SQLite" in appdata.send_app(config, APP, PurePosixPath(host))
    for path in (data / "db.sqlite3", data / "uploads" / "photo.jpg"):
        path.unlink()
    sqlite_with(data / "db.sqlite3", "a new host's empty start")
    (data / "db.sqlite3-wal").write_bytes(b"stale")
    appdata.restore_app(PurePosixPath(host), APP, "latest")
    assert titles(data / "db.sqlite3") == ["before the loss"]
    assert (data / "uploads" / "photo.jpg").read_bytes() == b"jpeg"
    assert not (data / "db.sqlite3-wal").exists(), "a stale log never replayed onto it"
    assert Path(app_backups_unit(PurePosixPath(host)).stamp).exists(), \
        "restored: the next deploy sends this host's data again"


@pytest.mark.parametrize("name", ["../escaped", "/etc/cron.d/x", "link/inside"])
def test_a_backup_never_writes_outside_the_data_dir_nor_through_a_link(
        host: Path, name: str) -> None:
    data = data_of(host)
    (data / "link").symlink_to(host)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w|") as tar:
        member = tarfile.TarInfo(name)
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))
    with pytest.raises(Refused):
        appdata.unpack_data_tar(PurePosixPath(data), io.BytesIO(stream.getvalue()))
    assert not (host.parent / "escaped").exists() and not (host / "inside").exists()


def test_a_new_host_where_the_old_ones_data_is_backed_up_sends_nothing_over_it(
        host: Path) -> None:
    unit = app_backups_unit(PurePosixPath(host))
    config = appdata.load_config(unit.files[0])
    sqlite_with(data_of(host) / "db.sqlite3", "the old host's")
    appdata.send_app(config, APP, PurePosixPath(host))
    expected = []
    for path, content in zip(unit.files, (json.dumps(config), "a derived key\n"), strict=True):
        write(Path(f"{path}.next"), content, 0o600)
        expected.append(f"{path}.next={sha256(content.encode())}")
    with pytest.raises(Refused, match=re.escape("restore.py --limit staging --data"
                                                " restore_to=latest")):
        appdata.app_backups(PurePosixPath(host), expected)
    assert len(appdata.snapshots_of(config)) == 1, "nothing sent over the old host's data"


def test_the_timer_sends_nothing_before_a_deploy_set_backups_up(
        host: Path, capfd: pytest.CaptureFixture[str]) -> None:
    appdata.send_apps(PurePosixPath(host))
    assert "nothing sent" in capfd.readouterr().out


def test_a_restore_plan_says_what_the_restore_would_replace_and_changes_nothing(
        host: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = data_of(host)
    sqlite_with(data / "db.sqlite3", "backed up")
    (data / "uploads").mkdir()
    (data / "uploads" / "photo.jpg").write_bytes(b"jpeg")
    config = appdata.load_config(app_backups_unit(PurePosixPath(host)).files[0])
    appdata.send_app(config, APP, PurePosixPath(host))
    (data / "uploads" / "photo.jpg").unlink()
    (data / "uploads" / "later.jpg").write_bytes(b"uploaded after the backup")
    capfd.readouterr()
    appdata.restore_plan(PurePosixPath(host), APP, "latest")
    plan = json.loads(capfd.readouterr().out)
    assert (plan["files"], plan["replaced"], plan["added"], plan["kept"]) == (2, 1, 1, 1), \
        "db.sqlite3 replaced, photo.jpg back, later.jpg left as it is"
    assert plan["backup"] and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", plan["time"])
    assert not (data / "uploads" / "photo.jpg").exists(), "a plan changes nothing"
    with pytest.raises(Refused, match="holds no backup of its data from before 2001"):
        appdata.restore_plan(PurePosixPath(host), APP, "2001-01-01 00:00:00+00")


def test_a_restore_to_a_time_takes_the_newest_backup_before_it() -> None:
    assert appdata.moment("2026-12-06T14:05:00.123456789Z") < appdata.moment(
        "2026-12-06 14:05:01+00") < appdata.moment("2026-12-06 15:05:00+00:30")


def test_a_key_that_does_not_open_the_repository_is_refused_and_the_previous_one_stays(
        host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = app_backups_unit(PurePosixPath(host))
    expected = []
    for path, content in zip(unit.files, (json.dumps(CONFIG), "another key\n"), strict=True):
        write(Path(f"{path}.next"), content, 0o600)
        expected.append(f"{path}.next={sha256(content.encode())}")
    monkeypatch.setenv("STUB_WRONG_PASSWORD", "1")
    with pytest.raises(Refused, match="is STAGING_BACKUP_PASSPHRASE the one its backups were"):
        appdata.app_backups(PurePosixPath(host), expected)
    assert Path(unit.files[1]).read_text() == "a derived key\n", "the previous key is back"


def test_a_timed_run_sends_every_app_then_forgets_this_hosts_old_backups(
        host: Path, capfd: pytest.CaptureFixture[str]) -> None:
    write(Path(app_backups_unit(PurePosixPath(host)).stamp), "set up\n", 0o644)
    appdata.send_apps(PurePosixPath(host))
    assert f"{APP}: data sent" in capfd.readouterr().out
    forgotten = (host.parent / "forgotten.log").read_text()
    assert "--host web1 --keep-within 30d --keep-last 1 --prune" in forgotten, \
        "this host's alone, the newest always kept"
