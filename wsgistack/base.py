"""The host's shared services: nginx, supervisor and python3-venv from Debian, and
gunicorn-herder, which every app's supervisor program runs gunicorn through."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, systemd

from wsgistack.paths import HERDER, HERDER_SOURCE

# logrotate: nginx's per-site logs are rotated by its rule in /etc/logrotate.d/nginx.
PACKAGES = ["nginx", "supervisor", "python3-venv", "logrotate"]


@deploy("Base packages and services")
def install_base() -> None:
    installed = host.get_fact(DebPackages)
    missing = [package for package in PACKAGES if package not in installed]
    apt.packages(
        name="Install nginx, supervisor, python3-venv and logrotate",
        packages=PACKAGES,
        # Refresh the package lists only when something must be installed, so a converged
        # host reports no change however old its lists are.
        update=bool(missing),
        cache_time=3600,
        no_recommends=True,
    )
    for service in ("nginx", "supervisor"):
        systemd.service(
            name=f"Keep {service} running and enabled at boot",
            service=service,
            running=True,
            enabled=True,
        )
    files.put(
        name=f"Install gunicorn-herder ({HERDER})",
        src=str(HERDER_SOURCE), dest=str(HERDER), user="root", group="root", mode="755",
        create_remote_dir=True,
    )
