"""App secrets, read on the controller: never in git, never invented for production, never
weak.

An app's secrets are the variables its entry names in `secret_env` (e.g. FlaskTODO's
SECRET_KEY): in its env file, and given to its config template as `secrets`. Each is read
from $<GROUP>_<APP>_<NAME> (e.g. PRODUCTION_FLASKTODO_SECRET_KEY), else from
<secrets_dir>/<group>/<app>.<name> (e.g. flasktodo.secret_key); where generate_secrets is
on, a missing one is made once there. An environment's own secrets (its backups' key) are
read the same way without the app: $PRODUCTION_BACKUP_PASSPHRASE, production/backup_passphrase.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from wsgistack.config.settings import AppSettings, Settings, SettingsError

# What a secret must have: long enough that guessing it is hopeless, and not one character
# repeated (a placeholder). A generated one has 64 characters of 64 possible.
MIN_LENGTH = 32
MIN_DISTINCT = 10


@dataclass(frozen=True)
class Owner:
    """Whose secret it is: an app's (its name), or the environment's own (None), e.g. the
    key its backups are encrypted with; and how a problem names it."""

    name: str | None
    where: str

    @classmethod
    def app(cls, settings: Settings, app: AppSettings) -> Owner:
        return cls(app.name, f"group_data ({settings.group}): apps[{app.name}]")

    @classmethod
    def environment(cls, settings: Settings, what: str) -> Owner:
        return cls(None, f"{settings.group}'s {what}")


def secret_variable(settings: Settings, owner: Owner, name: str) -> str:
    """e.g. PRODUCTION_FLASKTODO_SECRET_KEY, or PRODUCTION_BACKUP_PASSPHRASE for the
    environment's own: per group, so one group's secret never reaches another's hosts."""
    return "_".join(filter(None, (settings.group, owner.name, name))).upper().replace("-", "_")


def secret_file(settings: Settings, owner: Owner, name: str) -> Path:
    """e.g. <secrets_dir>/production/flasktodo.secret_key, or .../production/backup_passphrase"""
    return settings.secrets_dir / settings.group / ".".join(
        filter(None, (owner.name, name.lower())))


# Hosts of one group are prepared in parallel greenlets: only one may generate a secret.
GENERATE_LOCK = threading.Lock()


def provided_secret(settings: Settings, owner: Owner, name: str,
                    environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(the value, where it came from) from the variable or the file; None if neither has
    one."""
    environ = dict(os.environ if environ is None else environ)
    variable = secret_variable(settings, owner, name)
    if environ.get(variable, "").strip():
        return environ[variable].strip(), f"${variable}"
    path = secret_file(settings, owner, name)
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


def secret_problems(settings: Settings, owner: Owner, names: tuple[str, ...],
                    environ: dict[str, str] | None = None) -> list[str]:
    """Problems with the owner's provided secrets: weak, or missing where none may be made;
    checked before connecting, one line each, naming the owner, the secret and where it is
    read, never its value."""
    problems = []
    for name in names:
        what = f"secret {name}"
        provided = provided_secret(settings, owner, name, environ)
        if provided is None:
            if not settings.generate_secrets:
                problems.append(f"{owner.where}: no {what}: set"
                                f" {secret_variable(settings, owner, name)} or write it to"
                                f" {secret_file(settings, owner, name)}")
            continue
        value, source = provided
        reason = weakness(value)
        if reason is not None:
            problems.append(f"{owner.where}: the {what} in {source} {reason}: use e.g."
                            " `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return problems


def secrets_of(settings: Settings, owner: Owner, names: tuple[str, ...],
               environ: dict[str, str] | None = None) -> dict[str, str]:
    """Every secret of the owner by name; a missing one made once where allowed. A weak or
    (in production) missing one is refused."""
    with GENERATE_LOCK:
        problems = secret_problems(settings, owner, names, environ)
        if problems:
            raise SettingsError(problems)
        values = {}
        for name in names:
            provided = provided_secret(settings, owner, name, environ)
            values[name] = provided[0] if provided else generate(
                secret_file(settings, owner, name))
        return values


def check_secrets(settings: Settings, app: AppSettings,
                  environ: dict[str, str] | None = None,
                  names: tuple[str, ...] | None = None) -> list[str]:
    """Problems with the app's provided secrets (its secret_env, or `names`)."""
    return secret_problems(settings, Owner.app(settings, app),
                           app.secret_env if names is None else names, environ)


def app_secrets(settings: Settings, app: AppSettings,
                environ: dict[str, str] | None = None,
                names: tuple[str, ...] | None = None) -> dict[str, str]:
    """Every secret of the app (its secret_env, or `names`) by name."""
    return secrets_of(settings, Owner.app(settings, app),
                      app.secret_env if names is None else names, environ)


def generate(path: Path) -> str:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value
