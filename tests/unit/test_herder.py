"""gunicorn-herder, offline: `run` under a stand-in gunicorn master, and `reload`'s swap,
its failure paths, and the pids and files it refuses to believe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.polling import wait_for
from tests.unit.onhost_stubs import GUNICORN
from wsgistack.engine.programs import HERDER_SOURCE
from wsgistack.onhost import gunicorn_herder as herder


@dataclass
class Herded:
    """`gunicorn-herder run` with a stand-in gunicorn, as supervisor runs it."""

    process: subprocess.Popen
    pidfile: Path

    @property
    def master(self) -> int:
        return wait_for(lambda: herder.read_pid(self.pidfile), what="the master's pid file")

    def reload(self, workers: int = 2, timeout: float = 10) -> str:
        return herder.reload(self.pidfile, self.process.pid, os.getuid(), workers, timeout,
                             graceful=5)


def start_herded(run_dir: Path, workers: int = 2) -> Herded:
    stub = run_dir.parent / "gunicorn.py"
    stub.write_text(GUNICORN)
    pidfile = run_dir / "gunicorn.pid"
    process = subprocess.Popen(
        [sys.executable, str(HERDER_SOURCE), "run", "--pidfile", str(pidfile), "--",
         sys.executable, str(stub)],
        env={**os.environ, "STUB_PIDFILE": str(pidfile), "STUB_WORKERS": str(workers)},
        stderr=subprocess.PIPE, text=True)
    herded = Herded(process, pidfile)
    wait_for(lambda: herder.ready_workers(pidfile, herded.master) == workers,
             what="the first workers")
    return herded


@pytest.fixture
def herded(tmp_path: Path) -> Iterator[Herded]:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    herded = start_herded(run_dir)
    yield herded
    herded.process.send_signal(signal.SIGTERM)
    herded.process.wait(timeout=10)


def test_a_swap_replaces_the_master_and_the_herder_follows_it(herded: Herded) -> None:
    old = herded.master
    message = herded.reload()
    new = herder.read_pid(herded.pidfile)
    assert message == f"gunicorn swapped gracefully: master {old} -> {new}, 2 workers ready"
    assert new != old and not herder.alive(old)
    assert herder.parent_of(new) == herded.process.pid, "the herder adopted the new master"
    assert not herded.pidfile.with_name("gunicorn.pid.2").exists()
    assert herded.process.poll() is None, "supervisor's process never exited"
    # The herder forwards supervisor's TERM to the master it now follows, and exits with it.
    herded.process.send_signal(signal.SIGTERM)
    assert herded.process.wait(timeout=10) == 0
    assert not herder.alive(new)


def test_a_new_master_that_dies_leaves_the_old_one_serving(herded: Herded) -> None:
    old = herded.master
    (herded.pidfile.parent / "broken").touch()
    with pytest.raises(herder.ReloadFailed, match=f"exited; the old master {old} still serves"):
        herded.reload()
    assert herder.alive(old) and herder.read_pid(herded.pidfile) == old


def test_new_workers_never_ready_time_out_and_the_new_master_is_stopped(herded: Herded) -> None:
    old = herded.master
    with pytest.raises(herder.ReloadFailed, match="did not get 5 workers ready within 1s"):
        herded.reload(workers=5, timeout=1)
    assert herder.alive(old) and herder.read_pid(herded.pidfile) == old
    assert [path.name for path in herded.pidfile.parent.glob("gunicorn.pid.2")] == []


def test_a_pid_the_app_wrote_is_never_signalled(herded: Herded) -> None:
    """The app's user owns the pid file: a pid there that is not the herder's child (here
    a process of our own standing in for one of root's) is refused, and stays alive."""
    bystander = subprocess.Popen(["sleep", "30"])
    real = herded.master
    try:
        herded.pidfile.write_text(str(bystander.pid))
        with pytest.raises(herder.ReloadFailed, match="does not name a gunicorn master"):
            herded.reload()
        assert bystander.poll() is None and herder.alive(real)
    finally:
        bystander.kill()
        bystander.wait()
        herded.pidfile.write_text(str(real))


def test_a_pid_of_another_user_is_refused(herded: Herded) -> None:
    assert herder.Master.verified(herded.master, herded.process.pid, os.getuid() + 1) is None
    assert herder.Master.verified(herded.master, herded.process.pid, os.getuid()) is not None


def test_nothing_running_is_nothing_to_swap(tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    message = herder.reload(tmp_path / "gunicorn.pid", gone.pid, os.getuid(), 2, 1, 1)
    assert message.startswith("gunicorn is not running")


def test_files_the_app_controls_are_read_safely(tmp_path: Path) -> None:
    """A link is not followed and a FIFO is not waited on (it would hang root's deploy)."""
    secret = tmp_path / "shadow"
    secret.write_text("1234\n")
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "pid").write_text("4321\n")
    assert herder.read_pid(tmp_path / "link") is None
    assert herder.read_pid(tmp_path / "fifo") is None
    assert herder.read_pid(tmp_path / "missing") is None
    assert herder.read_pid(tmp_path / "pid") == 4321
    (tmp_path / "pid").write_text("1\n")
    assert herder.read_pid(tmp_path / "pid") is None, "never init"
