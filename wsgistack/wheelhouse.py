"""The wheelhouse: the app and its pinned dependencies as wheels, built once on the controller.

Hosts install from it with --no-index, so they need no PyPI and every host of a given
Python and architecture gets the same bits. A build is keyed by a digest of the app's
source, its requirements and the target, and reused until one of them changes.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pyinfra.api.exceptions import PyinfraError

from wsgistack.paths import BUILD_DIR
from wsgistack.settings import AppSettings, read_project

REQUIREMENTS = "requirements.txt"
SKIPPED = ("__pycache__", ".egg-info", ".pyc")
# pyinfra prepares hosts in parallel greenlets (threading is gevent-patched there): one build
# at a time, and every later host reuses it.
BUILD_LOCK = threading.Lock()


# The installer, run on hosts straight from its wheel, so release venvs are made without
# pip (python3 -m venv --without-pip: no ensurepip, seconds faster per release).
INSTALLER = "pip==26.3"


@dataclass(frozen=True)
class Wheelhouse:
    path: Path  # the wheels and requirements.txt
    digest: str
    app_wheel: str  # file name of the app's own wheel
    installer_wheel: str  # file name of pip's wheel

    @property
    def archive(self) -> Path:
        """The wheelhouse as one uncompressed tar (wheels are compressed): one upload."""
        return self.path.with_name(self.path.name + ".tar")


def source_files(source: Path) -> list[Path]:
    """What the app's wheel is built from: its project file, requirements and src/."""
    files = [source / "pyproject.toml", source / REQUIREMENTS]
    files += [path for path in sorted((source / "src").rglob("*"))
              if path.is_file() and not any(part in str(path) for part in SKIPPED)]
    return files


def digest_of(source: Path, python: str, machine: str) -> str:
    digest = hashlib.sha256(f"{python} {machine} {INSTALLER}\n".encode())
    for path in source_files(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build(source: Path, python: str, machine: str) -> Wheelhouse:
    """Build (or reuse) the wheelhouse of `source` for CPython `python` (e.g. "3.11") on
    `machine` (e.g. "x86_64")."""
    with BUILD_LOCK:
        return build_once(source, python, machine)


@functools.cache
def build_once(source: Path, python: str, machine: str) -> Wheelhouse:
    digest = digest_of(source, python, machine)
    target = BUILD_DIR / "wheelhouse" / f"{source.name}-{digest}"
    if not target.exists():
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        with tempfile.TemporaryDirectory() as clean:
            # Build from a copy of exactly the digested files, never in the source tree.
            for path in source_files(source):
                copy = Path(clean) / path.relative_to(source)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
            pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(scratch), clean)
        pip("download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python, "--platform", f"manylinux2014_{machine}",
            "-d", str(scratch), "-r", str(source / REQUIREMENTS))
        pip("download", "--no-deps", "--only-binary=:all:", "-d", str(scratch), INSTALLER)
        shutil.copyfile(source / REQUIREMENTS, scratch / REQUIREMENTS)
        with tarfile.open(scratch.with_name(target.name + ".tar"), "w") as archive:
            for path in sorted(scratch.iterdir()):
                archive.add(path, arcname=path.name)
        scratch.rename(target)

    def wheel(prefix: str) -> str:
        return next(path.name for path in target.glob(f"{prefix}*.whl"))

    return Wheelhouse(target, digest, wheel(wheel_prefix(source)), wheel("pip-"))


def forget(source: Path) -> None:
    """Remove every cached build of `source`, so the next build is made anew."""
    name = re.compile(rf"{re.escape(source.name)}-[0-9a-f]{{16}}(\.tar|\.partial)?")
    for cached in (BUILD_DIR / "wheelhouse").glob(f"{source.name}-*"):
        if not name.fullmatch(cached.name):
            continue
        if cached.is_dir():
            shutil.rmtree(cached)
        else:
            cached.unlink()


class WheelhouseError(Exception):
    """pip could not build or download a wheel; the message holds pip's own output."""


class BuildError(PyinfraError):
    """An app's wheelhouse could not be made: a pyinfra error, so the run stops before any
    operation, with one line naming the app and then the end of pip's output."""


def build_app(app: AppSettings, python: str, machine: str) -> Wheelhouse:
    """build() for an app, its failure said in the app's name; each of its static dirs must
    be in one of the wheels it installs."""
    try:
        built = build(app.source, python, machine)
    except WheelhouseError as error:
        detail = "\n".join(f"    {line}" for line in str(error).strip().splitlines()[-15:])
        raise BuildError(f"apps[{app.name}]: building {app.source} for CPython {python}"
                         f" ({machine}) failed; nothing was deployed:\n{detail}") from None
    folders = wheel_folders(built.path)
    for url, folder in app.static:
        if folder not in folders:
            raise BuildError(f"apps[{app.name}].static: {url} -> {folder}: no such dir in"
                             " the release's wheels; nothing was deployed")
    return built


@functools.cache  # a wheelhouse never changes once built (its name holds its digest)
def wheel_folders(wheels: Path) -> frozenset[str]:
    """Every directory the wheels in `wheels` install (e.g. "flasktodo/static")."""
    folders = set()
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                parts = name.split("/")[:-1]
                folders.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return frozenset(folders)


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WheelhouseError(f"pip {args[0]} failed:\n{result.stdout}{result.stderr}")


def wheel_prefix(source: Path) -> str:
    name, version = read_project(source)
    return f"{name.replace('-', '_')}-{version}-"
