"""Where things are: in this repo on the controller, and on the hosts for each app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "templates"
BUILD_DIR = REPO_ROOT / "build"
HERDER_SOURCE = Path(__file__).resolve().parent / "onhost" / "gunicorn_herder.py"
HERDER = PurePosixPath("/usr/local/lib/wsgistack/gunicorn-herder")


@dataclass(frozen=True)
class ReleasePaths:
    """One installed version of an app: its own venv, never changed once installed."""

    path: PurePosixPath

    @property
    def venv(self) -> PurePosixPath:
        return self.path / "venv"

    @property
    def installed_marker(self) -> PurePosixPath:
        """Holds the digest of the wheelhouse the release was installed from, written last."""
        return self.path / ".wheelhouse-digest"

    @property
    def static(self) -> PurePosixPath:
        """Link to the installed package's static dir; nginx serves current/static/."""
        return self.path / "static"


@dataclass(frozen=True)
class AppPaths:
    """An app's places on a host, all derived from its name."""

    name: str

    @property
    def home(self) -> PurePosixPath:
        """Code, venv and wheelhouse: root-owned, read-only to the app."""
        return PurePosixPath("/opt") / self.name

    @property
    def releases(self) -> PurePosixPath:
        return self.home / "releases"

    def release(self, version: str) -> ReleasePaths:
        return ReleasePaths(self.releases / version)

    @property
    def current(self) -> PurePosixPath:
        """Link to the live release, switched in one rename; gunicorn runs through it."""
        return self.home / "current"

    @property
    def wheelhouse(self) -> PurePosixPath:
        """The last uploaded wheelhouse, which releases are installed from."""
        return self.home / "wheelhouse"

    @property
    def config_dir(self) -> PurePosixPath:
        return PurePosixPath("/etc") / self.name

    @property
    def config(self) -> PurePosixPath:
        return self.config_dir / "config.py"

    @property
    def gunicorn_config(self) -> PurePosixPath:
        return self.config_dir / "gunicorn.conf.py"

    @property
    def data(self) -> PurePosixPath:
        """The app's state, outside the code: survives every deploy."""
        return PurePosixPath("/var/lib") / self.name

    @property
    def database(self) -> PurePosixPath:
        return self.data / f"{self.name}.sqlite3"

    @property
    def backups(self) -> PurePosixPath:
        """Online backups of the database, one taken before each release switch."""
        return self.data / "backups"

    @property
    def run_dir(self) -> PurePosixPath:
        return PurePosixPath("/run") / self.name

    @property
    def pid_file(self) -> PurePosixPath:
        return self.run_dir / "gunicorn.pid"

    @property
    def supervisor_program(self) -> PurePosixPath:
        return PurePosixPath("/etc/supervisor/conf.d") / f"{self.name}.conf"

    @property
    def stdout_log(self) -> PurePosixPath:
        return PurePosixPath("/var/log/supervisor") / f"{self.name}.out.log"

    @property
    def stderr_log(self) -> PurePosixPath:
        return PurePosixPath("/var/log/supervisor") / f"{self.name}.err.log"

    @property
    def tmpfiles(self) -> PurePosixPath:
        return PurePosixPath("/etc/tmpfiles.d") / f"{self.name}.conf"
