"""The wheelhouse cache, offline: forgetting one source's builds leaves every other's."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from wsgistack import wheelhouse
from wsgistack.settings import AppSettings


def test_forget_removes_only_the_builds_of_that_source(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheelhouse, "BUILD_DIR", tmp_path)
    cache = tmp_path / "wheelhouse"
    cache.mkdir()
    digest = "0123456789abcdef"
    for name in ("flasktodo", "flasktodo-2.0.1", "flasktodo-2.0.10"):
        (cache / f"{name}-{digest}").mkdir()
        (cache / f"{name}-{digest}.tar").write_bytes(b"")
    wheelhouse.forget(Path("/sources/flasktodo-2.0.1"))
    wheelhouse.forget(Path("apps/flasktodo"))
    assert sorted(path.name for path in cache.iterdir()) == [
        f"flasktodo-2.0.10-{digest}", f"flasktodo-2.0.10-{digest}.tar"]


def test_each_static_dir_must_be_in_the_releases_wheels(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked on the controller, before any host is touched: one line naming the app."""
    with zipfile.ZipFile(tmp_path / "app-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("app/static/css/site.css", "body {}")
        wheel.writestr("app/__init__.py", "")
    built = wheelhouse.Wheelhouse(tmp_path, "digest", "app-1.0-py3-none-any.whl", "pip.whl")
    monkeypatch.setattr(wheelhouse, "build", lambda *_args: built)
    assert {"app", "app/static", "app/static/css"} <= wheelhouse.wheel_folders(tmp_path)

    def app(static: dict) -> AppSettings:
        return AppSettings("shop", tmp_path, "app", "1.0", "app:app", "CONFIG", "/shop", 8000,
                           1, static=tuple(static.items()))

    assert wheelhouse.build_app(app({"/static/": "app/static"}), "3.11", "x86_64") is built
    with pytest.raises(wheelhouse.BuildError) as error:
        wheelhouse.build_app(app({"/static/": "app/static", "/media/": "app/media"}), "3.11",
                             "x86_64")
    assert str(error.value) == ("apps[shop].static: /media/ -> app/media: no such dir in the"
                                " release's wheels; nothing was deployed")
