"""App secrets, read on the controller: never in git, never invented for production."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from wsgistack.settings import AppSettings, Settings, SettingsError


def secret_key_variable(settings: Settings, app: AppSettings) -> str:
    """e.g. PRODUCTION_FLASKTODO_SECRET_KEY: per group, so one group's key never reaches
    another's hosts."""
    return f"{settings.group}_{app.name}_SECRET_KEY".upper().replace("-", "_")


def secret_key_file(settings: Settings, app: AppSettings) -> Path:
    return settings.secrets_dir / settings.group / f"{app.name}.secret_key"


# Hosts of one group are prepared in parallel greenlets: only one may generate the key.
GENERATE_LOCK = threading.Lock()


def secret_key(settings: Settings, app: AppSettings, environ: dict[str, str] | None = None) -> str:
    """$<GROUP>_<APP>_SECRET_KEY, else <secrets_dir>/<group>/<app>.secret_key, else (if allowed) a
    new key written to that file and kept for the next runs."""
    environ = dict(os.environ if environ is None else environ)
    variable = secret_key_variable(settings, app)
    if environ.get(variable):
        return environ[variable]
    path = secret_key_file(settings, app)
    with GENERATE_LOCK:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if not settings.generate_secrets:
            raise SettingsError([
                f"group_data ({settings.group}): apps[{app.name}]: no secret key: set"
                f" {variable} or write it to {path}"
            ])
        return generate(path)


def generate(path: Path) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key
