"""The settings model: defaults load, overrides apply, bad values get one line each."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from wsgistack.config.schema import GROUP_KEYS, README, is_wsgi_target, with_tables
from wsgistack.config.secrets import app_secrets, check_secrets
from wsgistack.config.settings import (
    Settings,
    SettingsError,
    host_group,
    load_settings,
    unknown_keys,
)
from wsgistack.paths import REPO_ROOT


def group_data(group: str) -> dict:
    """all.py overridden by the group's file, as pyinfra merges them."""
    def read(name: str) -> dict:
        values = runpy.run_path(str(REPO_ROOT / "group_data" / f"{name}.py"))
        return {k: v for k, v in values.items() if not k.startswith("__")}

    return {**read("all"), **read(group)}


def production_data(tmp_path: Path) -> dict:
    """Production's group data, with the TLS pair its operator must provide."""
    for name in ("site.crt", "site.key"):
        (tmp_path / name).write_text("not checked offline\n")
    return {**group_data("production"), "tls_certificate": str(tmp_path / "site.crt"),
            "tls_certificate_key": str(tmp_path / "site.key")}


def test_defaults_and_group_overrides(tmp_path: Path) -> None:
    # An empty secrets dir: never the operator's own, where a kept TLS pair may exist.
    staging = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")
    production = load_settings(production_data(tmp_path), "production")
    assert staging.url_host == "staging.flasktodo.test"
    assert [app.workers for app in staging.apps] == [2]
    assert [app.workers for app in production.apps] == [4]
    app = staging.apps[0]
    assert (app.name, app.prefix, app.port, app.distribution) == (
        "flasktodo", "/flasktodo", 8004, "flasktodo")
    assert staging.generate_secrets and not production.generate_secrets
    assert staging.tls_make_self_signed and not production.tls_make_self_signed
    assert not staging.hsts and production.hsts


def test_production_needs_its_tls_pair(tmp_path: Path) -> None:
    data = {**group_data("production"), "secrets_dir": str(tmp_path)}
    with pytest.raises(SettingsError, match="tls_certificate: is missing: name the certificate"):
        load_settings(data, "production")
    with pytest.raises(SettingsError, match="tls_certificate_key: is missing: set both"):
        load_settings({**data, "tls_certificate": str(tmp_path)}, "production")
    kept = tmp_path / "production" / "tls"
    kept.mkdir(parents=True)
    for name in ("wsgistack.crt", "wsgistack.key"):
        (kept / name).write_text("kept\n")
    assert load_settings(data, "production").tls_certificate == kept / "wsgistack.crt"


def test_the_readme_tables_are_made_from_the_schema() -> None:
    """The README's settings tables are what `make docs` makes from wsgistack.config.schema."""
    readme = README.read_text()
    assert with_tables(readme) == readme, "the README's settings tables drifted: make docs"


def test_every_setting_is_a_field_of_the_settings() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert {key.name for key in GROUP_KEYS} <= fields


def test_a_key_that_is_no_setting_is_named_with_its_likely_meaning() -> None:
    assert unknown_keys(group_data("staging"), "group_data/all.py") == []
    assert unknown_keys({"gunicorn_worker": 3, "ssh_user": "admin", "_sudo": True,
                         "colour": "red"}, "group_data/all.py") == [
        "group_data/all.py: gunicorn_worker: is not a setting (did you mean gunicorn_workers?)",
        "group_data/all.py: colour: is not a setting"]


