"""The wheelhouse and the app's own code, on the controller: which wheels for which host,
which pins, and what a plain tree's wheel holds. Offline but for the tests marked as using
the package index."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from wsgistack.build import sources, wheelhouse
from wsgistack.build.wheelhouse import Target
from wsgistack.config.settings import AppSettings

BOOKWORM = Target("3.11", "x86_64", "2.36")


def test_forget_removes_only_the_builds_of_that_app(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheelhouse, "BUILD_DIR", tmp_path)
    cache = tmp_path / "wheelhouse"
    cache.mkdir()
    digest = "0123456789abcdef"
    for name in ("shop", "shop-admin", "shop-admin-2"):
        (cache / f"{name}-{digest}").mkdir()
        (cache / f"{name}-{digest}-{digest}.tar").write_bytes(b"")  # an upload
    wheelhouse.forget("shop-admin")
    wheelhouse.forget("shop")
    assert sorted(path.name for path in cache.iterdir()) == [
        f"shop-admin-2-{digest}", f"shop-admin-2-{digest}-{digest}.tar"]


def test_a_host_is_sent_the_requirements_and_only_the_wheels_it_does_not_store(
        tmp_path: Path) -> None:
    wheels = tmp_path / "shop-0123456789abcdef"
    wheels.mkdir()
    for name in ("shop-1.0-py3-none-any.whl", "flask-3.1.3-py3-none-any.whl"):
        (wheels / name).write_bytes(name.encode())
    (wheels / "requirements.txt").write_text("flask==3.1.3\n")
    build = wheelhouse.Wheelhouse(wheels, "0123456789abcdef", "shop-1.0-py3-none-any.whl")
    stored = build.stored()
    assert stored["flask-3.1.3-py3-none-any.whl"].endswith("-flask-3.1.3-py3-none-any.whl")
    sent = build.upload({stored["flask-3.1.3-py3-none-any.whl"], "other-wheel"})
    with tarfile.open(sent) as archive:
        assert sorted(archive.getnames()) == sorted(
            ["requirements.txt", stored["shop-1.0-py3-none-any.whl"]])
    assert build.upload(set()) != sent, "another host lacking more gets its own tar"


def test_each_static_dir_must_be_in_the_releases_wheels(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked on the controller, before any host is touched: one line naming the app."""
    with zipfile.ZipFile(tmp_path / "app-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("app/static/css/site.css", "body {}")
        wheel.writestr("app/__init__.py", "")
    built = wheelhouse.Wheelhouse(tmp_path, "digest", "app-1.0-py3-none-any.whl")
    monkeypatch.setattr(wheelhouse, "build", lambda *_args: built)
    assert {"app", "app/static", "app/static/css"} <= wheelhouse.wheel_folders(tmp_path)

    def app(static: dict) -> AppSettings:
        return AppSettings(name="shop", source=tmp_path, package=None, distribution="app",
                           version="1.0", wsgi="app:app", prefix="/shop", port=8000, workers=1,
                           static=tuple(static.items()))

    assert wheelhouse.build_app(app({"/static/": "app/static"}), BOOKWORM) is built
    with pytest.raises(wheelhouse.BuildError) as error:
        wheelhouse.build_app(app({"/static/": "app/static", "/media/": "app/media"}), BOOKWORM)
    assert str(error.value) == ("apps[shop].static: /media/ -> app/media: no such dir in the"
                                " release's wheels; nothing was deployed")


def test_a_hosts_glibc_decides_which_manylinux_wheels_it_gets() -> None:
    """pip's --platform takes exact tags: every level the host's glibc runs is named."""
    tags = BOOKWORM.platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_28_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags
    assert Target("3.13", "aarch64", "2.41").uv_platform == "aarch64-manylinux_2_40"
    assert Target("3.11", "x86_64", "2.30").uv_platform == "x86_64-manylinux_2_28"


def test_a_plain_tree_is_packed_as_it_is_without_the_local_leftovers(tmp_path: Path) -> None:
    """What `django-admin startproject` makes has no packaging: its files are the wheel,
    versioned by their digest; a developer's .env, venv, caches and database are not."""
    tree = tmp_path / "mysite"
    for name, text in {"manage.py": "print('manage')\n", "mysite/__init__.py": "",
                       "mysite/settings.py": "DEBUG = False\n", "requirements.txt": "django\n",
                       ".env": "SECRET=x\n", ".venv/bin/python": "", "db.sqlite3": "",
                       "mysite/__pycache__/settings.cpython-311.pyc": ""}.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    name, version = sources.identity(tree, "mysite")
    assert (name, version) == ("mysite", f"0+{sources.digest(tree)}")
    wheel = sources.pack_tree(tree, "mysite", version, tmp_path)
    assert wheel.name == f"mysite-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(archive.namelist()) == [
            "manage.py", f"mysite-{version}.dist-info/METADATA",
            f"mysite-{version}.dist-info/RECORD", f"mysite-{version}.dist-info/WHEEL",
            "mysite/__init__.py", "mysite/settings.py"]
    (tree / "mysite/settings.py").write_text("DEBUG = True\n")
    assert sources.identity(tree, "mysite")[1] != version, "a change is a new release"
    target = tmp_path / "site-packages"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                                "--no-index", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    assert (target / "mysite/settings.py").read_text() == "DEBUG = False\n"


