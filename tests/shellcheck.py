"""`make lint`: shellcheck every shell command the deploy sends to a host.

Root-side steps are golive's (Python, unit-tested). What is still shell: the one command
that reads a web host (and the one that reads a database host), the release install, a
refusal, certbot's deploy hook and the removal of its certificate, destroy's read and a
unit's removal. They are rendered here
exactly as the deploy renders them, for group data's apps plus one app marked absent, with
tls_mode acme (so every module's probes are there; without it for the removal), and
checked as the POSIX sh that pyinfra runs them with.

    python -m tests.shellcheck      (exit 1 and shellcheck's findings if any)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pyinfra.api import StringCommand

from tests.unit.test_settings import group_data
from wsgistack.build.wheelhouse import Wheelhouse
from wsgistack.components import acme, database
from wsgistack.components.releases import install_script
from wsgistack.components.stack import host_read, web_host
from wsgistack.config.environment import Environment, Member
from wsgistack.config.settings import load_settings
from wsgistack.engine import managed, teardown
from wsgistack.engine.changes import refuse
from wsgistack.engine.hoststate import Batch
from wsgistack.onhost.golive.layout import AppPaths

# An environment with a database host, for the database host's read.
DATABASE = Environment("staging", (Member("web1", "10.9.0.2"),), Member("db1", "10.9.0.6"))


def commands(secrets_dir: Path) -> dict[str, str]:
    """Each shell command the deploy sends, by what it is."""
    data = {**group_data("staging"), "secrets_dir": str(secrets_dir), "tls_mode": "acme",
            "acme_email": "ops@flasktodo.test"}  # with the certificate's state
    data["apps"] = [*data["apps"], {"name": "gone", "state": "absent", "purge": True}]
    settings = load_settings(data, "staging")
    secrets = {app.name: {"SECRET_KEY": "not-a-real-secret"} for app in settings.apps}
    app = settings.apps[0]
    wheels = secrets_dir / "wheelhouse"  # a scratch dir of the caller's
    wheels.mkdir(exist_ok=True)
    for wheel in ("flasktodo-1.0.1-py3-none-any.whl", "gunicorn-27.0.1-py3-none-any.whl"):
        (wheels / wheel).write_bytes(wheel.encode())
    build = Wheelhouse(wheels, "0123456789abcdef", "flasktodo-1.0.1-py3-none-any.whl")
    refusal = next(refuse._inner(message="it's refused; see \"why\""))  # type: ignore[attr-defined]
    assert isinstance(refusal, StringCommand)
    return {
        "the host read": Batch().command(reads=host_read(
            web_host(settings, Environment("staging", ()), secrets))),
        "the database host read": Batch().command(reads=host_read([database.DatabaseServer(
            database.view_of(settings, DATABASE, {app.name: "x" * 40}))])),
        "the release install": install_script(app, AppPaths(app.name), build),
        "a refusal": refusal.get_raw_value(),
        "a log's making": managed.log_command("/var/log/nginx/a.log", "root", "adm",
                                              "640").get_raw_value(),
        "certbot's deploy hook": next(item for item in acme.AcmeCertificate(settings).managed()
                                      if item.path == str(acme.HOOK)).content.decode(),
        "the destroy read": Batch().command(reads=teardown.host_read(*teardown.plan(
            web_host(settings, Environment("staging", ()), secrets), settings, True))),
        "a unit's removal": teardown.removed("/etc/systemd/system/wsgistack-x.timer").command,
        "the removal of certbot's certificate": next(
            item.command for item in acme.AcmeCertificate(load_settings(
                {**group_data("staging"), "secrets_dir": str(secrets_dir)}, "staging")).managed()
            if getattr(item, "command", None)),
    }


def main() -> int:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        print("shellcheck is missing: apt-get install shellcheck (make system-deps)",
              file=sys.stderr)
        return 1
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for what, command in commands(Path(scratch)).items():
            checked = subprocess.run([shellcheck, "--shell=sh", "-"], input=command, text=True,
                                     capture_output=True, check=False)
            print(f"shellcheck {what}: {'ok' if checked.returncode == 0 else 'FAILED'}")
            if checked.returncode != 0:
                failed = True
                print(checked.stdout, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
