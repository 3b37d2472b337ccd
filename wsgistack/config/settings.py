"""The settings model: group data read against wsgistack.config.schema's declarations, checked
and turned into typed settings.

Every problem is reported at once, one line each, naming the key and the group, before any
operation is planned on a host. The checks of one value are the schema's; what is checked
here is what involves several keys (ports in use twice, a secret named twice, ...).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from wsgistack.build import sources
from wsgistack.config.schema import (
    APP_KEY,
    APP_KEYS,
    GROUP_KEY,
    GROUP_KEYS,
    GROUPS,
    PACKAGE,
    REQUIRED,
    FromGroup,
    Key,
)
from wsgistack.config.vault import vault_path
from wsgistack.engine.changes import OperatorError
from wsgistack.onhost.golive.protocol import VERSION
from wsgistack.paths import REPO_ROOT

# Variables the stack itself sets for every app: not for an entry's env or secret_env.
SERVER_NAMES_ENV = "WSGISTACK_SERVER_NAMES"  # the group's server_names, space-separated
RESERVED_ENV = {"HOME", "USER", "PATH", "SCRIPT_NAME", SERVER_NAMES_ENV}


class SettingsError(OperatorError):
    """Bad group data: one line per problem. A pyinfra error, so pyinfra prints the lines
    and exits non-zero before any operation runs, without a traceback."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("bad settings, nothing was changed:\n    " + "\n    ".join(problems))
        self.problems = problems


@dataclass(frozen=True, kw_only=True)
class AppSettings:
    """One app entry's settings: a field per key of wsgistack.config.schema.APP_KEYS (its
    meaning is there), and what its code says (its distribution and version)."""

    name: str
    source: Path | None  # the app's project dir (wsgistack.build.sources), or None: ...
    package: str | None  # ... a requirement pinned on PyPI, e.g. "httpbin==0.10.4"
    distribution: str  # the Python project's name: from its source, or the package's
    version: str
    wsgi: str
    prefix: str
    port: int
    workers: int
    config: Path | None = None  # the template of its config file, if it has one
    config_env: str | None = None  # the variable that names that file to the app
    # the variable that gets its PostgreSQL URL, where the environment has a database host
    database_env: str | None = None
    max_body_size: str = "1m"  # the largest request body nginx lets through to it
    timeout: int = 30  # seconds a request may take before gunicorn kills its worker
    env: tuple[tuple[str, str], ...] = ()  # plain variables, (name, value)
    secret_env: tuple[str, ...] = ()  # variables whose values are secrets (config.secrets)
    health_path: str = "/"  # under the prefix: what the health checks ask (health)
    # argv lists run once as a release is installed (golive build), e.g. collectstatic
    build_commands: tuple[tuple[str, ...], ...] = ()
    # argv lists run before a new release goes live (golive switch), e.g. a migration
    release_commands: tuple[tuple[str, ...], ...] = ()
    # (URL path under the prefix, dir nginx serves it from: in the release's installed
    # packages, or under build/ what the build commands made)
    static: tuple[tuple[str, str], ...] = ()
    data_dirs: tuple[str, ...] = ()  # dirs of its own in /var/lib/<app>/, besides backups

    @property
    def config_name(self) -> str | None:
        """The config file's name in /etc/<app>/: its template's, less .j2."""
        return self.config.name.removesuffix(".j2") if self.config else None


@dataclass(frozen=True, kw_only=True)
class RemovedApp:
    """An app marked `"state": "absent"`: removed from the hosts, its data kept unless
    `purge`."""

    name: str
    purge: bool


