"""A stack's encrypted secrets, offline: set, listed by name, removed and re-keyed with the
command, values from stdin (never argv); the file holds no plaintext; a wrong or missing
key is one line naming the stack; a secret is read from the variable, then the file, then
secrets_dir."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.unit.test_settings import group_data
from wsgistack.config import vault
from wsgistack.config.secrets import Owner, provided_secret, vault_problems
from wsgistack.config.settings import Settings, SettingsError, load_settings

VALUE = "a-secret-value-for-the-vault-0123456789-abcdefghij"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command's --data: the file and the key file in scratch dirs; no key variable."""
    for group in ("STAGING", "PRODUCTION"):
        monkeypatch.delenv(f"{group}_SECRETS_KEY", raising=False)
        monkeypatch.delenv(f"{group}_FLASKTODO_SECRET_KEY", raising=False)
    return [f"secrets_dir={tmp_path / 'secrets'}", f"secrets_file={tmp_path / 'repo.toml'}"]


def command(monkeypatch: pytest.MonkeyPatch, data: list[str], *argv: str, stdin: str = ""
            ) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return vault.main([*argv, *(f"--data={each}" for each in data)])


def settings_of(group: str, data: list[str]) -> Settings:
    return load_settings({**group_data(group), **dict(each.split("=", 1) for each in data)},
                         group)


def test_a_secret_set_with_the_command_is_read_from_the_file_and_never_held_in_clear(
        data: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command(monkeypatch, data, "set", "staging", "flasktodo", "SECRET_KEY",
                   stdin=VALUE + "\n") == 0
    settings = settings_of("staging", data)
    assert VALUE not in settings.secrets_file.read_text(), "safe to commit"
    assert (settings.secrets_dir / "staging/secrets_key").stat().st_mode & 0o777 == 0o600, \
        "staging's key made once, outside the repo"
    owner = Owner.app(settings, settings.apps[0])
    assert provided_secret(settings, owner, "SECRET_KEY", {}) == (
        VALUE, str(settings.secrets_file))
    assert provided_secret(settings, owner, "SECRET_KEY", {
        "STAGING_FLASKTODO_SECRET_KEY": "from-the-variable-0123456789-abcdefghijklmnop"})[1] == \
        "$STAGING_FLASKTODO_SECRET_KEY", "the variable first"
    capsys.readouterr()
    assert command(monkeypatch, data, "list", "staging") == 0
    assert capsys.readouterr().out == "flasktodo.SECRET_KEY\n", "names, never values"
    assert command(monkeypatch, data, "rm", "staging", "flasktodo", "SECRET_KEY") == 0
    assert provided_secret(settings, owner, "SECRET_KEY", {}) is None


def test_a_wrong_or_missing_key_is_one_line_naming_the_stack(
        data: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    command(monkeypatch, data, "set", "staging", "BACKUP_PASSPHRASE", stdin=VALUE)
    settings = settings_of("staging", data)
    wrong = {"STAGING_SECRETS_KEY": "not-the-key-it-was-made-with-0123456789-abcdefgh"}
    [problem] = vault_problems(settings, wrong)
    assert problem.startswith(f"staging: the key does not open {settings.secrets_file}")
    (settings.secrets_dir / "staging/secrets_key").unlink()
    [problem] = vault_problems(settings, {})
    assert problem.startswith(f"staging: no key for {settings.secrets_file}: set"
                              " STAGING_SECRETS_KEY or write it to")
    elsewhere = [data[0], f"secrets_file={settings.secrets_file.with_name('none.toml')}"]
    assert vault_problems(vault.VaultSettings.of("production", elsewhere), {}) == [], \
        "no file, no key needed"


def test_production_never_invents_its_key(data: list[str], monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert command(monkeypatch, data, "set", "production", "flasktodo", "SECRET_KEY",
                   stdin=VALUE) == 2
    assert "production: no key for" in capsys.readouterr().err
    assert not vault.VaultSettings.of("production", data).secrets_file.exists()


def test_re_keying_keeps_every_value_and_the_old_key_opens_it_no_more(
        data: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    command(monkeypatch, data, "set", "staging", "flasktodo", "SECRET_KEY", stdin=VALUE)
    command(monkeypatch, data, "set", "staging", "BACKUP_PASSPHRASE", stdin=VALUE[::-1])
    settings = settings_of("staging", data)
    old = (settings.secrets_dir / "staging/secrets_key").read_text().strip()
    new = "the-new-key-of-staging-0123456789-abcdefghijklmnop"
    assert command(monkeypatch, data, "rekey", "staging", stdin=new) == 0
    assert (settings.secrets_dir / "staging/secrets_key").read_text().strip() == new
    opened = vault.Vault.load("staging", settings.secrets_file)
    assert opened is not None
    assert opened.values(new) == {"flasktodo.SECRET_KEY": VALUE, "BACKUP_PASSPHRASE": VALUE[::-1]}
    with pytest.raises(vault.VaultError, match="the key does not open"):
        opened.values(old)


def test_a_value_moved_to_another_name_does_not_decrypt(tmp_path: Path) -> None:
    key = "a-key-for-a-value-moved-0123456789-abcdefghijklm"
    opened = vault.Vault.new("staging", tmp_path / "staging.toml", key)
    opened.sealed["a.SECRET_KEY"] = vault.seal(opened.opened(key), "a.SECRET_KEY", VALUE)
    opened.sealed["b.SECRET_KEY"] = opened.sealed["a.SECRET_KEY"]
    opened.save()
    loaded = vault.Vault.load("staging", tmp_path / "staging.toml")
    assert loaded is not None
    with pytest.raises(vault.VaultError, match=r"b\.SECRET_KEY does not decrypt"):
        loaded.values(key)


def test_the_file_is_the_repos_unless_group_data_names_another() -> None:
    settings = load_settings(group_data("staging"), "staging")
    assert settings.secrets_file == vault.SECRETS_DIR / "staging.toml"
    with pytest.raises(SettingsError, match="secrets_file"):
        load_settings({**group_data("staging"), "secrets_file": ""}, "staging")


def test_a_weak_value_is_refused_before_it_is_kept(
        data: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert command(monkeypatch, data, "set", "staging", "flasktodo", "SECRET_KEY",
                   stdin="changeme") == 2
    assert "is 8 characters long, fewer than 32: nothing was changed" in capsys.readouterr().err
    assert command(monkeypatch, data, "list", "staging") == 0
    assert "flasktodo.SECRET_KEY" not in capsys.readouterr().out