BAD = [
    ({"http_port": 0}, "http_port: 0 is invalid"),
    ({"http_port": "80"}, "http_port: '80' is invalid"),
    ({"server_names": []}, "server_names"),
    ({"server_names": ["bad name"]}, "server_names"),
    ({"gunicorn_workers": 0}, "gunicorn_workers"),
    ({"gunicorn_workers": True}, "gunicorn_workers"),
    ({"log_max_bytes": "ten"}, "log_max_bytes"),
    ({"apps": []}, "apps"),
    ({"apps": [{"name": "Bad!"}]}, "apps[0].name"),
    # An app named after an account the host has would take it over (home, shell, group).
    *(({"apps": [{**group_data("staging")["apps"][0], "name": account}]},
       f"apps[0].name: '{account}' is invalid: expected lowercase letters, digits and -, at"
       " most 31, and no account")
      for account in ("admin", "root", "www-data", "postgres", "nobody", "sudo",
                      "wsgistack-build", "systemd-network")),
    ({"apps": [{**group_data("staging")["apps"][0], "data_dirs": ["../etc"]}]}, "data_dirs"),
    ({"apps": [{**group_data("staging")["apps"][0], "data_dirs": ["backups"]}]}, "data_dirs"),
    ({"apps": [{**group_data("staging")["apps"][0], "prefix": "/todo/"}]}, "prefix"),
    ({"apps": [{**group_data("staging")["apps"][0], "port": 80}]}, "port"),
    ({"apps": [{**group_data("staging")["apps"][0], "colour": "red"}]}, "not a known app key"),
    ({"apps": [{**group_data("staging")["apps"][0], "source": "apps/none"}]}, "source"),
    ({"apps": [group_data("staging")["apps"][0]] * 2}, "flasktodo is listed more than once"),
    ({"apps": [group_data("staging")["apps"][0], {**group_data("staging")["apps"][0],
                                                   "name": "second"}]},
     "apps: second and flasktodo share port 8004"),
    ({"apps": [{**group_data("staging")["apps"][0], "state": "gone"}]},
     "apps[flasktodo].state: 'gone' is invalid: expected one of present, absent"),
    ({"apps": [{**group_data("staging")["apps"][0], "purge": True}]},
     "apps[flasktodo].purge: applies only to an app marked"),
    ({"apps": [{"name": "old", "state": "absent", "purge": "yes"}]},
     "apps[old].purge: 'yes' is invalid"),
    ({"keep_releases": 0}, "keep_releases: 0 is invalid: expected 1 to 100"),
    ({"rollout_batch_size": 0}, "rollout_batch_size: 0 is invalid"),
]


@pytest.mark.parametrize("override, message", BAD)
def test_bad_settings_name_the_key_and_group(override: dict, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**group_data("staging"), **override}, "staging")
    assert message in str(error.value)
    assert "group_data (staging)" in str(error.value)


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**group_data("staging"), "http_port": -1, "log_backups": -1}, "staging")
    assert len(error.value.problems) == 2


def test_a_host_must_be_in_one_environment() -> None:
    assert host_group(["all", "production"]) == "production"
    with pytest.raises(SettingsError, match="exactly one"):
        host_group(["staging", "production"])


def test_secrets_from_environment_file_or_generated_once(tmp_path: Path) -> None:
    staging = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path)}, "staging")
    app = staging.apps[0]
    strong = "k1-" + "abcdefghijklmnopqrstuvwxyz0123456789"
    assert app_secrets(staging, app, {"STAGING_FLASKTODO_SECRET_KEY": strong}) == {
        "SECRET_KEY": strong}
    generated = app_secrets(staging, app, {})["SECRET_KEY"]
    assert len(generated) >= 40 and app_secrets(staging, app, {})["SECRET_KEY"] == generated
    key_file = tmp_path / "staging" / "flasktodo.secret_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(("key", "reason"), [
    ("x", "is 1 characters long, fewer than 32"),
    ("a" * 40, "has 1 distinct characters, fewer than 10"),
    ("abab" * 10, "has 2 distinct characters"),
])
def test_a_weak_secret_is_refused_naming_the_app_and_where_it_is(tmp_path: Path, key: str,
                                                                 reason: str) -> None:
    production = load_settings({**production_data(tmp_path), "secrets_dir": str(tmp_path)},
                               "production")
    app = production.apps[0]
    environ = {"PRODUCTION_FLASKTODO_SECRET_KEY": key}
    [problem] = check_secrets(production, app, environ)
    assert problem.startswith("group_data (production): apps[flasktodo]: the secret SECRET_KEY"
                              " in $PRODUCTION_FLASKTODO_SECRET_KEY ")
    assert reason in problem and key not in problem.split(" in ", 1)[1].replace("$", "")
    with pytest.raises(SettingsError):
        app_secrets(production, app, environ)
    key_file = tmp_path / "production" / "flasktodo.secret_key"
    key_file.parent.mkdir()
    key_file.write_text("   \n")
    assert "no secret SECRET_KEY" in check_secrets(production, app, {})[0], "blank is no key"
    key_file.write_text("short\n")
    assert f"the secret SECRET_KEY in {key_file} is 5 characters" in check_secrets(
        production, app, {})[0]