@dataclass(frozen=True, kw_only=True)
class Settings:
    """One group's settings: a field per key of wsgistack.config.schema.GROUP_KEYS (its meaning is
    there), and what follows from them."""

    group: str
    server_names: list[str]
    site_name: str
    http_port: int
    https_port: int
    tls_mode: str
    acme_directory: str
    acme_email: str | None
    acme_ca_certificate: Path | None
    # on the controller: the named file, or the kept pair's; None where tls_mode is acme
    tls_certificate: Path | None
    tls_certificate_key: Path | None
    hsts: bool
    hsts_max_age: int
    client_max_body_size: str
    content_security_policy: str
    health_check_from: list[str]
    static_expires: str
    gunicorn_workers: int
    gunicorn_timeout: int
    gunicorn_graceful_timeout: int
    log_max_bytes: str
    log_backups: int
    rollout_batch_size: int
    health_timeout: int
    keep_releases: int
    keep_backups: int
    database_backups: int
    backup_full_on: str
    backup_diff_on: str
    backup_app_data_on: str
    backup_app_data_days: int
    backup_full_kept: int
    backup_archive_timeout: int
    backup_port: int
    secrets_file: Path
    secrets_dir: Path
    generate_secrets: bool
    apps: list[AppSettings]
    removed_apps: list[RemovedApp]
    tls_make_self_signed: bool  # no pair at those paths yet: make a self-signed one there

    @property
    def url_host(self) -> str:
        return self.server_names[0]

    @property
    def acme(self) -> bool:
        """Whether certbot obtains the site's certificate (wsgistack.components.acme)."""
        return self.tls_mode == "acme"


class Checker:
    """Collects problems while reading keys, so all are reported together."""

    def __init__(self, data: Mapping[str, Any], group: str) -> None:
        self.data = data
        self.group = group
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"group_data ({self.group}): {key}: {message}")

    def value(self, key: Key, data: Mapping[str, Any] | None = None, where: str = "") -> Any:
        """The key's checked value, or its default where unset (None where it fails)."""
        value = (self.data if data is None else data).get(key.name)
        label = f"{where}.{key.name}" if where else key.name
        if value is None:
            if key.default is REQUIRED:
                self.fail(label, "is missing")
                return None
            return key.default
        problem = key.check.problem(value)
        if problem:
            self.fail(label, problem)
            return None
        return value


def unknown_keys(data: Mapping[str, Any], where: str) -> list[str]:
    """Keys of a group data file that are no setting (a typo would otherwise be silently
    ignored). pyinfra's own keys (ssh_*, _sudo and its other global arguments) may be set."""
    return [f"{where}: {name}: is not a setting" + "".join(
                f" (did you mean {match}?)"
                for match in difflib.get_close_matches(name, GROUP_KEY, n=1))
            for name in data
            if name not in GROUP_KEY and not name.startswith(("_", "ssh_"))]


def load_settings(data: Mapping[str, Any], group: str) -> Settings:
    """Read and check every key; raise SettingsError listing all problems."""
    c = Checker(data, group)
    values = {key.name: c.value(key) for key in GROUP_KEYS}
    certificate, key, self_signed = load_tls_files(c, values)
    apps, removed = load_apps(c, values)
    if values["http_port"] is not None and values["http_port"] == values["https_port"]:
        c.fail("https_port", f"{values['https_port']} is also http_port")
    for app in apps:
        if app.port in (values["http_port"], values["https_port"]):
            c.fail("apps", f"{app.name}: port {app.port} is one of nginx's ports")
    if c.problems:
        raise SettingsError(c.problems)
    ca = values["acme_ca_certificate"]
    return Settings(**{
        **values, "group": group, "tls_certificate": certificate, "tls_certificate_key": key,
        "tls_make_self_signed": self_signed, "secrets_dir": Path(values["secrets_dir"])
        .expanduser(), "secrets_file": Path(values["secrets_file"]).expanduser()
        if values["secrets_file"] else vault_path(group),
        "acme_ca_certificate": Path(ca).expanduser() if ca else None,
        "apps": apps, "removed_apps": removed})