def test_a_requirements_file_of_exact_pins_is_the_lock(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("# pinned\nflask==3.1.3  # web\n"
                                               "gunicorn==23.0.0\n")
    assert wheelhouse.lock("shop", tmp_path, None, None, BOOKWORM) == [
        "flask==3.1.3", "gunicorn==23.0.0"], "the app's own gunicorn pin is kept"
    (tmp_path / "requirements.txt").write_text("flask==3.1.3\n")
    assert wheelhouse.lock("shop", tmp_path, None, None, BOOKWORM) == [
        "flask==3.1.3", wheelhouse.GUNICORN]


def test_an_app_without_a_lock_gets_one_resolved_once_and_recorded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheelhouse, "LOCKS_DIR", tmp_path)
    asked: list[list[str]] = []

    def resolve(wanted: list[str], target: Target) -> list[str]:
        asked.append(wanted)
        return ["httpbin==0.10.4", "flask==3.1.3"]

    monkeypatch.setattr(wheelhouse, "resolve", resolve)
    pins = wheelhouse.lock("bin", None, "httpbin==0.10.4", None, BOOKWORM)
    assert pins == ["httpbin==0.10.4", "flask==3.1.3", wheelhouse.GUNICORN]
    assert wheelhouse.lock("bin", None, "httpbin==0.10.4", None, BOOKWORM) == pins
    assert asked == [["httpbin==0.10.4"]], "the recorded lock is reused"
    recorded = (tmp_path / "bin-py3.11-x86_64.txt").read_text()
    assert "from: httpbin==0.10.4" in recorded and "flask==3.1.3\n" in recorded
    wheelhouse.lock("bin", None, "httpbin==0.10.5", None, BOOKWORM)
    assert asked[-1] == ["httpbin==0.10.5"], "a changed requirement is resolved anew"


def test_a_wheel_is_known_by_the_code_it_installs_not_its_bytes(tmp_path: Path) -> None:
    """Rebuilding the same code (new file times, a newer backend's dist-info) is the same
    release; changed code is not."""
    def wheel(name: str, code: str, generator: str) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("app/__init__.py", code)
            archive.writestr("app-1.0.dist-info/WHEEL", generator)
            archive.writestr("app-1.0.dist-info/RECORD",
                             f"app/__init__.py,sha256={sources.urlsafe_digest(code.encode())},"
                             f"{len(code)}\napp-1.0.dist-info/WHEEL,sha256={generator},1\n"
                             "app-1.0.dist-info/RECORD,,\n")
        return path

    first = sources.content_digest(wheel("a.whl", "X = 1\n", "setuptools (80)"))
    assert sources.content_digest(wheel("b.whl", "X = 1\n", "setuptools (81)")) == first
    assert sources.content_digest(wheel("c.whl", "X = 2\n", "setuptools (80)")) != first


# pip's output for a Django project with a second top-level app (setuptools' flat layout),
# as a real run printed it: the reason is well above pip's last 15 lines.
FLAT_LAYOUT = """Processing ./flatsite
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
  Getting requirements to build wheel: started
  Getting requirements to build wheel: finished with status 'error'
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
  ╰─> [14 lines of output]
      error: Multiple top-level packages discovered in a flat-layout: ['notes', 'flatsite'].

      To avoid accidental inclusion of unwanted files or directories,
      setuptools will not proceed with this build.

      If you are trying to create a single distribution with multiple packages
      on purpose, you should not rely on automatic discovery.
      Instead, consider the following options:

      1. set up custom discovery (`find` directive with `include` or `exclude`)
      2. use a `src-layout`
      3. explicitly set `py_modules` or `packages` with a list of names

      To find more details, look for "package discovery" on setuptools docs.
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: subprocess-exited-with-error

× Getting requirements to build wheel did not run successfully.
│ exit code: 1
╰─> See above for output.

note: This error originates from a subprocess, and is likely not a problem with pip."""


def test_a_failed_build_shows_the_line_that_says_why_however_long_the_output() -> None:
    shown = wheelhouse.reason_lines(FLAT_LAYOUT)
    assert shown[0].strip().startswith("error: Multiple top-level packages discovered in a"
                                       " flat-layout: ['notes', 'flatsite']")
    assert shown[-1] == FLAT_LAYOUT.splitlines()[-1], "and pip's last lines"
    assert "..." in shown and len(shown) < len(FLAT_LAYOUT.splitlines())


# uv's output for a project whose declared backend does not exist, as a real run printed it.
NO_BACKEND = """Building wheel...
Traceback (most recent call last):
  File "<string>", line 8, in <module>
ModuleNotFoundError: No module named 'no_such_backend'
error: Failed to build `/tmp/tmpx/source`
  cause: The build backend returned an error
  cause: Call to `no_such_backend.get_requires_for_build_wheel` failed (exit status: 1)"""


def test_a_backends_traceback_is_said_by_its_last_line() -> None:
    shown = wheelhouse.reason_lines(NO_BACKEND)
    assert "ModuleNotFoundError: No module named 'no_such_backend'" in shown
    assert not any("Traceback" in line or "File " in line for line in shown), shown
    assert shown[-1].endswith("failed (exit status: 1)")


def test_an_operators_error_is_said_without_a_place_in_the_code() -> None:
    """pyinfra's CLI (pyinfra_cli.exceptions.WrappedError, not imported here: importing
    pyinfra_cli monkey-patches the whole test session for gevent) puts `in <file> line <n>`
    before an error's message where the error's __traceback__ is set: an operator's error
    (a build, bad settings) has none. test_security checks pyinfra's output itself."""
    try:
        raise wheelhouse.BuildError("apps[shop]: building it failed")
    except wheelhouse.BuildError as error:
        assert error.__traceback__ is None
