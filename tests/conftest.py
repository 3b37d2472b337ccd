"""Every test run: where each pytest-xdist worker builds (its own build dir, so runners side
by side never share a wheelhouse under construction). Set before wsgistack is imported."""

from __future__ import annotations

import os
from pathlib import Path

WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if WORKER and "WSGISTACK_BUILD_DIR" not in os.environ:
    os.environ["WSGISTACK_BUILD_DIR"] = str(Path(__file__).resolve().parents[1] / "build"
                                            / f"tests-{WORKER}")
