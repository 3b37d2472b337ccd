"""The wheelhouse: an app and its pinned dependencies as wheels, made once on the controller.

Hosts install from it with --no-index, so they need no PyPI and every host of a given
target (Python, architecture, glibc) gets the same bits. It holds:
- the app's own wheel (wsgistack.build.sources), unless the app is a package from PyPI;
- its dependencies, pinned by the app's lock: its requirements.txt where every line is an
  exact pin, else resolved by uv for the target and recorded in locks/ (commit that file:
  later deploys install the same versions until the app's requirements change);
- each pin as the target's binary wheel (manylinux up to the host's glibc), or, for a
  package that publishes only an sdist, a pure-Python wheel built from it here;
- gunicorn, unless the lock pins it.
A build is keyed by a digest of all that and reused until one of them changes. A host is
sent only the wheels it does not store yet (`Wheelhouse.upload`), and installs them with uv
(`uv_binary`: the controller's own version, built for the host), which the deploy puts on
each web host once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from wsgistack.build import sources
from wsgistack.build.sources import BUILD_LOCK, REQUIREMENTS, SourceError, run_pip, run_uv
from wsgistack.config.settings import PACKAGE, AppSettings, is_built
from wsgistack.engine.changes import OperatorError
from wsgistack.engine.programs import UV_VERSION
from wsgistack.paths import BUILD_DIR, LOCKS_DIR

# Every wheelhouse's digest so far begins with this, the installer releases were first
# installed with (pip 26.3, from its wheel). uv installs them now, but a release's digest
# says what it is made of, not what installed it: a live release whose digest changed would
# be refused as rebuilt (wsgistack.components.releases), so the seed stays.
DIGEST_SEED = "pip==26.3"
UV = f"uv=={UV_VERSION}"  # installs releases on hosts: the controller's own
# What every release runs under, unless the app's lock pins its own.
GUNICORN = "gunicorn==27.0.1"
# An exact pin in a lock: a package entry's form, with an environment marker allowed.
PIN = re.compile(PACKAGE.pattern.removesuffix("$") + r"(\s*;.*)?$")
MISSING = re.compile(r"No matching distribution found for (\S+)")
# manylinux platforms under other names (PEP 600): glibc minor version -> legacy tag
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
# The glibc levels uv names for resolving (uv pip compile --python-platform)
UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


@dataclass(frozen=True)
class Target:
    """What a host runs wheels on: CPython `python` ("3.11"), `machine` ("x86_64") and
    `glibc` ("2.36"), from the host (wsgistack.engine.facts.PythonTarget)."""

    python: str
    machine: str
    glibc: str

    @property
    def glibc_minor(self) -> int:
        major, minor = self.glibc.split(".")[:2]
        return int(minor) if major == "2" else 0

    def platforms(self) -> list[str]:
        """Every manylinux tag this glibc runs, newest first (pip's --platform takes no
        range)."""
        tags = [f"manylinux_2_{minor}_{self.machine}"
                for minor in range(self.glibc_minor, 4, -1)]
        tags += [f"{legacy}_{self.machine}" for minor, legacy in LEGACY_MANYLINUX.items()
                 if minor <= self.glibc_minor]
        return tags

    @property
    def uv_platform(self) -> str:
        level = max((minor for minor in UV_MANYLINUX if minor <= self.glibc_minor), default=17)
        return f"{self.machine}-manylinux_2_{level}"

    def __str__(self) -> str:
        return f"CPython {self.python} ({self.machine}, glibc {self.glibc})"


@dataclass(frozen=True)
class Wheelhouse:
    path: Path  # the wheels and requirements.txt
    digest: str
    app_wheel: str | None  # file name of the app's own wheel; None: it is in the lock

    def stored(self) -> dict[str, str]:
        """Each wheel's file name, and the name a host stores it under (`<digest>-<name>`,
        the digest of its bytes): a host keeps each wheel once, whichever release sent it."""
        return stored_names(self.path)

    def upload(self, present: Collection[str]) -> Path:
        """What a host that stores `present` lacks, as one uncompressed tar (wheels are
        compressed): requirements.txt, and each wheel not present under its stored name."""
        missing = {name: stored for name, stored in self.stored().items()
                   if stored not in present}
        which = hashlib.sha256("\n".join(sorted(missing.values())).encode()).hexdigest()[:16]
        path = self.path.with_name(f"{self.path.name}-{which}.tar")
        with BUILD_LOCK:
            if not path.exists():
                partial = path.with_name(path.name + ".partial")
                with tarfile.open(partial, "w") as archive:
                    archive.add(self.path / REQUIREMENTS, arcname=REQUIREMENTS)
                    for name, stored in missing.items():
                        archive.add(self.path / name, arcname=stored)
                partial.rename(path)
        return path


@functools.cache  # a wheelhouse never changes once built (its name holds its digest)
def stored_names(wheels: Path) -> dict[str, str]:
    return {wheel.name: f"{hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]}-{wheel.name}"
            for wheel in sorted(wheels.glob("*.whl"))}


class WheelhouseError(Exception):
    """pip or uv could not resolve, download or build a wheel; the message holds their
    output."""


class BuildError(OperatorError):
    """An app's wheelhouse could not be made: a pyinfra error, so the run stops before any
    operation, with one line naming the app and then the end of the tools' output."""


