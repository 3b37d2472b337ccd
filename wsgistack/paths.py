"""Where things are: in this repo on the controller, and on the hosts for each app.

The hosts' layout (AppPaths, ReleasePaths) is declared once, in the on-host tool golive,
which acts on it; the controller renders and reads the same paths from there.
"""

from __future__ import annotations

from pathlib import Path

from wsgistack.onhost.golive import ROOT, AppPaths, ReleasePaths, herder, supervisor_query

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "templates"
BUILD_DIR = REPO_ROOT / "build"
# Dependencies uv resolved for an app without a lock of its own: commit them.
LOCKS_DIR = REPO_ROOT / "locks"
ONHOST = Path(__file__).resolve().parent / "onhost"
HERDER_SOURCE = ONHOST / "gunicorn_herder.py"
GOLIVE_SOURCE = ONHOST / "golive.py"
SUPERVISOR_QUERY_SOURCE = ONHOST / "supervisor_query.py"
HERDER = herder(ROOT)
GOLIVE = HERDER.with_name("golive")
SUPERVISOR_QUERY = supervisor_query(ROOT)

__all__ = ["BUILD_DIR", "GOLIVE", "GOLIVE_SOURCE", "HERDER", "HERDER_SOURCE", "LOCKS_DIR",
           "REPO_ROOT", "SUPERVISOR_QUERY", "SUPERVISOR_QUERY_SOURCE", "TEMPLATES", "AppPaths",
           "ReleasePaths"]