def load_tls_files(c: Checker, values: dict[str, Any]
                   ) -> tuple[Path | None, Path | None, bool]:
    """The certificate and key: the files named in group data, else the pair kept in
    <secrets_dir>/<group>/tls/<site_name>.{crt,key}, else (where secrets may be generated)
    a self-signed pair to make there. Returns (certificate, key, make_self_signed); with
    tls_mode acme, none (certbot makes the pair on each host)."""
    named = {name: values[name] for name in ("tls_certificate", "tls_certificate_key")}
    if values["tls_mode"] == "acme":
        check_acme(c, values, named)
        return None, None, False
    if any(named.values()):
        for name, value in named.items():
            if value is None:
                c.fail(name, "is missing: set both tls_certificate and tls_certificate_key")
            elif not Path(value).expanduser().is_file():
                c.fail(name, f"{value} does not exist on the controller")
        certificate, key = (Path(v).expanduser() if v else None for v in named.values())
        return certificate, key, False
    if values["secrets_dir"] is None or values["site_name"] is None:
        return None, None, False
    kept = Path(values["secrets_dir"]).expanduser() / c.group / "tls" / values["site_name"]
    certificate, key = kept.with_suffix(".crt"), kept.with_suffix(".key")
    if certificate.is_file() and key.is_file():
        return certificate, key, False
    if values["generate_secrets"] is False:
        c.fail("tls_certificate", f"is missing: name the certificate and key files, or put"
               f" them at {certificate} and {key} (never self-signed here)")
    return certificate, key, True


def check_acme(c: Checker, values: dict[str, Any], named: dict[str, Any]) -> None:
    """With tls_mode acme: a contact, a CA certificate file if one is named, and no pair of
    the operator's (certbot makes it)."""
    for name, value in named.items():
        if value is not None:
            c.fail(name, "is set, but tls_mode is acme: certbot obtains the certificate; unset"
                   " it, or use tls_mode files")
    if c.data.get("acme_email") is None:
        c.fail("acme_email", "is missing: tls_mode acme needs the account's contact address")
    ca = values["acme_ca_certificate"]
    if ca is not None and not Path(ca).expanduser().is_file():
        c.fail("acme_ca_certificate", f"{ca} does not exist on the controller")


def load_apps(c: Checker, group: dict[str, Any]) -> tuple[list[AppSettings], list[RemovedApp]]:
    """The app entries; `group` holds the group's values, some an app's default."""
    apps: list[AppSettings] = []
    removed: list[RemovedApp] = []
    for index, entry in enumerate(group["apps"] or []):
        if not isinstance(entry, dict):
            c.fail(f"apps[{index}]", "must be a dict")
            continue
        for name in sorted(set(entry) - set(APP_KEY)):
            c.fail(f"apps[{index}].{name}",
                   f"is not a known app key ({', '.join(sorted(APP_KEY))})")
        state = c.value(APP_KEY["state"], entry, f"apps[{entry.get('name', index)}]")
        if state == "absent":
            gone = load_removed_app(c, entry, index)
            if gone is not None:
                removed.append(gone)
        elif state == "present":
            app = load_app(c, entry, index, group)
            if app is not None:
                apps.append(app)
    names = [app.name for app in apps] + [gone.name for gone in removed]
    for name in {name for name in names if names.count(name) > 1}:
        c.fail("apps", f"{name} is listed more than once")
    for attribute in ("port", "prefix"):
        seen: dict[Any, str] = {}
        for app in apps:
            value = getattr(app, attribute)
            if value in seen:
                c.fail("apps", f"{app.name} and {seen[value]} share {attribute} {value!r}")
            seen[value] = app.name
    return apps, removed


def load_removed_app(c: Checker, entry: dict[str, Any], index: int) -> RemovedApp | None:
    before = len(c.problems)
    name = c.value(APP_KEY["name"], entry, f"apps[{index}]")
    purge = c.value(APP_KEY["purge"], entry, f"apps[{name or index}]")
    return None if len(c.problems) > before else RemovedApp(name=name, purge=purge)


