"""App secrets, read on the controller: never in git, never invented for production, never
weak.

An app's secrets are the variables its entry names in `secret_env` (e.g. FlaskTODO's
SECRET_KEY): in its env file, and given to its config template as `secrets`. Each is read
from $<GROUP>_<APP>_<NAME> (e.g. PRODUCTION_FLASKTODO_SECRET_KEY), else from
<secrets_dir>/<group>/<app>.<name> (e.g. flasktodo.secret_key); where generate_secrets is
on, a missing one is made once there.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from wsgistack.config.settings import AppSettings, Settings, SettingsError

# What a secret must have: long enough that guessing it is hopeless, and not one character
# repeated (a placeholder). A generated one has 64 characters of 64 possible.
MIN_LENGTH = 32
MIN_DISTINCT = 10


def secret_variable(settings: Settings, app: AppSettings, name: str) -> str:
    """e.g. PRODUCTION_FLASKTODO_SECRET_KEY: per group, so one group's secret never reaches
    another's hosts."""
    return f"{settings.group}_{app.name}_{name}".upper().replace("-", "_")


def secret_file(settings: Settings, app: AppSettings, name: str) -> Path:
    return settings.secrets_dir / settings.group / f"{app.name}.{name.lower()}"


# Hosts of one group are prepared in parallel greenlets: only one may generate a secret.
GENERATE_LOCK = threading.Lock()


def provided_secret(settings: Settings, app: AppSettings, name: str,
                    environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(the value, where it came from) from the variable or the file; None if neither has
    one."""
    environ = dict(os.environ if environ is None else environ)
    variable = secret_variable(settings, app, name)
    if environ.get(variable, "").strip():
        return environ[variable].strip(), f"${variable}"
    path = secret_file(settings, app, name)
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), str(path)
    return None


def weakness(value: str) -> str | None:
    """Why `value` is too weak to be a secret (or not plain ASCII, which a PostgreSQL
    password must be, and any secret may as well be), or None."""
    if not (value.isascii() and value.isprintable()):
        return "has characters other than printable ASCII"
    if len(value) < MIN_LENGTH:
        return f"is {len(value)} characters long, fewer than {MIN_LENGTH}"
    if len(set(value)) < MIN_DISTINCT:
        return f"has {len(set(value))} distinct characters, fewer than {MIN_DISTINCT}"
    return None


def check_secrets(settings: Settings, app: AppSettings,
                  environ: dict[str, str] | None = None,
                  names: tuple[str, ...] | None = None) -> list[str]:
    """Problems with the app's provided secrets (its secret_env, or `names`): weak, or
    missing where none may be made; checked before connecting, one line each, naming the
    app, the secret and where it is read, never its value."""
    problems = []
    for name in app.secret_env if names is None else names:
        what = f"secret {name}"
        where = f"group_data ({settings.group}): apps[{app.name}]"
        provided = provided_secret(settings, app, name, environ)
        if provided is None:
            if not settings.generate_secrets:
                problems.append(f"{where}: no {what}: set {secret_variable(settings, app, name)}"
                                f" or write it to {secret_file(settings, app, name)}")
            continue
        value, source = provided
        reason = weakness(value)
        if reason is not None:
            problems.append(f"{where}: the {what} in {source} {reason}: use e.g."
                            " `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return problems


def app_secrets(settings: Settings, app: AppSettings,
                environ: dict[str, str] | None = None,
                names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Every secret of the app (its secret_env, or `names`) by name; a missing one made
    once where allowed. A weak or (in production) missing one is refused."""
    names = app.secret_env if names is None else names
    with GENERATE_LOCK:
        problems = check_secrets(settings, app, environ, names)
        if problems:
            raise SettingsError(problems)
        values = {}
        for name in names:
            provided = provided_secret(settings, app, name, environ)
            values[name] = provided[0] if provided else generate(
                secret_file(settings, app, name))
        return values


def generate(path: Path) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value