def test_production_never_invents_a_secret(tmp_path: Path) -> None:
    production = load_settings({**production_data(tmp_path), "secrets_dir": str(tmp_path)},
                               "production")
    with pytest.raises(SettingsError, match="PRODUCTION_FLASKTODO_SECRET_KEY"):
        app_secrets(production, production.apps[0], {"STAGING_FLASKTODO_SECRET_KEY": "k"})
    assert not (tmp_path / "production").exists()


def test_an_absent_app_needs_only_its_name() -> None:
    present = group_data("staging")["apps"][0]
    data = {**group_data("staging"), "apps": [
        present, {"name": "old", "state": "absent"}, {"name": "older", "state": "absent",
                                                      "purge": True}]}
    settings = load_settings(data, "staging")
    assert [app.name for app in settings.apps] == ["flasktodo"]
    assert [(gone.name, gone.purge) for gone in settings.removed_apps] == [
        ("old", False), ("older", True)]


def app_entry(**keys: object) -> dict:
    return {**group_data("staging")["apps"][0], **keys}


def test_an_app_names_its_variables_and_secret_ones(tmp_path: Path) -> None:
    data = {**group_data("staging"), "secrets_dir": str(tmp_path), "apps": [
        app_entry(env={"GREETING": "hello", "MODE": "x"}, secret_env=["API_TOKEN"])]}
    app = load_settings(data, "staging").apps[0]
    assert app.env == (("GREETING", "hello"), ("MODE", "x"))
    assert app.secret_env == ("API_TOKEN",)


