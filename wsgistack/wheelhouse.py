"""The wheelhouse: the app and its pinned dependencies as wheels, built once on the controller.

Hosts install from it with --no-index, so they need no PyPI and every host of a given
Python and architecture gets the same bits. A build is keyed by a digest of the app's
source, its requirements and the target, and reused until one of them changes.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from wsgistack.paths import BUILD_DIR
from wsgistack.settings import read_project

REQUIREMENTS = "requirements.txt"
SKIPPED = ("__pycache__", ".egg-info", ".pyc")
# pyinfra prepares hosts in parallel greenlets (threading is gevent-patched there): one build
# at a time, and every later host reuses it.
BUILD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    digest: str
    app_wheel: str  # file name of the app's own wheel, installed with --force-reinstall


def source_files(source: Path) -> list[Path]:
    """What the app's wheel is built from: its project file, requirements and src/."""
    files = [source / "pyproject.toml", source / REQUIREMENTS]
    files += [path for path in sorted((source / "src").rglob("*"))
              if path.is_file() and not any(part in str(path) for part in SKIPPED)]
    return files


def digest_of(source: Path, python: str, machine: str) -> str:
    digest = hashlib.sha256(f"{python} {machine}\n".encode())
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
        shutil.copyfile(source / REQUIREMENTS, scratch / REQUIREMENTS)
        scratch.rename(target)
    app_wheel = next(path.name for path in target.glob("*.whl")
                     if path.name.startswith(wheel_prefix(source)))
    return Wheelhouse(target, digest, app_wheel)


class WheelhouseError(Exception):
    """pip could not build or download a wheel; the message holds pip's own output."""


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise WheelhouseError(f"pip {args[0]} failed:\n{result.stdout}{result.stderr}")


def wheel_prefix(source: Path) -> str:
    name, version = read_project(source)
    return f"{name.replace('-', '_')}-{version}-"
