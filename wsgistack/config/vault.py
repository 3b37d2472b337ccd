"""A stack's secrets, encrypted in the repo: `secrets/<group>.toml`, safe to commit, readable
only with the stack's key, which stays outside git (Pulumi's passphrase provider; Ansible's
Vault): $<GROUP>_SECRETS_KEY, else <secrets_dir>/<group>/secrets_key (made once for a group
that may generate secrets; never for production).

Each value is AES-256-GCM under a key derived from that passphrase with scrypt (the salt in
the file), bound to its name (a value moved to another name does not decrypt). A known
value encrypted the same way tells a wrong key from a damaged file, in one line naming the
stack. wsgistack.config.secrets reads a secret from its variable first, then from here,
then from secrets_dir.

    python -m wsgistack.config.vault set production flasktodo SECRET_KEY  # from stdin or a prompt
    python -m wsgistack.config.vault set production BACKUP_PASSPHRASE     # the stack's own
    python -m wsgistack.config.vault list production                      # names, never values
    python -m wsgistack.config.vault rm production flasktodo SECRET_KEY
    python -m wsgistack.config.vault rekey production                     # new key: stdin or prompt

The file and the key file are the group data's (`secrets_file`, `secrets_dir`); `--data
KEY=VALUE` overrides them (as text) as pyinfra's does.
"""

from __future__ import annotations

import argparse
import base64
import functools
import getpass
import hashlib
import json
import os
import secrets
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wsgistack.paths import REPO_ROOT

if TYPE_CHECKING:
    from wsgistack.config.secrets import StackKey

SECRETS_DIR = REPO_ROOT / "secrets"
KEY_NAME = "SECRETS_KEY"  # the stack's: $<GROUP>_SECRETS_KEY, <secrets_dir>/<group>/secrets_key
# scrypt's cost: about 0.1 s and 32 MB per opening, once per run
SCRYPT = {"n": 2 ** 15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
CHECK = "wsgistack"  # encrypted under the key: a wrong key is told apart from a damaged value


class VaultError(Exception):
    """The file cannot be read or written as asked; the message names the stack."""


def vault_path(group: str, directory: Path = SECRETS_DIR) -> Path:
    return directory / f"{group}.toml"


def entry_name(app: str | None, name: str) -> str:
    """How the file names a secret: "flasktodo.SECRET_KEY", or "BACKUP_PASSPHRASE" for the
    stack's own."""
    return f"{app}.{name}" if app else name


@dataclass
class Vault:
    """One stack's file: its salt, and each secret's sealed value by entry name."""

    group: str
    path: Path
    salt: bytes
    check: str
    sealed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, group: str, path: Path) -> Vault | None:
        """The file as it is; None where it does not exist."""
        try:
            data = tomllib.loads(path.read_text())
            return cls(group, path, base64.b64decode(data["key"]["salt"]),
                       data["key"]["check"], dict(data.get("secrets", {})))
        except FileNotFoundError:
            return None
        except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as error:
            raise VaultError(f"{group}: {path} is not a secrets file of ours: {error}") from None

    @classmethod
    def new(cls, group: str, path: Path, passphrase: str) -> Vault:
        salt = secrets.token_bytes(16)
        return cls(group, path, salt, seal(derive(passphrase, salt), CHECK, CHECK))

    def opened(self, passphrase: str) -> bytes:
        """The file's key, checked: a wrong passphrase is one line naming the stack."""
        key = derive(passphrase, self.salt)
        try:
            unseal(key, CHECK, self.check)
        except VaultError:
            raise VaultError(f"{self.group}: the key does not open {self.path}: is"
                             f" ${self.group.upper()}_{KEY_NAME} (or"
                             f" {self.group}/secrets_key) the one it was made with?") from None
        return key

    def values(self, passphrase: str) -> dict[str, str]:
        key = self.opened(passphrase)
        try:
            return {name: unseal(key, name, value) for name, value in self.sealed.items()}
        except VaultError as error:
            raise VaultError(f"{self.group}: {self.path}: {error}") from None

    def save(self) -> None:
        """Written whole to a new file, then renamed over the old: never half written."""
        lines = [f"# {self.path.name}: {self.group}'s secrets, encrypted (AES-256-GCM, the key",
                 f"# from scrypt of ${self.group.upper()}_{KEY_NAME} or <secrets_dir>/"
                 f"{self.group}/secrets_key).",
                 "# Safe to commit: without the key nothing here can be read. Change it with",
                 "# `python -m wsgistack.config.vault` (set, list, rm, rekey), never by hand.",
                 "", "[key]", 'kdf = "scrypt"', f'salt = "{base64.b64encode(self.salt).decode()}"',
                 f'check = "{self.check}"', "", "[secrets]",
                 *(f'"{name}" = "{value}"' for name, value in sorted(self.sealed.items()))]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.new")
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, self.path)


@functools.cache  # scrypt once per key and file per run, however many hosts ask
def derive(passphrase: str, salt: bytes) -> bytes:
    return hashlib.scrypt(passphrase.encode(), salt=salt, **SCRYPT)


