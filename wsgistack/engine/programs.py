"""This project's programs on the hosts: where each lands, and its source here. golive is
a package on the controller and one file on a host: a zipapp built here, byte for byte the
same for the same source, so that a converged host's copy stays in step."""

from __future__ import annotations

import functools
import importlib.metadata
import io
import os
import zipfile
from pathlib import Path

from wsgistack.onhost.golive.layout import ROOT, herder, supervisor_query, uv_program
from wsgistack.paths import BUILD_DIR

ONHOST = Path(__file__).resolve().parents[1] / "onhost"
GOLIVE_PACKAGE = ONHOST / "golive"
HERDER_SOURCE = ONHOST / "gunicorn_herder.py"
SUPERVISOR_QUERY_SOURCE = ONHOST / "supervisor_query.py"
HERDER = herder(ROOT)
GOLIVE = HERDER.with_name("golive")
SUPERVISOR_QUERY = supervisor_query(ROOT)
# uv, the controller's own version (built for each host: wsgistack.build.wheelhouse)
UV_VERSION = importlib.metadata.version("uv")
UV_PROGRAM = uv_program(ROOT, UV_VERSION)
# Runs the package from the zipapp (python3 puts the archive first on sys.path, -I or not).
ZIPAPP_MAIN = b"import sys\nfrom golive.cli import main\nsys.exit(main())\n"


@functools.cache
def golive_zipapp() -> Path:
    """golive as one file, built from its package (build/golive.pyz): a fixed time and
    order, stored, so the same source makes the same bytes."""
    target = BUILD_DIR / "golive.pyz"
    content = zipapp_bytes(GOLIVE_PACKAGE)
    if not target.exists() or target.read_bytes() != content:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}")
        temporary.write_bytes(content)
        temporary.replace(target)
    return target


def zipapp_bytes(package: Path) -> bytes:
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w", zipfile.ZIP_STORED) as archive:
        for name, content in [("__main__.py", ZIPAPP_MAIN),
                              *((f"golive/{source.name}", source.read_bytes())
                                for source in sorted(package.glob("*.py")))]:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, content)
    return b"#!/usr/bin/python3 -I\n" + archive_bytes.getvalue()