@pytest.mark.parametrize(("keys", "message"), [
    ({"env": {"lower": "x"}}, "apps[flasktodo].env: {'lower': 'x'} is invalid"),
    ({"env": {"GOOD": 1}}, "apps[flasktodo].env:"),
    ({"env": ["A=b"]}, "apps[flasktodo].env:"),
    ({"env": {"SCRIPT_NAME": "/x"}}, "apps[flasktodo].env:"),
    ({"env": {"FLASKTODO_CONFIG": "/x"}}, "apps[flasktodo].env:"),
    ({"secret_env": ["SCRIPT_NAME"]}, "apps[flasktodo].secret_env:"),
    ({"secret_env": "TOKEN"}, "apps[flasktodo].secret_env:"),
    ({"env": {"TOKEN": "x"}, "secret_env": ["TOKEN"]},
     "apps[flasktodo].env: TOKEN is in both env and secret_env"),
    ({"health_path": "healthz"}, "apps[flasktodo].health_path: 'healthz' is invalid"),
    ({"max_body_size": "lots"}, "apps[flasktodo].max_body_size: 'lots' is invalid"),
    ({"timeout": 0}, "apps[flasktodo].timeout: 0 is invalid"),
    ({"release_commands": ["migrate"]}, "apps[flasktodo].release_commands: ['migrate']"),
    ({"release_commands": [[]]}, "apps[flasktodo].release_commands:"),
    ({"release_commands": [["migrate", 1]]}, "apps[flasktodo].release_commands:"),
    ({"static": {"/static": "flasktodo/static"}}, "apps[flasktodo].static:"),
    ({"static": {"/static/": "../etc"}}, "apps[flasktodo].static:"),
    ({"static": {"/static/": "/etc"}}, "apps[flasktodo].static:"),
    ({"static": ["/static/"]}, "apps[flasktodo].static:"),
    ({"health_path": "/a b"}, "apps[flasktodo].health_path:"),
    ({"build_commands": "collectstatic"}, "apps[flasktodo].build_commands:"),
    ({"static": {"/static/": "build/static"}},
     "apps[flasktodo].static: /static/ -> build/static: build/ is what build_commands make"),
    ({"package": "httpbin==0.10.4"}, "apps[flasktodo].source: set exactly one of source"),
    ({"source": "no/such/dir"}, "apps[flasktodo].source: 'no/such/dir' is invalid"),
    ({"config": "apps/flasktodo/no-such.j2"}, "apps[flasktodo].config:"),
    ({"config": "apps/flasktodo/config.py.j2", "config_env": None},
     "apps[flasktodo].config_env: is missing"),
    ({"config": None}, "apps[flasktodo].config: is missing: set both config and config_env"),
    ({"env": {"WSGISTACK_SERVER_NAMES": "x"}},
     "apps[flasktodo].env: WSGISTACK_SERVER_NAMES is set by the stack itself"),
])
def test_bad_variables_name_the_app_and_key(keys: dict, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({**group_data("staging"), "apps": [app_entry(**keys)]}, "staging")
    assert any(problem.startswith(f"group_data (staging): {message}")
               for problem in error.value.problems), error.value.problems


@pytest.mark.parametrize("package", ["httpbin", "httpbin>=0.10", "httpbin==0.10.4; os_name"])
def test_a_package_is_one_pinned_version(package: str) -> None:
    entry = {key: value for key, value in app_entry().items() if key != "source"}
    with pytest.raises(SettingsError) as error:
        load_settings({**group_data("staging"), "apps": [{**entry, "package": package}]},
                      "staging")
    assert error.value.problems == [f"group_data (staging): apps[flasktodo].package:"
                                    f" {package!r} is invalid: expected one version of a"
                                    " package on PyPI, e.g. \"httpbin==0.10.4\""]


def test_apps_from_pypi_or_a_plain_tree_with_no_config(tmp_path: Path) -> None:
    """httpbin from PyPI and a startproject tree: no config file, versions of their own."""
    from apps.examples import DJANGO, HTTPBIN

    apps = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path),
                          "apps": [app_entry(), DJANGO, HTTPBIN]}, "staging").apps
    mysite, httpbin = apps[1], apps[2]
    assert (httpbin.source, httpbin.package, httpbin.distribution, httpbin.version) == (
        None, "httpbin==0.10.4", "httpbin", "0.10.4")
    assert mysite.package is None and mysite.version.startswith("0+")
    assert (mysite.config, mysite.config_name, httpbin.config_env) == (None, None, None)
    assert apps[0].config_name == "config.py"


def test_secret_variables_follow_the_secret_keys_rules(tmp_path: Path) -> None:
    """From $<GROUP>_<APP>_<NAME> or <secrets_dir>/<group>/<app>.<name>; made once where
    allowed, never in production; a weak one refused, naming it but never its value."""
    entry = app_entry(secret_env=["SECRET_KEY", "API_TOKEN"])
    staging = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path),
                             "apps": [entry]}, "staging")
    made = app_secrets(staging, staging.apps[0], {})
    assert (tmp_path / "staging" / "flasktodo.api_token").read_text().strip() == \
        made["API_TOKEN"] != made["SECRET_KEY"]
    production = load_settings({**production_data(tmp_path), "secrets_dir": str(tmp_path),
                                "apps": [entry]}, "production")
    key = {"PRODUCTION_FLASKTODO_SECRET_KEY": "p" + "abcdefghijklmnopqrstuvwxyz0123456789"}
    assert check_secrets(production, production.apps[0], key) == [
        "group_data (production): apps[flasktodo]: no secret API_TOKEN: set"
        f" PRODUCTION_FLASKTODO_API_TOKEN or write it to {tmp_path}/production/flasktodo.api_token"]
    [weak] = check_secrets(production, production.apps[0],
                           {**key, "PRODUCTION_FLASKTODO_API_TOKEN": "hunter2"})
    assert "the secret API_TOKEN in $PRODUCTION_FLASKTODO_API_TOKEN is 7 characters" in weak
    assert "hunter2" not in weak