def seal(key: bytes, name: str, value: str) -> str:
    nonce = secrets.token_bytes(12)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, value.encode(), name.encode())
                            ).decode()


def unseal(key: bytes, name: str, sealed: str) -> str:
    try:
        raw = base64.b64decode(sealed, validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], name.encode()).decode()
    except (InvalidTag, ValueError) as error:
        raise VaultError(f"{name} does not decrypt (damaged, or moved from another name)"
                         ) from error


@functools.cache  # read once per run and stack: every host of a group asks
def stack_secrets(group: str, path: Path, passphrase: str, mtime: float) -> dict[str, str]:
    vault = Vault.load(group, path)
    return vault.values(passphrase) if vault else {}


# --- the command ------------------------------------------------------------------------------

def read_value(prompt: str) -> str:
    """A value from the terminal (not echoed, asked twice) or from stdin: never argv; one a
    deploy would refuse as too weak is refused here already."""
    from wsgistack.config.secrets import weakness  # (which imports this module)

    if sys.stdin.isatty():
        value = getpass.getpass(f"{prompt}: ")
        if getpass.getpass(f"{prompt} again: ") != value:
            raise VaultError("the two entries differ: nothing was changed")
    else:
        value = sys.stdin.read()
    value = value.strip()
    reason = weakness(value)
    if reason is not None:
        raise VaultError(f"{prompt}: the value {reason}: nothing was changed (e.g. `python3 -c"
                         " 'import secrets; print(secrets.token_urlsafe(48))'`)")
    return value


def main(argv: list[str] | None = None) -> int:
    # the group's settings, and its key read as any secret is (after this module is loaded)
    from wsgistack.config.secrets import stack_key
    from wsgistack.config.settings import SettingsError

    parser = argparse.ArgumentParser(prog="python -m wsgistack.config.vault",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("set", "list", "rm", "rekey"))
    parser.add_argument("group")
    parser.add_argument("names", nargs="*", metavar="[APP] NAME")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="a group data key, as pyinfra's --data (e.g. secrets_dir=...)")
    args = parser.parse_args(argv)
    named = args.action in ("set", "rm")
    if named != (len(args.names) in (1, 2)):
        parser.error(f"{args.action} takes {'[APP] NAME' if named else 'no name'}")
    try:
        settings = VaultSettings.of(args.group, args.data)
        key = stack_key(settings, make=True)
        print(change(settings.group, settings.secrets_file, key, args.action,
                     entry_name(*([None, *args.names])[-2:]) if args.names else ""))
        return 0
    except (VaultError, SettingsError) as error:
        print(f"vault: {error}", file=sys.stderr)
        return 2


@dataclass(frozen=True)
class VaultSettings:
    """The group data keys the command reads (wsgistack.config.secrets.Stack): the rest of a
    group's settings (its TLS pair...) need not be in place to change its secrets."""

    group: str
    secrets_dir: Path
    secrets_file: Path
    generate_secrets: bool

    @classmethod
    def of(cls, group: str, overrides: list[str]) -> VaultSettings:
        from wsgistack.config.schema import GROUP_KEY, group_files  # (settings imports us)

        files = group_files()
        if group not in files:
            raise VaultError(f"{group}: no such group (its data: group_data/{group}.py)")
        data = {**files["all"], **files[group], **dict(map(parsed, overrides))}
        value = {name: data.get(name, GROUP_KEY[name].default)
                 for name in ("secrets_dir", "secrets_file", "generate_secrets")}
        return cls(group, Path(value["secrets_dir"]).expanduser(),
                   Path(value["secrets_file"]).expanduser() if value["secrets_file"]
                   else vault_path(group), value["generate_secrets"] is True)


def parsed(override: str) -> tuple[str, object]:
    """KEY=VALUE as pyinfra's --data reads it: JSON where it is (true, 3, [...]), else text."""
    key, _, text = override.partition("=")
    try:
        return key, json.loads(text)
    except ValueError:
        return key, text


def change(group: str, path: Path, key: StackKey, action: str, name: str) -> str:
    """Carry out one action on the stack's file; what it did (names, never values)."""
    vault = Vault.load(group, path) or Vault.new(group, path, key.value)
    opened = vault.opened(key.value)
    if action == "list":
        return "\n".join(sorted(vault.sealed)) or f"{group}: {path} holds no secret yet"
    if action == "rekey":
        new = read_value(f"{group}'s new key")
        values = vault.values(key.value)
        fresh = Vault.new(group, path, new)
        fresh_key = fresh.opened(new)
        fresh.sealed = {each: seal(fresh_key, each, value) for each, value in values.items()}
        fresh.save()
        return f"{group}: {path}: " + key.rekeyed(new)
    if action == "set":
        vault.sealed[name] = seal(opened, name, read_value(f"{group}'s {name}"))
    elif vault.sealed.pop(name, None) is None:
        raise VaultError(f"{group}: {path} holds no {name}")
    vault.save()
    return f"{group}: {name} {'set' if action == 'set' else 'removed'} in {path}"


if __name__ == "__main__":
    sys.exit(main())