def load_app(c: Checker, entry: dict[str, Any], index: int,
             group: dict[str, Any]) -> AppSettings | None:
    before = len(c.problems)
    name = c.value(APP_KEY["name"], entry, f"apps[{index}]")
    where = f"apps[{name or index}]"
    values = {key.name: c.value(key, entry, where) for key in APP_KEYS[1:]}
    for key, value in values.items():
        if isinstance(value, FromGroup):
            values[key] = group[value.key]
    if "purge" in entry:
        c.fail(f"{where}.purge", "applies only to an app marked \"state\": \"absent\"")
    code = load_code(c, entry, values, where, name)
    check_config(c, entry, where)
    check_environment(c, values, where)
    for url, folder in (values["static"] or {}).items():
        if is_built(folder) and values["build_commands"] == []:
            c.fail(f"{where}.static", f"{url} -> {folder}: build/ is what build_commands make,"
                   " and the app has none")
    if len(c.problems) > before or code is None:
        return None
    source, distribution, version = code
    as_data = {"config": REPO_ROOT / values["config"] if values["config"] else None,
               "env": tuple(sorted(values["env"].items())),
               "static": tuple(values["static"].items()),
               **{key: tuple(map(tuple, values[key]))
                  for key in ("build_commands", "release_commands")},
               **{key: tuple(values[key]) for key in ("secret_env", "data_dirs")}}
    held = {field.name for field in fields(AppSettings)}  # keys kept as checked, by name
    return AppSettings(**{**{key: value for key, value in values.items() if key in held},
                          **as_data, "name": name, "source": source,
                          "distribution": distribution, "version": version})


def is_built(folder: str) -> bool:
    """Whether a static dir is in what the build commands made (else in the packages)."""
    return folder.startswith("build/")


def load_code(c: Checker, entry: dict[str, Any], values: dict[str, Any], where: str,
              name: str | None) -> tuple[Path | None, str, str] | None:
    """(source dir, distribution, version) of exactly one of `source` (a dir in any layout,
    wsgistack.build.sources) or `package` (a pinned PyPI requirement)."""
    if ("source" in entry) == ("package" in entry):
        c.fail(f"{where}.source", "set exactly one of source (a project dir) or package (a"
               " requirement on PyPI, e.g. \"httpbin==0.10.4\")")
        return None
    if values["package"]:
        pinned = PACKAGE.match(values["package"])
        return None, pinned["name"], pinned["version"]
    source = values["source"]
    if source is None or name is None:
        return None
    try:
        distribution, version = sources.identity(REPO_ROOT / source, name)
    except sources.SourceError as error:
        c.fail(f"{where}.source", f"{source} did not build: {error_line(error)}")
        return None
    if not VERSION.match(version):
        c.fail(f"{where}.source", f"{source}'s version {version!r} is not a PEP 440 version")
        return None
    return REPO_ROOT / source, distribution, version


def error_line(error: Exception) -> str:
    """The last line of a tool's output that says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])


def check_config(c: Checker, entry: dict[str, Any], where: str) -> None:
    """The app's own config template and the variable naming the file: both or neither."""
    for key, other in (("config", "config_env"), ("config_env", "config")):
        if entry.get(other) is not None and entry.get(key) is None:
            c.fail(f"{where}.{key}", f"is missing: set both {key} and {other}, or neither")


def check_environment(c: Checker, values: dict[str, Any], where: str) -> None:
    """No variable the stack sets itself, none both plain and secret."""
    reserved = RESERVED_ENV | {values[key] for key in ("config_env", "database_env")
                               if values[key]}
    env, secret_env = values["env"] or {}, values["secret_env"] or []
    for key, names in (("env", env), ("secret_env", secret_env)):
        for name in sorted(set(names) & reserved):
            c.fail(f"{where}.{key}", f"{name} is set by the stack itself")
    for name in sorted(set(env) & set(secret_env)):
        c.fail(f"{where}.env", f"{name} is in both env and secret_env")


def host_group(groups: list[str] | tuple[str, ...]) -> str:
    """The environment a host belongs to: exactly one of staging or production."""
    found = [group for group in GROUPS if group in groups]
    if len(found) != 1:
        raise SettingsError([f"inventory: a host must be in exactly one of {GROUPS}, not {found}"])
    return found[0]