def build_app(app: AppSettings, target: Target) -> Wheelhouse:
    """The app's wheelhouse for `target`, its failure said in the app's name; each of its
    static dirs must be in one of the wheels it installs (but those its build commands
    make, checked on the host)."""
    try:
        with BUILD_LOCK:
            built = build(app.name, app.source, app.package, target)
    except (WheelhouseError, SourceError) as error:
        what = app.source or app.package
        detail = "\n".join(f"    {line}" for line in reason_lines(str(error)))
        raise BuildError(f"apps[{app.name}]: building {what} for {target} failed; nothing"
                         f" was deployed:\n{detail}") from None
    folders = wheel_folders(built.path)
    for url, folder in app.static:
        if not is_built(folder) and folder not in folders:
            raise BuildError(f"apps[{app.name}].static: {url} -> {folder}: no such dir in"
                             " the release's wheels; nothing was deployed")
    return built


# pip's own words that a subprocess failed: never the reason itself.
PIP_WRAPPERS = ("subprocess-exited-with-error", "metadata-generation-failed",
                "error: failed-wheel-build-for-install")


def reason_lines(output: str, context: int = 3, last: int = 15) -> list[str]:
    """What of pip's, uv's or a build backend's output says why it failed, however long:
    each line with `error:` (but pip's wrappers) and the `context` lines after it, then the
    `last` lines; "..." where lines are left out. A backend's Python traceback is said by
    its last line alone (e.g. "ModuleNotFoundError: No module named 'its_backend'")."""
    lines = without_tracebacks(output.strip().splitlines())
    kept = {index + offset for index, line in enumerate(lines)
            if "error:" in line.lower() and not any(wrap in line for wrap in PIP_WRAPPERS)
            for offset in range(context + 1)}
    kept |= set(range(max(len(lines) - last, 0), len(lines)))
    shown: list[str] = []
    for index in sorted(index for index in kept if index < len(lines)):
        if shown and index - 1 not in kept:
            shown.append("...")
        shown.append(lines[index])
    return shown


def without_tracebacks(lines: list[str]) -> list[str]:
    """`lines` less each Python traceback's header and frames (its indented lines)."""
    kept: list[str] = []
    frames: str | None = None  # the traceback header's indent while in one
    for line in lines:
        if line.lstrip().startswith("Traceback (most recent call last):"):
            frames = line[:len(line) - len(line.lstrip())]
            continue
        if frames is not None and line.startswith(frames + " "):
            continue
        frames = None
        kept.append(line)
    return kept


def build(name: str, source: Path | None, package: str | None, target: Target) -> Wheelhouse:
    """The wheelhouse of app `name`, from its `source` dir or its PyPI `package` pin."""
    app_wheel = sources.wheel(source, name) if source else None
    pins = lock(name, source, package, app_wheel, target)
    return assemble(name, app_wheel, tuple(pins), target)


def lock(name: str, source: Path | None, package: str | None, app_wheel: Path | None,
         target: Target) -> list[str]:
    """The exact pins to install besides the app's own wheel: its requirements.txt if that is
    a lock already, else uv's resolution for the target, recorded in locks/."""
    given = read_requirements(source / REQUIREMENTS) if source else []
    if given and all(PIN.match(line) for line in given):
        pins = given
    else:
        wanted = [*(sources.requires(app_wheel) if app_wheel else []), *given,
                  *([package] if package else [])]
        pins = recorded_lock(name, wanted, target)
    if not any(PIN.match(pin)["name"].lower() == "gunicorn" for pin in pins):
        pins = [*pins, GUNICORN]
    return pins


def read_requirements(path: Path) -> list[str]:
    return read_requirements_text(path.read_text()) if path.is_file() else []


def lock_path(name: str, target: Target) -> Path:
    return LOCKS_DIR / f"{name}-py{target.python}-{target.machine}.txt"


def recorded_lock(name: str, wanted: list[str], target: Target) -> list[str]:
    """The pins recorded for `wanted` on this target, resolved by uv (and recorded) the first
    time, and again whenever `wanted` changes."""
    inputs = hashlib.sha256("\n".join([*wanted, str(target)]).encode()).hexdigest()[:16]
    path = lock_path(name, target)
    header = (f"# {name} for CPython {target.python} ({target.machine}), resolved by uv"
              f" (wsgistack) from: {', '.join(wanted) or 'nothing'}\n# inputs {inputs}\n")
    if path.is_file() and path.read_text().startswith(header):
        return read_requirements(path)
    pins = resolve(wanted, target) if wanted else []
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(header + "".join(f"{pin}\n" for pin in pins))
    temporary.replace(path)  # whole, for a deploy reading it meanwhile
    return pins


