"""The wheelhouse cache, offline: forgetting one source's builds leaves every other's."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgistack import wheelhouse


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
