"""golive, offline: every go-live step run in a scratch root, with the real gunicorn-herder,
a stand-in gunicorn, supervisor's socket faked and nginx and systemctl recorded. The app
is the user running the tests, so no step needs root here."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pty
import pwd
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.unit.onhost_stubs import GUNICORN, FakeSupervisor, install_commands
from tests.unit.test_herder import Herded, start_herded
from wsgistack.engine.programs import HERDER_SOURCE, SUPERVISOR_QUERY_SOURCE, golive_zipapp
from wsgistack.engine.staged import StagedState, unit_state
from wsgistack.onhost import gunicorn_herder as herder
from wsgistack.onhost.golive import build as building
from wsgistack.onhost.golive import files, layout, releases, users
from wsgistack.onhost.golive.backups import backup_database, rotate_backups
from wsgistack.onhost.golive.files import Refused, Staged, digest
from wsgistack.onhost.golive.layout import AppPaths, Unit, app_unit, candidate

APP = pwd.getpwuid(os.getuid()).pw_name  # the app's user: whoever runs the tests
# golive as hosts run it: the zipapp the deploy installs, with python3 -I
GOLIVE = (sys.executable, "-I", str(golive_zipapp()))
CONFIG = "config.py"  # the app's own config file


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write(path: PurePosixPath | Path, content: str | bytes, mode: int = 0o644) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


# --- the stamp digest -------------------------------------------------------------------

def test_the_host_reads_the_stamp_golive_writes(tmp_path: Path) -> None:
    """staged.StagedState (in the host read) agrees with files.record (Python, the
    stamp) on files, missing files, links and a listing; else every run is due."""
    write(tmp_path / "site", "server {}\n")
    write(tmp_path / "site.next", "server {}\n")
    write(tmp_path / "cert", "CERT\n")
    write(tmp_path / "cert.next", "CERT\n")
    (tmp_path / "current").symlink_to("releases/1.0.0")
    (tmp_path / "enabled").mkdir()
    (tmp_path / "enabled" / "site").symlink_to("../available/site")
    write(tmp_path / "enabled" / "plain", "x")
    unit = Unit("test", (PurePosixPath(tmp_path / "site"), PurePosixPath(tmp_path / "cert")),
                links=(PurePosixPath(tmp_path / "current"), PurePosixPath(tmp_path / "nolink")),
                listing=PurePosixPath(tmp_path / "enabled"), root=PurePosixPath(tmp_path))

    def read() -> dict[str, bool]:
        output = subprocess.run(["sh", "-c", StagedState().command(unit=unit)],
                                capture_output=True, text=True, check=False).stdout
        return unit_state(StagedState().process(output.splitlines()), unit)

    assert read() == {"in_step": True, "applied": False}  # no stamp yet
    files.record(unit)
    assert read() == {"in_step": True, "applied": True}
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to("releases/1.0.1")
    assert read() == {"in_step": True, "applied": False}
    files.record(unit)
    assert read()["applied"]
    write(tmp_path / "cert.next", "CERT2\n")
    assert read() == {"in_step": False, "applied": True}
    write(tmp_path / "cert", "CERT2\n")
    assert read() == {"in_step": True, "applied": False}
    (tmp_path / "site").unlink()  # a missing file is left out of the digest, as golive does
    files.record(unit)
    assert read()["applied"]


# --- the lock ---------------------------------------------------------------------------

def test_the_lock_lives_in_a_dir_only_its_owner_can_write(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    lock_dir = Path(layout.lock_dir(PurePosixPath(tmp_path)))
    with files.deploy_lock(PurePosixPath(tmp_path)):
        assert oct(lock_dir.stat().st_mode & 0o777) == "0o700"
        assert (lock_dir / "deploy.lock").stat().st_mode & 0o077 == 0
    lock_dir.chmod(0o777)
    with pytest.raises(Refused, match="not a directory only this user can write"), \
            files.deploy_lock(PurePosixPath(tmp_path)):
        pass


def test_a_planted_link_is_never_followed(tmp_path: Path) -> None:
    """A link where the lock dir or file should be is refused, not written through."""
    victim = write(tmp_path / "victim", "root's file\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "wsgistack").symlink_to(tmp_path)
    with pytest.raises(Refused), files.deploy_lock(PurePosixPath(tmp_path)):
        pass
    (tmp_path / "run" / "wsgistack").unlink()
    (tmp_path / "run" / "wsgistack").mkdir(mode=0o700)
    (tmp_path / "run" / "wsgistack" / "deploy.lock").symlink_to(victim)
    with pytest.raises(OSError), files.deploy_lock(PurePosixPath(tmp_path)):
        pass
    assert victim.read_text() == "root's file\n"


def test_a_second_step_waits_for_the_lock(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    root = PurePosixPath(tmp_path)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with files.deploy_lock(root):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        with pytest.raises(Refused, match="another deploy held"), \
                files.deploy_lock(root, wait=0.5):
            pass
    finally:
        release.set()
        holder.join()
    with files.deploy_lock(root, wait=0.5):
        pass


# --- candidates -------------------------------------------------------------------------

def test_only_the_candidates_this_deploy_wrote_go_live(tmp_path: Path) -> None:
    paths = AppPaths(APP, PurePosixPath(tmp_path))
    unit = app_unit(paths, CONFIG)
    ours = [b"SECRET_KEY = 'ours'\n", b"workers = 3\n", b'GREETING="hi"\n']
    for path, content in zip(unit.candidates, ours, strict=True):
        write(path, content, 0o640)
    expected = {path: sha256(content) for path, content in zip(unit.candidates, ours,
                                                                strict=True)}
    write(unit.candidates[1], b"workers = 5\n", 0o640)  # another deploy's, since
    with pytest.raises(Refused, match=re.escape("gunicorn.conf.py.next is not the candidate"
                                                " this deploy wrote")):
        Staged.verified(unit, expected)
    write(unit.candidates[1], ours[1], 0o640)
    staged = Staged.verified(unit, expected)
    write(unit.candidates[1], b"workers = 5\n", 0o640)  # rewritten after the check
    staged.make_live()
    assert Path(paths.gunicorn_config).read_bytes() == b"workers = 3\n", "the bytes checked"
    assert oct(Path(paths.config(CONFIG)).stat().st_mode & 0o777) == "0o640"


def test_expectations_must_name_the_units_candidates(tmp_path: Path) -> None:
    unit = app_unit(AppPaths(APP, PurePosixPath(tmp_path)), CONFIG)
    with pytest.raises(Refused, match="not the unit's candidates"):
        Staged.verified(unit, {PurePosixPath("/etc/passwd"): "0" * 64})
    with pytest.raises(Refused, match="is missing: a deploy writes it"):
        files.parse_expect([f"{unit.candidates[0]}=missing"])


# --- backups and releases ---------------------------------------------------------------

HOSTILE_NAMES = [
    "a b.sqlite3", "it's.sqlite3", "x\ny.sqlite3", "-rf .sqlite3", "$(touch pwned).sqlite3",
    "APP-0-before-1 ; rm -rf ~.sqlite3",
]


def test_backup_rotation_keeps_the_newest_and_nothing_else_is_touched(tmp_path: Path) -> None:
    """The app's user writes this dir: names with spaces, quotes, newlines, options or
    shell are not ours to remove, a link named like a backup is no backup, and the oldest
    backups go, each exactly by its name (one crafted to look like the oldest included)."""
    paths = AppPaths(APP, PurePosixPath(tmp_path))
    backups = Path(paths.backups)
    backups.mkdir(parents=True)
    outside = write(tmp_path / "precious", "keep me\n")
    for name in HOSTILE_NAMES:
        write(backups / name.replace("APP", APP), "not a backup")
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        write(backups / f"{APP}-{stamp}-before-1.0.0.sqlite3", "backup")
    write(backups / f"{APP}-20260103T000000Z-before-1.0.0.dump", "a pg_dump")
    (backups / f"{APP}-20250101T000000Z-link.sqlite3").symlink_to(outside)
    rotate_backups(paths.backups, f"{APP}-", keep=2)
    left = sorted(path.name for path in backups.iterdir())
    assert left == sorted([name for name in HOSTILE_NAMES if not name.startswith("APP")] + [
        f"{APP}-20250101T000000Z-link.sqlite3", f"{APP}-20260102T000000Z-before-1.0.0.sqlite3",
        f"{APP}-20260103T000000Z-before-1.0.0.dump"])
    assert outside.read_text() == "keep me\n"
    assert not (tmp_path / "pwned").exists()


def test_a_backup_is_a_consistent_copy_taken_as_the_apps_user(tmp_path: Path) -> None:
    paths = AppPaths(APP, PurePosixPath(tmp_path))
    Path(paths.backups).mkdir(parents=True)
    with sqlite3.connect(paths.database) as db:
        db.execute("CREATE TABLE items (title TEXT)")
        db.execute("INSERT INTO items VALUES ('kept')")
    users.as_user(APP, lambda: backup_database(paths, "1.0.1", keep=5))
    [backup] = Path(paths.backups).glob(f"{APP}-*-before-1.0.1.sqlite3")
    assert backup.stat().st_uid == os.getuid()
    with sqlite3.connect(backup) as copy:
        assert copy.execute("SELECT title FROM items").fetchall() == [("kept",)]


def test_as_user_reports_the_childs_failure(tmp_path: Path) -> None:
    def fail() -> None:
        raise PermissionError("no")

    with pytest.raises(Refused, match="PermissionError: no"):
        users.as_user(APP, fail)


def install_release(paths: AppPaths, version: str, when: float) -> Path:
    release = Path(paths.release(version).path)
    (release / "venv/bin").mkdir(parents=True)
    (release / "venv/bin/python").symlink_to(sys.executable)
    write(release / "venv/bin/gunicorn", GUNICORN, 0o755)
    marker = write(paths.release(version).installed_marker, "digest\n")
    os.utime(marker, (when, when))
    return release


def test_pruning_keeps_the_newest_and_the_live_release(tmp_path: Path) -> None:
    paths = AppPaths(APP, PurePosixPath(tmp_path))
    for number, version in enumerate(["1.0.0", "1.0.1", "1.0.2", "1.0.3"]):
        install_release(paths, version, 1_000_000 + number)
    Path(paths.releases, "1.0.4").mkdir()  # an install that never finished
    Path(paths.current).symlink_to("releases/1.0.0")
    listed = subprocess.run([*GOLIVE, "--root", str(tmp_path),
                             "releases", APP], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"], "complete, oldest first"
    assert releases.prune_releases(paths, keep=2) == ["1.0.1", "1.0.4"]
    assert sorted(path.name for path in Path(paths.releases).iterdir()) == [
        "1.0.0", "1.0.2", "1.0.3"]


def test_pruning_removes_the_stored_wheels_only_pruned_releases_held(tmp_path: Path) -> None:
    paths = AppPaths(APP, PurePosixPath(tmp_path))
    store = Path(paths.wheels)
    store.mkdir(parents=True)
    for number, version in enumerate(["1.0.0", "1.0.1"]):
        wheels = install_release(paths, version, 1_000_000 + number) / "wheels"
        wheels.mkdir()
        for name in ("shared.whl", f"app-{version}.whl"):
            stored = store / f"0123456789abcdef-{name}"
            if not stored.exists():
                write(stored, name)
            os.link(stored, wheels / name)
    Path(paths.current).symlink_to("releases/1.0.1")
    assert releases.prune_releases(paths, keep=1) == ["1.0.0"]
    assert sorted(path.name for path in store.iterdir()) == [
        "0123456789abcdef-app-1.0.1.whl", "0123456789abcdef-shared.whl"]
    assert (store / "0123456789abcdef-shared.whl").stat().st_nlink == 2


# --- whole steps ------------------------------------------------------------------------

@dataclass
class Host:
    """A scratch root laid out as a host, with this app running under the herder."""

    root: Path
    paths: AppPaths
    supervisor: FakeSupervisor
    herded: Herded
    environ: dict[str, str]
    log: Path

    def golive(self, *arguments: str, stdout: object = subprocess.PIPE
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*GOLIVE, "--root", str(self.root),
                               *arguments], env=self.environ, stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)

    def candidates(self, unit: Unit, contents: list[str], mode: int = 0o640) -> list[str]:
        """Write the candidates; the --expect arguments a deploy would pass."""
        for path, content in zip(unit.candidates, contents, strict=True):
            write(path, content, mode)
        return ["--expect", *(f"{path}={sha256(content.encode())}"
                              for path, content in zip(unit.candidates, contents, strict=True))]

    def switch(self, version: str, gunicorn_conf: str = "workers = 2\n",
               stdout: object = subprocess.PIPE, commands: tuple[list[str], ...] = (),
               extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        expect = self.candidates(app_unit(self.paths, CONFIG),
                                 [f"SECRET_KEY = 'k'  # {version}\n", gunicorn_conf,
                                  f'VERSION="{version}"\n'])
        release_commands = [arg for argv in commands
                            for arg in ("--release-command", json.dumps(argv))]
        return self.golive("switch", APP, version, "--config", CONFIG, "--config-env",
                           "APP_CONFIG", "--prefix", "/app", "--workers", "2",
                           "--graceful-timeout", "5",
                           "--keep-releases", "2", "--keep-backups", "2", *expect,
                           *release_commands, *extra, stdout=stdout)

    def recorded(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    root = tmp_path / "root"
    paths = AppPaths(APP, PurePosixPath(root))
    write(layout.herder(PurePosixPath(root)), HERDER_SOURCE.read_text(), 0o755)
    write(layout.supervisor_query(PurePosixPath(root)), SUPERVISOR_QUERY_SOURCE.read_text(),
          0o755)
    short = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))  # a socket path is short
    write(root / "etc/supervisor/supervisord.conf",
          f"[supervisorctl]\nserverurl=unix://{short}/supervisor.sock\n")
    supervisor = FakeSupervisor(short / "supervisor.sock")
    Path(paths.run_dir).mkdir(parents=True)
    Path(paths.backups).mkdir(parents=True)
    install_release(paths, "1.0.0", time.time() - 100)
    Path(paths.current).symlink_to("releases/1.0.0")
    herded = start_herded(Path(paths.run_dir))
    supervisor.pid = herded.process.pid
    log = tmp_path / "commands.log"
    environ = {**os.environ, **install_commands(tmp_path / "bin", log)}
    yield Host(root, paths, supervisor, herded, environ, log)
    herded.process.terminate()
    herded.process.wait(timeout=10)
    supervisor.close()
    shutil.rmtree(short)


def test_switch_makes_config_and_release_live_and_swaps_gunicorn(host: Host) -> None:
    with sqlite3.connect(host.paths.database) as db:
        db.execute("CREATE TABLE items (title TEXT)")
    old = host.herded.master
    install_release(host.paths, "1.0.1", time.time())
    done = host.switch("1.0.1")
    assert done.returncode == 0, done.stderr
    assert f"gunicorn swapped gracefully: master {old} ->" in done.stdout
    assert os.readlink(host.paths.current) == "releases/1.0.1"
    assert Path(host.paths.config(CONFIG)).read_text() == "SECRET_KEY = 'k'  # 1.0.1\n"
    assert Path(host.paths.env_file).read_text() == 'VERSION="1.0.1"\n'
    new = herder.read_pid(Path(host.paths.pid_file))
    assert new != old and herder.parent_of(new) == host.herded.process.pid
    assert list(Path(host.paths.backups).glob(f"{APP}-*-before-1.0.1.sqlite3"))
    unit = app_unit(host.paths, CONFIG)
    assert Path(unit.stamp).read_text().strip() == digest(unit)
    assert not list(Path(host.paths.config_dir).glob("*.new")) + list(
        Path(host.paths.config_dir).glob("*.prev"))
    [step] = history(host)
    assert (step["step"], step["arguments"]["app"], step["release_before"],
            step["release_after"], step["outcome"]) == ("switch", APP, "1.0.0", "1.0.1", "ok")
    assert step["user"] and "expect" not in step["arguments"], "who ran it; no digests"
    log = Path(host.root) / "var/log/wsgistack/history.log"
    assert log.stat().st_mode & 0o777 == 0o600 and log.parent.stat().st_mode & 0o777 == 0o750


def history(host: Host) -> list[dict]:
    """The host's history of go-live steps, as golive status reports it."""
    done = subprocess.run([*GOLIVE, "--root", str(host.root), "status", "--app", APP],
                          capture_output=True, text=True, env=host.environ, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["apps"][APP]["live"] == os.readlink(host.paths.current).split("/")[-1]
    return report["history"]


def test_a_release_that_fails_its_load_check_switches_nothing(host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    before = host.herded.master
    refused = host.switch("1.0.1", gunicorn_conf="--check-config fails: BROKEN\n")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"{APP} 1.0.1 failed its load check; nothing was switched")
    assert os.readlink(host.paths.current) == "releases/1.0.0"
    assert not Path(host.paths.config(CONFIG)).exists() and herder.read_pid(
        Path(host.paths.pid_file)) == before
    [step] = history(host)
    assert (step["release_before"], step["release_after"], step["outcome"]) == (
        "1.0.0", "1.0.0", "failed (1)"), "a refused step is in the history too"


def test_a_gunicorn_that_fails_puts_the_previous_config_and_release_back(host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    assert host.switch("1.0.1").returncode == 0
    serving = herder.read_pid(Path(host.paths.pid_file))
    install_release(host.paths, "1.0.2", time.time())
    (Path(host.paths.run_dir) / "broken").touch()  # the new master halts after it starts
    failed = host.switch("1.0.2")
    assert failed.returncode == 1 and "still serves" in failed.stderr
    assert os.readlink(host.paths.current) == "releases/1.0.1"
    assert Path(host.paths.config(CONFIG)).read_text() == "SECRET_KEY = 'k'  # 1.0.1\n"
    assert herder.read_pid(Path(host.paths.pid_file)) == serving and herder.alive(serving)


def test_a_switch_completes_when_the_controller_is_gone(host: Host) -> None:
    """Killed controller: the step's stdout is a pipe nobody reads. It must finish and
    report success by the new master, not fail on the write and undo a live swap."""
    install_release(host.paths, "1.0.1", time.time())
    reader, writer = os.pipe()
    os.close(reader)
    try:
        done = host.switch("1.0.1", stdout=writer)
    finally:
        os.close(writer)
    assert done.returncode == 0, done.stderr
    assert os.readlink(host.paths.current) == "releases/1.0.1"
    assert Path(host.paths.config(CONFIG)).read_text() == "SECRET_KEY = 'k'  # 1.0.1\n"
    assert herder.parent_of(herder.read_pid(Path(host.paths.pid_file))) == \
        host.herded.process.pid


def site_files(host: Host, site_text: str) -> list[str]:
    root = PurePosixPath(host.root)
    write(root / "etc/nginx/nginx.conf",
          f"http {{ include {root}/etc/nginx/sites-enabled/*; }}\n")
    Path(root / "etc/nginx/sites-enabled").mkdir(parents=True, exist_ok=True)
    Path(root / "etc/ssl/wsgistack/private").mkdir(parents=True, exist_ok=True)
    return host.candidates(layout.site_unit("web", root), [site_text, "CERT\n", "KEY\n"],
                           mode=0o600)


def test_a_site_that_fails_nginx_t_stays_a_candidate(host: Host) -> None:
    root = PurePosixPath(host.root)
    cert, key = layout.tls_paths("web", root)
    refused = host.golive("site", "web", *site_files(
        host, f"ssl_certificate {cert};\nssl_certificate_key {key};\nbroken;\n"))
    assert refused.returncode == 1
    assert "web.next fails nginx -t; the live site is unchanged" in refused.stderr
    assert f"{root}/etc/nginx/sites-available/web.next:1" in refused.stderr, "names the file"
    assert not Path(root / "etc/nginx/sites-available/web").exists()
    assert not any("reload" in line for line in host.recorded())


def test_a_site_goes_live_with_its_pair_and_nginx_reloads(host: Host) -> None:
    root = PurePosixPath(host.root)
    cert, key = layout.tls_paths("web", root)
    site = f"ssl_certificate {cert};\nssl_certificate_key {key};\n"
    done = host.golive("site", "web", *site_files(host, site))
    assert done.returncode == 0, done.stderr
    tested = [line for line in host.recorded() if line.startswith("nginx -t -q -c")]
    assert tested and host.recorded()[-2:] == ["nginx -t -q", "systemctl reload nginx"]
    assert os.readlink(root / "etc/nginx/sites-enabled/web") == "../sites-available/web"
    assert Path(key).read_text() == "KEY\n" and Path(key).stat().st_mode & 0o077 == 0
    unit = layout.site_unit("web", root)
    assert Path(unit.stamp).read_text().strip() == digest(unit)


def test_a_program_is_parsed_by_supervisor_then_updated(host: Host) -> None:
    pytest.importorskip("supervisor", reason="supervisor's parser: pip install supervisor")
    unit = layout.program_unit(host.paths)
    broken = host.golive("program", APP, *host.candidates(unit, [f"[program:{APP}\n"]))
    assert broken.returncode == 1 and "is not a valid supervisor program" in broken.stderr
    assert host.recorded() == []
    program = f"[program:{APP}]\ncommand=/bin/true\nuser={APP}\n"
    host.supervisor.changes = ([], [APP], [])
    done = host.golive("program", APP, *host.candidates(unit, [program], mode=0o644))
    assert done.returncode == 0, done.stderr
    assert host.supervisor.called() == [  # as `supervisorctl reread; supervisorctl update APP`
        ("reloadConfig",), ("stopProcessGroup", APP), ("removeProcessGroup", APP),
        ("addProcessGroup", APP)]
    assert Path(host.paths.supervisor_program).read_text() == program


def test_a_new_program_is_added_and_started_or_refused(host: Host) -> None:
    pytest.importorskip("supervisor", reason="supervisor's parser: pip install supervisor")
    unit = layout.program_unit(host.paths)
    program = f"[program:{APP}]\ncommand=/bin/true\nuser={APP}\nautostart=false\n"
    host.supervisor.changes, host.supervisor.state = ([APP], [], []), "STOPPED"
    done = host.golive("program", APP, *host.candidates(unit, [program], mode=0o644))
    assert done.returncode == 0, done.stderr
    assert host.supervisor.called() == [("reloadConfig",), ("addProcessGroup", APP),
                                        ("startProcess", APP)]
    host.supervisor.state, host.supervisor.faults = "FATAL", {"startProcess": "SPAWN_ERROR"}
    failed = host.golive("program", APP, *host.candidates(unit, [program + "#\n"], mode=0o644))
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(
        f"supervisor could not start {APP}: SPAWN_ERROR (its output: {host.paths.stdout_log})")
    assert Path(unit.stamp).read_text().strip() != files.digest(unit), "not recorded as applied"


def test_remove_takes_the_app_away_and_keeps_its_data(host: Host) -> None:
    write(host.paths.supervisor_program, "[program:x]\n")
    write(host.paths.config(CONFIG), "config\n")
    write(Path(host.paths.data) / "db", "data\n")
    host.supervisor.changes = ([], [], [APP])
    done = host.golive("remove", APP)
    assert done.returncode == 0, done.stderr
    assert host.supervisor.called() == [("stopProcessGroup", APP), ("reloadConfig",),
                                        ("stopProcessGroup", APP), ("removeProcessGroup", APP)]
    for path in (host.paths.home, host.paths.config_dir, host.paths.supervisor_program):
        assert not os.path.lexists(path), path
    assert (Path(host.paths.data) / "db").read_text() == "data\n"


# A release command that records what it saw: `current` (not switched yet), its working dir,
# its environment (the staged env file and config), and its PATH's first entry.
SEES = """
import json, os
seen = {"current": os.readlink(os.environ["HOME"].replace("/var/lib/", "/opt/") + "/current"),
        "cwd": os.getcwd(), "version": os.environ["VERSION"],
        "config": os.environ["APP_CONFIG"], "path": os.environ["PATH"].split(":")[0]}
open(os.environ["HOME"] + "/seen.json", "w").write(json.dumps(seen))
"""


def test_release_commands_run_with_the_new_release_before_it_is_live(host: Host) -> None:
    release = install_release(host.paths, "1.0.1", time.time())
    done = host.switch("1.0.1", commands=([sys.executable, "-c", SEES],))
    assert done.returncode == 0, done.stderr
    seen = json.loads((Path(host.paths.data) / "seen.json").read_text())
    assert seen == {"current": "releases/1.0.0", "cwd": str(release), "version": "1.0.1",
                    "config": f"{host.paths.config(CONFIG)}.new", "path": f"{release}/venv/bin"}
    assert os.readlink(host.paths.current) == "releases/1.0.1"


def test_a_failed_release_command_switches_nothing(host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    master = host.herded.master
    failed = host.switch("1.0.1", commands=(
        [sys.executable, "-c", "print('ok')"],
        [sys.executable, "-c", "import sys; print('no such table'); sys.exit(3)"]))
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"{APP} 1.0.1: the release command `{sys.executable} -c")
    assert "failed (exit 3); nothing was switched" in failed.stderr
    assert "no such table" in failed.stderr
    assert os.readlink(host.paths.current) == "releases/1.0.0"
    assert not Path(host.paths.config(CONFIG)).exists() and host.herded.master == master
    missing = host.switch("1.0.1", commands=(["no-such-command"],))
    assert missing.returncode == 1 and "could not run" in missing.stderr


# --- build commands and golive run ------------------------------------------------------

BUILDS = """
import os
out = os.environ["WSGISTACK_BUILD_DIR"]
os.makedirs(out + "/static/css")
open(out + "/static/css/site.css", "w").write("body {}")
os.symlink("/etc/shadow", out + "/static/shadow")  # never followed by root's copy
os.symlink("/etc", out + "/static/etc")
os.mkfifo(out + "/static/fifo")  # never opened
open(out + "/static/env.txt", "w").write(os.environ["VERSION"] + " " + os.environ["APP_CONFIG"])
"""


def build(host: Host, version: str, *commands: list[str]) -> subprocess.CompletedProcess[str]:
    write(candidate(host.paths.env_file), f'VERSION="{version}"\n', 0o640)
    return host.golive("build", APP, version, "--config", CONFIG, "--config-env", "APP_CONFIG",
                       "--prefix", "/app", "--build-user", APP,
                       *(arg for argv in commands for arg in ("--build-command", json.dumps(argv))))


def test_build_commands_output_is_copied_in_without_links_or_fifos(host: Host) -> None:
    release = install_release(host.paths, "1.0.1", time.time())
    done = build(host, "1.0.1", [sys.executable, "-c", BUILDS])
    assert done.returncode == 0, done.stderr
    static = release / "build/static"
    assert sorted(path.name for path in static.iterdir()) == ["css", "env.txt"]
    assert (static / "css/site.css").read_text() == "body {}"
    assert (static / "env.txt").read_text() == f"1.0.1 {host.paths.config(CONFIG)}.next", \
        "the candidate environment and config"
    assert oct((static / "css/site.css").stat().st_mode & 0o777) == "0o644"
    assert not os.path.lexists(host.paths.build_scratch), "the build's scratch dir is gone"


def test_a_failed_build_command_leaves_no_build_and_names_the_app(host: Host) -> None:
    release = install_release(host.paths, "1.0.1", time.time())
    done = build(host, "1.0.1", [sys.executable, "-c", "raise SystemExit('no settings')"])
    assert done.returncode == 1
    assert done.stderr.startswith(f"{APP} 1.0.1: the build command `{sys.executable} -c")
    assert "the release was not installed" in done.stderr and "no settings" in done.stderr
    assert not (release / "build").exists()


def test_run_execs_in_the_live_release_with_its_environment(host: Host) -> None:
    write(host.paths.env_file, 'VERSION="live"\n', 0o640)
    done = host.golive("run", APP, "--config", CONFIG, "--config-env", "APP_CONFIG", "--",
                       sys.executable, "-c", "import os; print(os.getcwd(), os.environ['VERSION'],"
                       " os.environ['APP_CONFIG'])")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(Path(host.paths.release("1.0.0").path)), "live",
                                   str(host.paths.config(CONFIG))]


def test_run_is_a_new_session_without_privileges_and_passes_only_named_variables(
        host: Host) -> None:
    """No terminal here: the command gets a session of its own (it could never reach the
    caller's terminal), no_new_privs, and of the caller's variables only those named."""
    write(host.paths.env_file, 'VERSION="live"\n', 0o640)
    show = ("import os; print(os.getsid(0) == os.getpid(), os.environ.get('PASSED'),"
            " os.environ.get('KEPT_BACK'),"
            " open('/proc/self/status').read().split('NoNewPrivs:')[1].split()[0])")
    done = subprocess.run([*GOLIVE, "--root", str(host.root), "run",
                           APP, "--env", "PASSED", "--", sys.executable, "-c", show],
                          env={**host.environ, "PASSED": "yes", "KEPT_BACK": "secret"},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "yes", "None", "1"]


def test_run_gives_a_terminal_of_its_own_where_the_caller_has_one(host: Host) -> None:
    """With a terminal (as over `ssh -t`), the command runs on a new pty in a new session,
    relayed: what it does to its terminal (TIOCSTI, termios) reaches its own pty, never the
    caller's, and its exit status is golive's."""
    write(host.paths.env_file, 'VERSION="live"\n', 0o640)
    show = ("import os, sys; print('APP', os.ttyname(0), os.getsid(0) == os.getpid());"
            " sys.exit(3)")
    golive_run = " ".join(shlex.quote(arg) for arg in [
        *GOLIVE, "--root", str(host.root), "run", APP, "--",
        sys.executable, "-c", show])
    pid, caller = pty.fork()
    if pid == 0:  # the caller: a shell on its own terminal, as an operator's over ssh -t
        os.execve("/bin/sh", ["sh", "-c", f"echo CALLER $(tty); {golive_run}; echo EXIT $?"],
                  host.environ)
    said = b""
    with contextlib.suppress(OSError):
        while chunk := os.read(caller, 4096):
            said += chunk
    os.waitpid(pid, 0)
    words = said.decode().split()
    callers, its = words[words.index("CALLER") + 1], words[words.index("APP") + 1]
    assert its.startswith("/dev/pts/") and its != callers, said
    assert words[words.index("APP") + 2] == "True", "a session of its own"
    assert words[words.index("EXIT") + 1] == "3", said


def test_a_data_dir_is_made_by_the_apps_user_and_a_link_there_is_refused(host: Host) -> None:
    made = host.golive("data-dir", APP, "uploads")
    assert made.returncode == 0, made.stderr
    uploads = Path(host.paths.data_dir("uploads"))
    assert uploads.is_dir() and oct(uploads.stat().st_mode & 0o777) == "0o750"
    uploads.rmdir()
    elsewhere = host.root / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    uploads.symlink_to(elsewhere)
    refused = host.golive("data-dir", APP, "uploads")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"{APP}: {uploads} is a symbolic link, not a directory (the app's user put it"
        f" there): move it away, as {APP}, and deploy again")
    assert oct(elsewhere.stat().st_mode & 0o777) == "0o755", "never followed"
    assert host.golive("data-dir", APP, "../etc").returncode == 2, "one name, no path"


