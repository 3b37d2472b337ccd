"""An app's own code on the controller: which files it is, and its wheel.

A source dir is taken in any layout:
- a project (`pyproject.toml` or `setup.py`): built by uv with build isolation, so any
  PEP 517 backend (setuptools, hatchling, flit, poetry, ...) works as the project declares
  (uv keeps each backend's environment cached: pip made it anew for every build);
- a plain tree (e.g. what `django-admin startproject` makes): packed as it is into a wheel
  named after the app, version `0+<digest of its files>`, so every change is a new release.

Either way the wheel holds exactly the source's files (see `source_files`), and its build is
kept under build/ keyed by their digest, so an unchanged source is never built twice.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from wsgistack.paths import BUILD_DIR

PROJECT_FILES = ("pyproject.toml", "setup.py")
# Never part of a release: VCS and tool dirs, caches, local venvs and build output, local
# databases and dotfiles (a developer's .env holds secrets).
SKIPPED_DIRS = {"__pycache__", "build", "dist", "node_modules", "venv", "env"}
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".sqlite3", ".db")
REQUIREMENTS = "requirements.txt"
WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")
# pyinfra prepares hosts in parallel greenlets (threading is gevent-patched there): one build
# at a time (the wheelhouse's too), and every later host reuses it.
BUILD_LOCK = threading.RLock()


class SourceError(Exception):
    """The source could not be built; the message ends with the build tool's own output."""


def source_files(source: Path) -> list[Path]:
    """The files a release is made of: every file under `source` but the skipped ones
    (whose dirs are never walked into), sorted."""
    found = []
    for folder, dirs, files in os.walk(source):
        dirs[:] = [name for name in dirs if not skipped(name)]
        found += [Path(folder, name) for name in files
                  if not skipped(name) and not Path(folder, name).is_symlink()]
    return sorted(found)


def skipped(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS or name.endswith(SKIPPED_SUFFIXES)


def digest(source: Path) -> str:
    """Of the source's file names and contents: what decides whether to build anew."""
    hashed = hashlib.sha256()
    for path in source_files(source):
        hashed.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return hashed.hexdigest()[:16]


def is_project(source: Path) -> bool:
    return any((source / name).is_file() for name in PROJECT_FILES)


def identity(source: Path, app_name: str) -> tuple[str, str]:
    """(distribution, version) of the app's code: from pyproject.toml where both are static,
    else from its wheel, built now."""
    if not is_project(source):
        return app_name, f"0+{digest(source)}"
    pyproject = source / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        if "name" in project and "version" in project:
            return project["name"], project["version"]
    found = WHEEL_NAME.match(wheel(source, app_name).name)
    assert found is not None  # pip names wheels so
    return found["name"], found["version"]


def wheel(source: Path, app_name: str) -> Path:
    """The app's wheel, built (or packed) once per digest of its source."""
    with BUILD_LOCK:
        return build_wheel(source.resolve(), app_name, digest(source))


@functools.cache
def build_wheel(source: Path, app_name: str, source_digest: str) -> Path:
    target = BUILD_DIR / "apps" / f"{app_name}-{source_digest}"
    if not target.is_dir():
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        if is_project(source):
            build_project(source, scratch)
        else:
            pack_tree(source, app_name, f"0+{source_digest}", scratch)
        scratch.rename(target)
    return next(target.glob("*.whl"))


def build_project(source: Path, into: Path) -> None:
    """uv build, with build isolation (the backend the project declares, fetched on the
    controller), from a copy of exactly the source's files."""
    with tempfile.TemporaryDirectory() as clean:
        copied, out = Path(clean, "source"), Path(clean, "out")
        for path in source_files(source):
            copy = copied / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy)
        run_uv("build", "--wheel", "--out-dir", str(out), str(copied))
        built = [shutil.move(wheel, into) for wheel in out.glob("*.whl")]
    if len(built) != 1 or not built[0].endswith("-none-any.whl"):
        raise SourceError(f"building {source} made {[Path(path).name for path in built]}, not one"
                          " pure-Python wheel (…-none-any.whl): only pure-Python app code is"
                          " built on the controller")


def pack_tree(source: Path, app_name: str, version: str, into: Path) -> Path:
    """A wheel of a plain tree, by the wheel format's rules (PEP 427): the tree's files at
    the root of site-packages, plus METADATA, WHEEL and RECORD."""
    distribution = app_name.replace("-", "_")
    info = f"{distribution}-{version}.dist-info"
    contents = {str(path.relative_to(source)): path.read_bytes()
                for path in source_files(source) if path.name != REQUIREMENTS}
    contents[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {app_name}\n"
                                    f"Version: {version}\n").encode()
    contents[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: wsgistack\n"
                                 b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = [f"{name},sha256={urlsafe_digest(data)},{len(data)}"
              for name, data in contents.items()]
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    path = into / f"{distribution}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return path


def urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def content_digest(wheel_path: Path) -> str:
    """Of the code the wheel installs: its RECORD's lines (each file's SHA-256) but those
    of its .dist-info, which a newer build backend writes differently; never the zip's
    bytes, which a rebuild of the same code changes (file times). Its dependencies count
    through the lock."""
    with zipfile.ZipFile(wheel_path) as archive:
        record = next(entry for entry in archive.namelist()
                      if entry.endswith(".dist-info/RECORD") and entry.count("/") == 1)
        lines = archive.read(record).decode().splitlines()
    code = sorted(line for line in lines if ".dist-info/" not in line.split(",")[0])
    return hashlib.sha256("\n".join(code).encode()).hexdigest()


def requires(wheel_path: Path) -> list[str]:
    """The wheel's own dependencies (Requires-Dist), as PEP 508 lines."""
    with zipfile.ZipFile(wheel_path) as archive:
        name = next(entry for entry in archive.namelist()
                    if entry.endswith(".dist-info/METADATA") and entry.count("/") == 1)
        metadata = HeaderParser().parsestr(archive.read(name).decode())
    return metadata.get_all("Requires-Dist") or []


def run_uv(*args: str, given: str | None = None) -> str:
    """uv (the controller's, from its wheel) with `args` and `given` as its input."""
    from uv import find_uv_bin  # imported here: only a build needs it

    return run_tool([find_uv_bin(), *args], f"uv {args[0]}", given)


def run_pip(*args: str) -> None:
    run_tool([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
             f"pip {args[0]}")


def run_tool(command: list[str], what: str, given: str | None = None) -> str:
    """`command`'s output, or SourceError with all it said (a build backend's output
    included), as `what` failed."""
    result = subprocess.run(command, input=given, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SourceError(f"{what} failed:\n{result.stdout}{result.stderr}")
    return result.stdout