def resolve(wanted: list[str], target: Target) -> list[str]:
    try:
        resolved = run_uv("pip", "compile", "-", "--quiet", "--no-header", "--no-annotate",
                          "--python-version", target.python,
                          "--python-platform", target.uv_platform,
                          given="\n".join(wanted) + "\n")
    except SourceError as error:
        raise WheelhouseError(str(error)) from None
    return read_requirements_text(resolved)


def read_requirements_text(text: str) -> list[str]:
    """The requirement lines of a requirements file's text, less comments and blanks."""
    lines = (line.split(" #")[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@functools.cache
def assemble(name: str, app_wheel: Path | None, pins: tuple[str, ...], target: Target
             ) -> Wheelhouse:
    identity = hashlib.sha256(f"{target} {DIGEST_SEED}\n".encode())
    identity.update("\n".join(pins).encode())
    if app_wheel:  # by content: a change to what the wheel leaves out changes nothing
        identity.update(f"{app_wheel.name} {sources.content_digest(app_wheel)}".encode())
    digest = identity.hexdigest()[:16]
    path = BUILD_DIR / "wheelhouse" / f"{name}-{digest}"
    if not path.exists():
        scratch = path.with_name(path.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        if app_wheel:
            shutil.copyfile(app_wheel, scratch / app_wheel.name)
        for each in dependencies(pins, target).iterdir():
            os.link(each, scratch / each.name)  # a wheel never changes: shared, not copied
        (scratch / REQUIREMENTS).write_text("".join(f"{pin}\n" for pin in pins))
        scratch.rename(path)

    return Wheelhouse(path, digest, app_wheel.name if app_wheel else None)


def dependencies(pins: tuple[str, ...], target: Target) -> Path:
    """The pins' wheels for the target, fetched once per lock: a new version of an app whose
    lock did not change builds its own wheel alone."""
    identity = hashlib.sha256(f"{target} wheels\n".encode() + "\n".join(pins).encode())
    path = BUILD_DIR / "dependencies" / identity.hexdigest()[:16]
    if not path.exists():
        scratch = path.with_name(path.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        fetch(list(pins), target, scratch)
        scratch.rename(path)
    return path


def uv_binary(target: Target) -> Path:
    """uv's program for the target (the controller's version, from its wheel on PyPI),
    fetched once."""
    path = BUILD_DIR / "tools" / f"{UV.replace('==', '-')}-{target.machine}" / "uv"
    with BUILD_LOCK:
        if path.exists():
            return path
        with tempfile.TemporaryDirectory() as scratch:
            fetch([UV], target, Path(scratch))
            [wheel] = Path(scratch).glob("uv-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                [member] = [name for name in archive.namelist()
                            if name.endswith(".data/scripts/uv")]
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name("uv.partial")
                partial.write_bytes(archive.read(member))
            partial.chmod(0o755)
            partial.rename(path)
    return path


def fetch(pins: list[str], target: Target, into: Path) -> None:
    """Each pin's wheel for the target; a pin with none (an sdist-only package) is built
    here, and must make a pure-Python wheel."""
    remaining = pins
    while remaining:
        try:
            run_pip("download", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
                    "--python-version", target.python,
                    *(f"--platform={tag}" for tag in target.platforms()),
                    "-d", str(into), *remaining)
            return
        except SourceError as error:
            missing = MISSING.search(str(error))
            if missing is None or missing[1] not in remaining:
                raise WheelhouseError(str(error)) from None
        build_sdist(missing[1], target, into)
        remaining = [pin for pin in remaining if pin != missing[1]]


def build_sdist(pin: str, target: Target, into: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        try:
            run_pip("download", "--no-deps", "--no-binary=:all:", "-d", scratch, pin)
            run_pip("wheel", "--no-deps", "-w", scratch, *map(str, Path(scratch).glob("*.*")))
        except SourceError as error:
            raise WheelhouseError(f"{pin}: no wheel for {target}, and its sdist did not"
                                  f" build:\n{error}") from None
        built = list(Path(scratch).glob("*.whl"))
        if not built or not all(each.name.endswith("-none-any.whl") for each in built):
            raise WheelhouseError(f"{pin}: no wheel for {target}, and its sdist builds"
                                  f" {[each.name for each in built]}, not a pure-Python wheel")
        for each in built:
            shutil.copyfile(each, into / each.name)


def forget(name: str) -> None:
    """Remove every cached wheelhouse of app `name`, so the next build is made anew."""
    digest = "[0-9a-f]{16}"  # its wheelhouses, their uploads, and partial builds of either
    pattern = re.compile(rf"{re.escape(name)}-{digest}(-{digest}\.tar)?(\.partial)?")
    for cached in (BUILD_DIR / "wheelhouse").glob(f"{name}-*"):
        if not pattern.fullmatch(cached.name):
            continue
        if cached.is_dir():
            shutil.rmtree(cached)
        else:
            cached.unlink()
    assemble.cache_clear()


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