@pytest.mark.parametrize("make, said", [
    (lambda out: os.truncate(write(out / "sparse", b""), (1 << 30) + 1),
     "more than 1073741824 bytes"),
    (lambda out: os.makedirs(out / "/".join(["d"] * 70)), "dirs deeper than 64"),
])
def test_a_build_beyond_its_limits_is_not_installed(tmp_path: Path, make, said: str) -> None:
    made = tmp_path / "made"
    made.mkdir()
    make(made)
    with pytest.raises(building.BuildTooLarge, match=said):
        building.copy_tree(PurePosixPath(made), PurePosixPath(tmp_path / "build"))


def test_a_build_of_too_many_files_is_not_installed(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(building.BUILD_LIMITS, "files", 10)
    made = tmp_path / "made"
    made.mkdir()
    for index in range(11):
        write(made / f"f{index}", "x")
    with pytest.raises(building.BuildTooLarge, match="more than 10 files"):
        building.copy_tree(PurePosixPath(made), PurePosixPath(tmp_path / "build"))


def test_a_built_file_the_live_release_built_the_same_is_stored_once(tmp_path: Path) -> None:
    live, made = tmp_path / "live", tmp_path / "made"
    for tree, changed in ((live, "old"), (made, "new")):
        write(tree / "same.css", "body {}")
        write(tree / "css/deep.css", "a {}")
        write(tree / "changed.js", changed)
        write(tree / "sized.js", changed + ("" if tree == live else "!"))
    os.symlink(made / "same.css", live / "linked.css")  # never a link's target
    write(made / "linked.css", "body {}")
    building.copy_tree(PurePosixPath(made), PurePosixPath(tmp_path / "build"),
                       PurePosixPath(live))
    built = tmp_path / "build"
    assert (built / "same.css").stat().st_ino == (live / "same.css").stat().st_ino
    assert (built / "css/deep.css").stat().st_ino == (live / "css/deep.css").stat().st_ino
    for copied in ("changed.js", "sized.js", "linked.css"):
        assert (built / copied).stat().st_nlink == 1, copied
        assert (built / copied).read_text() == (made / copied).read_text()
    assert oct((built / "changed.js").stat().st_mode & 0o777) == "0o644"


def test_build_and_release_commands_can_never_gain_privileges(host: Host) -> None:
    install_release(host.paths, "1.0.1", time.time())
    done = build(host, "1.0.1", ["sh", "-c", "grep NoNewPrivs /proc/self/status"
                                 " > \"$WSGISTACK_BUILD_DIR/status\""])
    assert done.returncode == 0, done.stderr
    status = Path(host.paths.release("1.0.1").build) / "status"
    assert status.read_text().split() == ["NoNewPrivs:", "1"]
