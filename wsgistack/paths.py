"""Where things are in this repo, on the controller. (The hosts' layout is golive's own:
wsgistack.onhost.golive.layout; this project's programs on the hosts: wsgistack.engine.programs.)
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "templates"
BUILD_DIR = REPO_ROOT / "build"
# Dependencies uv resolved for an app without a lock of its own: commit them.
LOCKS_DIR = REPO_ROOT / "locks"
