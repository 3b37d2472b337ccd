"""Where things are in this repo, on the controller. (The hosts' layout is golive's own:
wsgistack.onhost.golive.layout; this project's programs on the hosts: wsgistack.engine.programs.)
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "templates"
# What the controller builds (wheels, wheelhouses, golive's zipapp): build/, or another dir
# (tests running side by side give each runner its own).
BUILD_DIR = Path(os.environ.get("WSGISTACK_BUILD_DIR") or REPO_ROOT / "build")
# Dependencies uv resolved for an app without a lock of its own: commit them.
LOCKS_DIR = REPO_ROOT / "locks"
