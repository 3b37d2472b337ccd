"""App secrets, read on the controller: never in git, never invented for production, never
weak.

An app's secrets are the variables its entry names in `secret_env` (e.g. FlaskTODO's
SECRET_KEY): in its env file, and given to its config template as `secrets`. Each is read
from $<GROUP>_<APP>_<NAME> (e.g. PRODUCTION_FLASKTODO_SECRET_KEY), else from
<secrets_dir>/<group>/<app>.<name> (e.g. flasktodo.secret_key); where generate_secrets is
on, a missing one is made once there. Between the two, the stack's encrypted file in the
repo (wsgistack.config.vault: `secrets/<group>.toml`, "flasktodo.SECRET_KEY"), opened with
$<GROUP>_SECRETS_KEY or <secrets_dir>/<group>/secrets_key. An environment's own secrets
(its backups' key) are read the same way without the app: $PRODUCTION_BACKUP_PASSPHRASE,
production/backup_passphrase, "BACKUP_PASSPHRASE" in the encrypted file.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wsgistack.config.settings import AppSettings, Settings, SettingsError
from wsgistack.config.vault import KEY_NAME, VaultError, entry_name, stack_secrets

# What a secret must have: long enough that guessing it is hopeless, and not one character
# repeated (a placeholder). A generated one has 64 characters of 64 possible.
MIN_LENGTH = 32
MIN_DISTINCT = 10


class Stack(Protocol):
    """Where a stack's secrets are kept: what Settings has, and all the vault command
    reads of a group's data."""

    group: str
    secrets_dir: Path
    secrets_file: Path
    generate_secrets: bool


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
    def environment(cls, settings: Stack, what: str) -> Owner:
        return cls(None, f"{settings.group}'s {what}")


def secret_variable(settings: Stack, owner: Owner, name: str) -> str:
    """e.g. PRODUCTION_FLASKTODO_SECRET_KEY, or PRODUCTION_BACKUP_PASSPHRASE for the
    environment's own: per group, so one group's secret never reaches another's hosts."""
    return "_".join(filter(None, (settings.group, owner.name, name))).upper().replace("-", "_")


def secret_file(settings: Stack, owner: Owner, name: str) -> Path:
    """e.g. <secrets_dir>/production/flasktodo.secret_key, or .../production/backup_passphrase"""
    return settings.secrets_dir / settings.group / ".".join(
        filter(None, (owner.name, name.lower())))


# Hosts of one group are prepared in parallel greenlets: only one may generate a secret.
GENERATE_LOCK = threading.Lock()


def provided_secret(settings: Settings, owner: Owner, name: str,
                    environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """(the value, where it came from) from the variable, the stack's encrypted file or the
    secrets_dir file, in that order; None if none has one."""
    environ = dict(os.environ if environ is None else environ)
    found = variable_secret(settings, owner, name, environ)
    if found is not None:
        return found
    sealed = vault_secrets(settings, environ).get(entry_name(owner.name, name), "").strip()
    if sealed:
        return sealed, str(settings.secrets_file)
    return filed_secret(settings, owner, name)


def variable_secret(settings: Stack, owner: Owner, name: str, environ: dict[str, str]
                    ) -> tuple[str, str] | None:
    variable = secret_variable(settings, owner, name)
    value = environ.get(variable, "").strip()
    return (value, f"${variable}") if value else None


def filed_secret(settings: Stack, owner: Owner, name: str) -> tuple[str, str] | None:
    path = secret_file(settings, owner, name)
    if path.exists() and path.read_text().strip():
        return path.read_text().strip(), str(path)
    return None


@dataclass(frozen=True)
class StackKey:
    """The key a stack's encrypted file opens with, and where it is kept."""

    value: str
    source: str  # $<GROUP>_SECRETS_KEY, or the file's path
    file: Path

    def rekeyed(self, new: str) -> str:
        """What the operator must know once the file is encrypted with `new`: the key file
        holds it now, or the variable must."""
        if self.source == str(self.file):
            write_private(self.file, new)
            return f"re-keyed: the new key is in {self.file}"
        return f"re-keyed: set {self.source[1:]} to the new key before the next run"


def stack_key(settings: Stack, environ: dict[str, str] | None = None,
              make: bool = False) -> StackKey:
    """The stack's key: its variable, else its file (made once where `make` and secrets may
    be generated, never for production). Missing: one line naming the stack."""
    owner = Owner.environment(settings, "encrypted secrets")
    environ = dict(os.environ if environ is None else environ)
    variable, path = secret_variable(settings, owner, KEY_NAME), secret_file(settings, owner,
                                                                              KEY_NAME)
    found = (variable_secret(settings, owner, KEY_NAME, environ)
             or filed_secret(settings, owner, KEY_NAME))
    if found is None and make and settings.generate_secrets:
        found = generate(path), str(path)
    if found is None:
        raise SettingsError([f"{settings.group}: no key for {settings.secrets_file}: set"
                             f" {variable} or write it to {path}"])
    reason = weakness(found[0])
    if reason is not None:
        raise SettingsError([f"{settings.group}: the key in {found[1]} {reason}"])
    return StackKey(*found, path)


def vault_secrets(settings: Stack, environ: dict[str, str]) -> dict[str, str]:
    """The stack's encrypted secrets, opened ({} where it has no file); a missing or wrong
    key is one line naming the stack."""
    path = settings.secrets_file
    if not path.exists():
        return {}
    key = stack_key(settings, environ)
    try:
        return stack_secrets(settings.group, path, key.value, path.stat().st_mtime)
    except VaultError as error:
        raise SettingsError([str(error)]) from None


def vault_problems(settings: Stack, environ: dict[str, str] | None = None) -> list[str]:
    """Why the stack's encrypted file does not open (its key missing, weak or wrong), before
    connecting, whether or not any secret is read from it."""
    try:
        vault_secrets(settings, dict(os.environ if environ is None else environ))
    except SettingsError as error:
        return error.problems
    return []


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
    value = secrets.token_urlsafe(48)
    write_private(path, value, exclusive=True)
    return value


def write_private(path: Path, value: str, exclusive: bool = False) -> None:
    """`value` in a file only its owner reads (its dir too): made anew where `exclusive`,
    else replaced whole (by a file written beside it; one a crash left there is rewritten)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path if exclusive else path.with_name(f".{path.name}.new")
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                         | (os.O_EXCL if exclusive else os.O_TRUNC), 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    if not exclusive:
        os.replace(target, path)
