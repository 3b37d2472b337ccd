"""golive's off-host backup steps, offline: the backup host's sshd drop-in (`backup-store`),
the database host's pgBackRest config (`archiving`) and its restore (`restore-database`),
in a scratch root with sshd, systemctl and pgbackrest recorded. PostgreSQL's account is
the user running the tests."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.test_golive import APP, sha256, write
from tests.unit.test_golive_database import calls, recorders
from wsgistack.onhost.golive import offsite
from wsgistack.onhost.golive.files import Refused, digest
from wsgistack.onhost.golive.layout import archiving_unit, backup_store_unit

# pgBackRest as the step sees it: $STUB_REPOSITORY says what the repository holds ("ours",
# "other" cluster's, "unreadable" with this key, "empty" of backups); each call recorded.
PGBACKREST = """#!{python}
import json, os, sys
open({log!r}, "a").write(json.dumps({{"pgbackrest": {{"argv": sys.argv[1:]}}}}) + "\\n")
repository = os.environ.get("STUB_REPOSITORY", "ours")
if repository == "other" and "stanza-create" in sys.argv:
    print("ERROR: [028]: backup and archive info files exist but do not match the database")
    sys.exit(28)
if repository == "unreadable":
    print("ERROR: [029]: unable to load info file '/repo/archive.info':")
    print("\\ufffd\\ufffd garbage from a wrong key")
    sys.exit(29)
if "--output=json" in sys.argv:
    print(json.dumps([{{"backup": [] if repository == "empty" else [{{"label": "F"}}]}}]))
