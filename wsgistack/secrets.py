"""App secrets, read on the controller: never in git, never invented for production, never
weak."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from wsgistack.settings import AppSettings, Settings, SettingsError

# What a secret key must have: long enough that guessing it is hopeless, and not one
# character repeated (a placeholder). A generated key has 64 of 64 possible characters.
MIN_LENGTH = 32
MIN_DISTINCT = 10


def secret_key_variable(settings: Settings, app: AppSettings) -> str:
    """e.g. PRODUCTION_FLASKTODO_SECRET_KEY: per group, so one group's key never reaches
    another's hosts."""
    return f"{settings.group}_{app.name}_SECRET_KEY".upper().replace("-", "_")


def secret_key_file(settings: Settings, app: AppSettings) -> Path:
    return settings.secrets_dir / settings.group / f"{app.name}.secret_key"


# Hosts of one group are prepared in parallel greenlets: only one may generate the key.
GENERATE_LOCK = threading.Lock()


def provided_secret_key(settings: Settings, app: AppSettings,
                        environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(the key, where it came from) from $<GROUP>_<APP>_SECRET_KEY or
    <secrets_dir>/<group>/<app>.secret_key; None if neither has one."""
    environ = dict(os.environ if environ is None else environ)
    variable = secret_key_variable(settings, app)
    if environ.get(variable, "").strip():
        return environ[variable].strip(), f"${variable}"
    path = secret_key_file(settings, app)
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), str(path)
    return None


def weakness(key: str) -> str | None:
    """Why `key` is too weak to sign sessions with, or None."""
    if len(key) < MIN_LENGTH:
        return f"is {len(key)} characters long, fewer than {MIN_LENGTH}"
    if len(set(key)) < MIN_DISTINCT:
        return f"has {len(set(key))} distinct characters, fewer than {MIN_DISTINCT}"
    return None


def check_secret_key(settings: Settings, app: AppSettings,
                     environ: dict[str, str] | None = None) -> list[str]:
    """Problems with the app's provided key (weak; or missing where none may be made),
    checked before connecting: one line each, naming the app and where the key is read."""
    where = f"group_data ({settings.group}): apps[{app.name}]"
    provided = provided_secret_key(settings, app, environ)
    if provided is None:
        if settings.generate_secrets:
            return []
        return [f"{where}: no secret key: set {secret_key_variable(settings, app)} or write it"
                f" to {secret_key_file(settings, app)}"]
    key, source = provided
    reason = weakness(key)
    return [] if reason is None else [
        f"{where}: the secret key in {source} {reason}: use e.g."
        " `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"]


def secret_key(settings: Settings, app: AppSettings, environ: dict[str, str] | None = None) -> str:
    """$<GROUP>_<APP>_SECRET_KEY, else <secrets_dir>/<group>/<app>.secret_key, else (if allowed) a
    new key written to that file and kept for the next runs. A weak key is refused."""
    with GENERATE_LOCK:
        problems = check_secret_key(settings, app, environ)
        if problems:
            raise SettingsError(problems)
        provided = provided_secret_key(settings, app, environ)
        return provided[0] if provided else generate(secret_key_file(settings, app))


def generate(path: Path) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key
