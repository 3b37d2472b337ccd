"""supervisor-query, offline, against a faked supervisor socket: what the host read and
golive learn of a program."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.unit.onhost_stubs import FakeSupervisor
from wsgistack.engine.programs import SUPERVISOR_QUERY_SOURCE


def query(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", "-S", str(SUPERVISOR_QUERY_SOURCE),
                           *arguments], capture_output=True, text=True, check=False)


def test_state_and_pid_from_the_socket_supervisord_conf_names() -> None:
    with tempfile.TemporaryDirectory(prefix="sq", dir="/tmp") as short:
        conf = Path(short) / "supervisord.conf"
        conf.write_text(f"[supervisorctl]\nserverurl = unix://{short}/s.sock\n")
        fake = FakeSupervisor(Path(short) / "s.sock")
        try:
            fake.pid, fake.state = 4321, "STARTING"
            asked = query("flasktodo", "--conf", str(conf))
        finally:
            fake.close()
        assert asked.stdout == "STARTING 4321\n"
        assert query("flasktodo", "--conf", str(conf)).stdout == "", "nobody answers"


def test_only_an_app_name_is_asked_about() -> None:
    refused = query("<evil/>")
    assert refused.returncode == 2 and refused.stdout == ""