"""


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root, log = tmp_path / "root", tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    recorders(bin_dir, log, "sshd", "systemctl", "psql")
    pgbackrest = bin_dir / "pgbackrest"
    pgbackrest.write_text(PGBACKREST.format(python=sys.executable, log=str(log)))
    pgbackrest.chmod(pgbackrest.stat().st_mode | stat.S_IEXEC)
    # psql answers "f" to pg_is_in_recovery(): the restored cluster takes writes
    psql = bin_dir / "psql"
    psql.write_text(psql.read_text().replace("sys.exit(", "print('f'); sys.exit(", 1))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(offsite, "POSTGRES", APP)
    monkeypatch.setattr(offsite, "is_mounted", lambda path: True)
    monkeypatch.setattr(offsite.pwd, "getpwnam", lambda name: type(
        "Account", (), {"pw_uid": os.getuid(), "pw_gid": os.getgid()}))
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
    (root / "etc/wsgistack/backup").mkdir(parents=True)
    (root / "var/lib/wsgistack").mkdir(parents=True)
    return root


def stage(path: PurePosixPath, content: str) -> list[str]:
    write(Path(str(path) + ".next"), content, 0o640)
    return [f"{path}.next={sha256(content.encode())}"]


def test_the_backup_store_goes_live_only_as_sshd_takes_it(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = backup_store_unit(PurePosixPath(root))
    own, drop_in = unit.files
    Path(own).parent.mkdir(parents=True)
    log = root.parent / "calls.log"
    offsite.backup_store(PurePosixPath(root), [*stage(own, "Port 2222\n"),
                                               *stage(drop_in, "DenyUsers a\n")])
    assert Path(own).read_text() == "Port 2222\n" and Path(drop_in).read_text() == "DenyUsers a\n"
    assert Path(unit.stamp).read_text().strip() == digest(unit)
    assert [call["argv"] for call in calls(log, "sshd")] == [["-t", "-f", str(own)], ["-t"]], \
        "each sshd's config checked: the senders' own, and the host's with its drop-in"
    assert [call["argv"] for call in calls(log, "systemctl")] == [
        ["reload-or-restart", "ssh.service"],
        ["reload-or-restart", "wsgistack-backup-sftp.service"]]
    monkeypatch.setenv("STUB_FAIL", "sshd")
    with pytest.raises(Refused, match="sshd refused the candidate"):
        offsite.backup_store(PurePosixPath(root), [*stage(own, "Port nonsense\n"),
                                                   *stage(drop_in, "DenyUsers a\n")])
    assert Path(own).read_text() == "Port 2222\n", "the previous config is back"
    assert len(calls(log, "systemctl")) == 2, "and no sshd was reloaded with it"


def test_archiving_makes_the_stanza_checks_it_and_takes_a_first_full_backup(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [config] = archiving_unit(PurePosixPath(root)).files
    log = root.parent / "calls.log"
    monkeypatch.setenv("STUB_REPOSITORY", "empty")
    offsite.archiving(PurePosixPath(root), "production", stage(config, "[global]\n"))
    commands = [[arg for arg in call["argv"] if not arg.startswith("--")]
                for call in calls(log, "pgbackrest")]
    assert commands[:4] == [["stanza-create"], ["check"], ["info"], ["backup"]]
    assert "--type=full" in calls(log, "pgbackrest")[3]["argv"]
    assert offsite.archive_state(PurePosixPath(root))["full"]["result"] == "success", \
        "how it went, kept for the deploy summary"
    assert all(f"--config={config}" in call["argv"] and "--stanza=production" in call["argv"]
               for call in calls(log, "pgbackrest")), "our config, never the key in argv"
    assert Path(archiving_unit(PurePosixPath(root)).stamp).exists()


def test_a_new_cluster_where_the_repository_holds_the_old_ones_backups_is_told_to_restore(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = archiving_unit(PurePosixPath(root))
    monkeypatch.setenv("STUB_REPOSITORY", "other")
    with pytest.raises(Refused, match=re.escape("restore.py --limit production --data"
                                                " restore_to=latest")):
        offsite.archiving(PurePosixPath(root), "production", stage(unit.files[0], "[global]\n"))
    assert Path(unit.files[0]).exists(), "the config stays live: the restore needs it"
    assert not Path(unit.stamp).exists(), "nothing recorded: the next deploy looks again"


def test_a_key_that_does_not_open_the_repository_is_refused_in_one_line(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [config] = archiving_unit(PurePosixPath(root)).files
    offsite.archiving(PurePosixPath(root), "production", stage(config, "[global]\nok\n"))
    monkeypatch.setenv("STUB_REPOSITORY", "unreadable")
    with pytest.raises(Refused) as refused:
        offsite.archiving(PurePosixPath(root), "production", stage(config, "[global]\nx\n"))
    assert "is PRODUCTION_BACKUP_PASSPHRASE the one its backups were made with?" in str(
        refused.value) and "\n" not in str(refused.value)
    assert Path(config).read_text() == "[global]\nok\n", "the previous config is back"


@pytest.mark.parametrize(("to", "target"), [
    ("latest", []),
    ("2026-12-06 14:05:00+00", ["--type=time", "--target=2026-12-06 14:05:00+00",
                                "--target-action=promote"])])
def test_a_restore_stops_the_cluster_restores_and_starts_it(
        root: Path, to: str, target: list[str]) -> None:
    log = root.parent / "calls.log"
    offsite.restore_database(PurePosixPath(root), "production", "15", to)
    assert [call["argv"][0] for call in calls(log, "systemctl")] == ["start", "stop", "start"]
    assert calls(log, "systemctl")[1]["argv"] == ["stop", "postgresql@15-main.service"]
    [restore] = calls(log, "pgbackrest")
    assert restore["argv"][-1] == "restore" and "--delta" in restore["argv"]
    assert [arg for arg in restore["argv"] if arg.startswith(("--type", "--target"))] == target
    assert calls(log, "psql")[-1]["argv"][-2:] == ["-c", "CHECKPOINT"], \
        "the checkpointer woken: archive_timeout kept again"


def test_a_failed_restore_starts_the_cluster_again_and_says_why(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = root.parent / "calls.log"
    monkeypatch.setenv("STUB_REPOSITORY", "unreadable")
    with pytest.raises(Refused, match="could not restore production to latest"):
        offsite.restore_database(PurePosixPath(root), "production", "15", "latest")
    assert calls(log, "systemctl")[-1]["argv"] == ["start", "postgresql@15-main.service"]



def test_the_archive_check_reports_the_wal_age_and_each_backups_last_result(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = root.parent / "bin"
    offsite.take_backup(PurePosixPath(root), "production", "full")
    monkeypatch.setenv("STUB_REPOSITORY", "unreadable")
    with pytest.raises(Refused, match="the diff backup of production failed"):
        offsite.take_backup(PurePosixPath(root), "production", "diff")
    (bin_dir / "psql").write_text(f"#!{sys.executable}\nprint('12|f')\n")
    state = offsite.archive_state(PurePosixPath(root))
    assert (state["wal_age"], state["wal_failing"]) == (12, False)
    assert state["full"]["result"] == "success" and state["diff"]["result"] == "failed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", state["diff"]["at"])