@pytest.mark.parametrize(("target", "valid"), [
    ("flasktodo.wsgi:app", True),
    ("pkg:create_app()", True),
    ('pkg:create_app(root="/x", debug=False, sizes=[1, 2])', True),
    ("pkg.sub:factory(None)", True),
    ("pkg:app.wsgi_app", False),  # gunicorn takes a name, not an attribute path
    ("pkg:obj.factory()", False),
    ("pkg:factory(os.getcwd())", False),  # arguments must be literals
    ("pkg:factory(**options)", False),
    ("pkg:factory(", False),
    ("pkg", False),
    ("1pkg:app", False),
    ("pkg:app; import os", False),
])
def test_wsgi_targets_as_gunicorn_takes_them(target: str, valid: bool) -> None:
    assert is_wsgi_target(target) is valid


def test_an_app_may_set_its_own_limits(tmp_path: Path) -> None:
    data = {**group_data("staging"), "secrets_dir": str(tmp_path), "apps": [
        app_entry(max_body_size="20m", timeout=120, workers=3)]}
    app = load_settings(data, "staging").apps[0]
    assert (app.max_body_size, app.timeout, app.workers) == ("20m", 120, 3)
    default = load_settings({**data, "apps": [app_entry()]}, "staging").apps[0]
    assert (default.max_body_size, default.timeout, default.workers) == ("1m", 30, 2)


def test_acme_needs_a_contact_and_no_pair_of_the_operators(tmp_path: Path) -> None:
    acme = {**group_data("production"), "tls_mode": "acme"}
    with pytest.raises(SettingsError) as refused:
        load_settings({**production_data(tmp_path), "tls_mode": "acme",
                       "acme_ca_certificate": str(tmp_path / "none.crt")}, "production")
    assert refused.value.problems == [
        "group_data (production): tls_certificate: is set, but tls_mode is acme: certbot"
        " obtains the certificate; unset it, or use tls_mode files",
        "group_data (production): tls_certificate_key: is set, but tls_mode is acme: certbot"
        " obtains the certificate; unset it, or use tls_mode files",
        "group_data (production): acme_email: is missing: tls_mode acme needs the account's"
        " contact address",
        f"group_data (production): acme_ca_certificate: {tmp_path}/none.crt does not exist on"
        " the controller"]
    settings = load_settings({**acme, "acme_email": "ops@flasktodo.test"}, "production")
    assert settings.acme and settings.tls_certificate is None
    assert not settings.tls_make_self_signed, "production never needs its own pair with acme"
    assert settings.acme_directory == "https://acme-v02.api.letsencrypt.org/directory"
    staging = load_settings({**group_data("staging"), "secrets_dir": str(tmp_path),
                             "tls_mode": "acme", "acme_email": "ops@flasktodo.test"}, "staging")
    assert "acme-staging" in staging.acme_directory, "staging asks Let's Encrypt's staging CA"
    with pytest.raises(SettingsError, match=r"acme_directory: 'http://ca\.test/dir' is invalid"):
        load_settings({**acme, "acme_email": "ops@x.test", "acme_directory": "http://ca.test/dir"},
                      "production")
