"""The settings model: group data read, checked and turned into typed settings.

Every problem is reported at once, one line each, naming the key and the group, before any
operation is planned on a host.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api.exceptions import PyinfraError

from wsgistack import sources
from wsgistack.onhost.golive import APP_NAME, CONFIG_NAME, VERSION
from wsgistack.paths import REPO_ROOT

GROUPS = ("staging", "production")
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
SERVER_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
CSP = re.compile(r"^[A-Za-z0-9 ;:/'*.@=+_-]+$")
NGINX_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
NGINX_TIME = re.compile(r"^[0-9]+(ms|s|m|h|d|w|M|y)?$")
SUPERVISOR_SIZE = re.compile(r"^[0-9]+(KB|MB|GB)?$")
MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
HEALTH_PATH = re.compile(r"^/([A-Za-z0-9._~-]+/?)*$")
# Variables the stack itself sets for every app: not for an entry's env or secret_env.
SERVER_NAMES_ENV = "WSGISTACK_SERVER_NAMES"  # the group's server_names, space-separated
RESERVED_ENV = {"HOME", "USER", "PATH", "SCRIPT_NAME", SERVER_NAMES_ENV}
APP_STATES = ("present", "absent")

# (type, check, what is expected) of settings a group sets and an app entry may override.
WORKERS = (int, lambda v: 1 <= v <= 64, "1 to 64")
BODY_SIZE = (str, NGINX_SIZE.match, "an nginx size like 1m")
TIMEOUT = (int, lambda v: 1 <= v <= 3600, "1 to 3600 seconds")
# An app entry's own value of a group setting: its key, the group's key (its default), spec.
APP_OWN = {"workers": ("gunicorn_workers", WORKERS),
           "max_body_size": ("client_max_body_size", BODY_SIZE),
           "timeout": ("gunicorn_timeout", TIMEOUT)}
APP_KEYS = {"name", "source", "package", "wsgi", "config", "config_env", "prefix", "port",
            *APP_OWN, "env", "secret_env", "health_path", "build_commands",
            "release_commands", "static", "state", "purge"}
STATIC_URL = re.compile(r"^/([A-Za-z0-9._~-]+/)+$")
# A requirement pinned to one version, as pip takes it: "httpbin==0.10.4"
PACKAGE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?"
                     r"==(?P<version>[A-Za-z0-9.+!_-]+)$")
RELEASE_DIR = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class SettingsError(PyinfraError):
    """Bad group data: one line per problem. A pyinfra error, so pyinfra prints the lines
    and exits non-zero before any operation runs, without a traceback."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("bad settings, nothing was changed:\n    " + "\n    ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class AppSettings:
    name: str
    source: Path | None  # the app's project dir (wsgistack.sources), or None: ...
    package: str | None  # ... a requirement pinned on PyPI, e.g. "httpbin==0.10.4"
    distribution: str  # the Python project's name: from its source, or the package's
    version: str
    wsgi: str
    prefix: str
    port: int
    workers: int
    config: Path | None = None  # the template of its config file, if it has one
    config_env: str | None = None  # the variable that names that file to the app
    max_body_size: str = "1m"  # the largest request body nginx lets through to it
    timeout: int = 30  # seconds a request may take before gunicorn kills its worker
    env: tuple[tuple[str, str], ...] = ()  # plain variables, (name, value)
    secret_env: tuple[str, ...] = ()  # variables whose values are secrets (wsgistack.secrets)
    health_path: str = "/"  # under the prefix: what the health checks ask (wsgistack.health)
    # argv lists run once as a release is installed (golive build), e.g. collectstatic
    build_commands: tuple[tuple[str, ...], ...] = ()
    # argv lists run before a new release goes live (golive switch), e.g. a migration
    release_commands: tuple[tuple[str, ...], ...] = ()
    # (URL path under the prefix, dir nginx serves it from: in the release's installed
    # packages, or under build/ what the build commands made)
    static: tuple[tuple[str, str], ...] = ()

    @property
    def config_name(self) -> str | None:
        """The config file's name in /etc/<app>/: its template's, less .j2."""
        return self.config.name.removesuffix(".j2") if self.config else None


@dataclass(frozen=True)
class RemovedApp:
    """An app marked `"state": "absent"`: removed from the hosts, its data kept unless
    `purge`."""

    name: str
    purge: bool


@dataclass(frozen=True)
class Settings:
    group: str
    server_names: list[str]
    site_name: str
    http_port: int
    https_port: int
    tls_certificate: Path  # on the controller
    tls_certificate_key: Path
    tls_make_self_signed: bool  # no pair at those paths yet: make a self-signed one there
    hsts: bool
    hsts_max_age: int
    client_max_body_size: str
    content_security_policy: str
    health_check_from: list[str]
    static_expires: str
    gunicorn_timeout: int
    gunicorn_graceful_timeout: int
    log_max_bytes: str
    log_backups: int
    secrets_dir: Path
    generate_secrets: bool
    rollout_batch_size: int
    health_timeout: int
    keep_releases: int
    keep_backups: int
    apps: list[AppSettings]
    removed_apps: list[RemovedApp]

    @property
    def url_host(self) -> str:
        return self.server_names[0]


class Checker:
    """Collects problems while reading keys, so all are reported together."""

    def __init__(self, data: Mapping[str, Any], group: str) -> None:
        self.data = data
        self.group = group
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"group_data ({self.group}): {key}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], check: Callable[[Any], bool],
            expected: str, data: Mapping[str, Any] | None = None, label: str = "") -> Any:
        source = self.data if data is None else data
        value = source.get(key)
        if value is None:
            self.fail(label or key, "is missing")
        elif not isinstance(value, kind) or (isinstance(value, bool) and kind is int) \
                or not check(value):
            self.fail(label or key, f"{value!r} is invalid: expected {expected}")
        else:
            return value
        return None


def is_port(value: int) -> bool:
    return 1 <= value <= 65535


def is_wsgi_target(value: str) -> bool:
    """What gunicorn's import_app takes: module:name, or module:factory(...) called with
    literal arguments."""
    module, colon, obj = value.partition(":")
    if not colon or not MODULE.match(module):
        return False
    try:
        expression = ast.parse(obj, mode="eval").body
    except SyntaxError:
        return False
    if isinstance(expression, ast.Name):
        return True
    if not (isinstance(expression, ast.Call) and isinstance(expression.func, ast.Name)):
        return False
    try:
        for argument in [*expression.args, *(kw.value for kw in expression.keywords)]:
            ast.literal_eval(argument)
    except ValueError:
        return False
    return all(keyword.arg for keyword in expression.keywords)  # no **mapping


def is_network(value: object) -> bool:
    try:
        ipaddress.ip_network(value)
    except (TypeError, ValueError):
        return False
    return True


def load_settings(data: Mapping[str, Any], group: str) -> Settings:
    """Read and check every key; raise SettingsError listing all problems."""
    c = Checker(data, group)
    names = c.get("server_names", list, lambda v: bool(v) and all(
        isinstance(n, str) and SERVER_NAME.match(n) for n in v), "a non-empty list of host names")
    site_name = c.get("site_name", str, APP_NAME.match, "lowercase letters, digits and -")
    http_port = c.get("http_port", int, is_port, "a port, 1-65535")
    https_port = c.get("https_port", int, is_port, "a port, 1-65535")
    hsts = c.get("hsts", bool, lambda v: True, "True or False")
    hsts_max_age = c.get("hsts_max_age", int, lambda v: 0 <= v <= 10**9, "seconds, 0 or more")
    body = c.get("client_max_body_size", *BODY_SIZE)
    policy = c.get("content_security_policy", str, CSP.match,
                   "a Content-Security-Policy value (no quotes or newlines)")
    health_from = c.get("health_check_from", list, lambda v: all(map(is_network, v)),
                        "a list of addresses or networks, e.g. [\"10.0.0.0/8\"]")
    expires = c.get("static_expires", str, NGINX_TIME.match, "an nginx time like 7d")
    workers = c.get("gunicorn_workers", *WORKERS)
    timeout = c.get("gunicorn_timeout", *TIMEOUT)
    graceful = c.get("gunicorn_graceful_timeout", int, lambda v: 1 <= v <= 3600,
                     "1 to 3600 seconds")
    max_bytes = c.get("log_max_bytes", str, SUPERVISOR_SIZE.match, "a size like 10MB")
    backups = c.get("log_backups", int, lambda v: 0 <= v <= 100, "0 to 100")
    secrets_dir = c.get("secrets_dir", str, bool, "a directory on the controller")
    generate = c.get("generate_secrets", bool, lambda v: True, "True or False")
    certificate, key, self_signed = load_tls_files(c, secrets_dir, site_name, generate)
    batch_size = c.get("rollout_batch_size", int, lambda v: v >= 1, "1 or more hosts")
    health_timeout = c.get("health_timeout", int, lambda v: 1 <= v <= 600, "1 to 600 seconds")
    keep_releases = c.get("keep_releases", int, lambda v: 1 <= v <= 100, "1 to 100")
    keep_backups = c.get("keep_backups", int, lambda v: 0 <= v <= 1000, "0 to 1000")
    apps, removed = load_apps(c, {"workers": workers, "max_body_size": body, "timeout": timeout})
    if http_port is not None and http_port == https_port:
        c.fail("https_port", f"{https_port} is also http_port")
    for app in apps:
        if app.port in (http_port, https_port):
            c.fail("apps", f"{app.name}: port {app.port} is one of nginx's ports")
    if c.problems:
        raise SettingsError(c.problems)
    return Settings(
        group=group, server_names=names, site_name=site_name, http_port=http_port,
        https_port=https_port, tls_certificate=certificate, tls_certificate_key=key,
        tls_make_self_signed=self_signed, hsts=hsts,
        hsts_max_age=hsts_max_age,
        client_max_body_size=body, content_security_policy=policy,
        health_check_from=health_from, static_expires=expires, gunicorn_timeout=timeout,
        gunicorn_graceful_timeout=graceful, log_max_bytes=max_bytes, log_backups=backups,
        secrets_dir=Path(secrets_dir).expanduser(), generate_secrets=generate,
        rollout_batch_size=batch_size, health_timeout=health_timeout,
        keep_releases=keep_releases, keep_backups=keep_backups, apps=apps, removed_apps=removed,
    )


def load_tls_files(c: Checker, secrets_dir: str | None, site_name: str | None,
                   generate: bool | None) -> tuple[Path | None, Path | None, bool]:
    """The certificate and key: the files named in group data, else the pair kept in
    <secrets_dir>/<group>/tls/<site_name>.{crt,key}, else (where secrets may be generated)
    a self-signed pair to make there. Returns (certificate, key, make_self_signed)."""
    named = {key: c.data.get(key) for key in ("tls_certificate", "tls_certificate_key")}
    if not any(named.values()):
        if secrets_dir is None or site_name is None:
            return None, None, False
        kept = Path(secrets_dir).expanduser() / c.group / "tls" / site_name
        certificate, key = kept.with_suffix(".crt"), kept.with_suffix(".key")
        if certificate.is_file() and key.is_file():
            return certificate, key, False
        if generate is False:
            c.fail("tls_certificate", f"is missing: name the certificate and key files, or put"
                   f" them at {certificate} and {key} (never self-signed here)")
        return certificate, key, True
    paths = []
    for key, value in named.items():
        if not isinstance(value, str) or not value:
            c.fail(key, f"{value!r} is invalid: expected a file path on the controller"
                   " (set both tls_certificate and tls_certificate_key)")
        elif not Path(value).expanduser().is_file():
            c.fail(key, f"{value} does not exist on the controller")
        paths.append(Path(value).expanduser() if isinstance(value, str) else None)
    return paths[0], paths[1], False


def load_apps(c: Checker, defaults: dict[str, Any]
              ) -> tuple[list[AppSettings], list[RemovedApp]]:
    """The app entries; `defaults` are the group's values of the APP_OWN keys."""
    entries = c.get("apps", list, bool, "a non-empty list of app entries")
    apps: list[AppSettings] = []
    removed: list[RemovedApp] = []
    for index, entry in enumerate(entries or []):
        if not isinstance(entry, dict):
            c.fail(f"apps[{index}]", "must be a dict")
            continue
        state = entry.get("state", "present")
        if state not in APP_STATES:
            c.fail(f"apps[{entry.get('name', index)}].state",
                   f"{state!r} is invalid: expected one of {', '.join(APP_STATES)}")
        elif state == "absent":
            gone = load_removed_app(c, entry, index)
            if gone is not None:
                removed.append(gone)
        else:
            app = load_app(c, entry, index, defaults)
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
    where = f"apps[{index}]"
    before = len(c.problems)
    for key in sorted(set(entry) - APP_KEYS):
        c.fail(f"{where}.{key}", f"is not a known app key ({', '.join(sorted(APP_KEYS))})")
    name = c.get("name", str, APP_NAME.match, "lowercase letters, digits and -, at most 31",
                 entry, f"{where}.name")
    purge = entry.get("purge", False)
    if not isinstance(purge, bool):
        c.fail(f"apps[{name or index}].purge", f"{purge!r} is invalid: expected True or False")
    return None if len(c.problems) > before else RemovedApp(name, purge)


def load_app(c: Checker, entry: dict[str, Any], index: int,
             defaults: dict[str, Any]) -> AppSettings | None:
    where = f"apps[{index}]"
    before = len(c.problems)
    for key in sorted(set(entry) - APP_KEYS):
        c.fail(f"{where}.{key}", f"is not a known app key ({', '.join(sorted(APP_KEYS))})")
    name = c.get("name", str, APP_NAME.match, "lowercase letters, digits and -, at most 31",
                 entry, f"{where}.name")
    where = f"apps[{name or index}]"
    code = load_code(c, entry, where, name)
    wsgi = c.get("wsgi", str, is_wsgi_target,
                 "module:name or module:factory(literal arguments), as gunicorn takes it",
                 entry, f"{where}.wsgi")
    config, config_env = load_config(c, entry, where)
    prefix = c.get("prefix", str, PREFIX.match, "a URL path like /app, no trailing slash",
                   entry, f"{where}.prefix")
    port = c.get("port", int, lambda v: 1024 <= v <= 65535, "a port, 1024-65535",
                 entry, f"{where}.port")
    if "purge" in entry:
        c.fail(f"{where}.purge", "applies only to an app marked \"state\": \"absent\"")
    own = {key: c.get(key, *spec, entry, f"{where}.{key}") if key in entry else defaults[key]
           for key, (_group_key, spec) in APP_OWN.items()}
    env, secret_env = load_environment(c, entry, where, config_env)
    health_path = "/"
    if "health_path" in entry:
        health_path = c.get("health_path", str, HEALTH_PATH.match,
                            "a path under the prefix like /healthz", entry,
                            f"{where}.health_path")
    build_commands, release_commands = (load_commands(c, entry, where, key)
                                        for key in ("build_commands", "release_commands"))
    static = entry.get("static", {})
    if not isinstance(static, dict) or not all(
            isinstance(url, str) and STATIC_URL.match(url) and isinstance(folder, str)
            and RELEASE_DIR.match(folder) for url, folder in static.items()):
        c.fail(f"{where}.static", f"{static!r} is invalid: expected {{\"/static/\":"
               " \"package/static\"}: URL paths under the prefix, ending in /, and dirs in"
               " the release's installed packages or build/")
        static = {}
    for url, folder in static.items():
        if is_built(folder) and not build_commands:
            c.fail(f"{where}.static", f"{url} -> {folder}: build/ is what build_commands make,"
                   " and the app has none")
    if len(c.problems) > before or code is None:
        return None
    source, package, distribution, version = code
    return AppSettings(name, source, package, distribution, version, wsgi, prefix, port,
                       own["workers"], config, config_env, own["max_body_size"],
                       own["timeout"], env, secret_env, health_path, build_commands,
                       release_commands, tuple(static.items()))


def is_built(folder: str) -> bool:
    """Whether a static dir is in what the build commands made (else in the packages)."""
    return folder.startswith("build/")


def load_commands(c: Checker, entry: dict[str, Any], where: str, key: str
                  ) -> tuple[tuple[str, ...], ...]:
    """An entry's build_commands or release_commands: a list of argv lists."""
    commands = entry.get(key, [])
    if not isinstance(commands, list) or not all(
            isinstance(argv, list) and argv and all(isinstance(arg, str) and arg for arg in argv)
            for argv in commands):
        c.fail(f"{where}.{key}", f"{commands!r} is invalid: expected a list of commands, each"
               " a list of arguments, e.g. [[\"django-admin\", \"migrate\"]]")
        return ()
    return tuple(map(tuple, commands))


def load_code(c: Checker, entry: dict[str, Any], where: str, name: str | None
              ) -> tuple[Path | None, str | None, str, str] | None:
    """(source, package, distribution, version) of exactly one of `source` (a dir in any
    layout, wsgistack.sources) or `package` (a pinned PyPI requirement)."""
    if ("source" in entry) == ("package" in entry):
        c.fail(f"{where}.source", "set exactly one of source (a project dir) or package (a"
               " requirement on PyPI, e.g. \"httpbin==0.10.4\")")
        return None
    if "package" in entry:
        package = c.get("package", str, PACKAGE.match, "one version of a package on PyPI,"
                        " e.g. \"httpbin==0.10.4\"", entry, f"{where}.package")
        if package is None:
            return None
        pinned = PACKAGE.match(package)
        return None, package, pinned["name"], pinned["version"]
    source = c.get("source", str, lambda v: (REPO_ROOT / v).is_dir(),
                   "the app's dir on the controller (relative to the repo, or absolute)",
                   entry, f"{where}.source")
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
    return REPO_ROOT / source, None, distribution, version


def error_line(error: Exception) -> str:
    """The last line of a tool's output that says what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "error" in line.lower()), lines[-1])


def load_config(c: Checker, entry: dict[str, Any], where: str
                ) -> tuple[Path | None, str | None]:
    """The app's own config file template, and the variable naming the file to the app:
    both or neither."""
    if "config" not in entry and "config_env" not in entry:
        return None, None
    config = c.get("config", str, lambda v: (REPO_ROOT / v).is_file() and bool(
        CONFIG_NAME.match(Path(v).name.removesuffix(".j2"))),
        "a template file on the controller (jinja2), named as the file on the host plus"
        " .j2, e.g. \"apps/shop/settings.py.j2\"", entry, f"{where}.config")
    config_env = c.get("config_env", str, ENV_NAME.match, "an environment variable name",
                       entry, f"{where}.config_env")
    return (REPO_ROOT / config if config else None), config_env


def load_environment(c: Checker, entry: dict[str, Any], where: str, config_env: str | None
                     ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The entry's `env` (name: value) and `secret_env` (names): variable names, none the
    stack sets itself, none in both."""
    env = entry.get("env", {})
    secret_env = entry.get("secret_env", [])
    reserved = RESERVED_ENV | ({config_env} if config_env else set())

    def usable(name: object) -> bool:
        return isinstance(name, str) and bool(ENV_NAME.match(name)) and name not in reserved

    if not isinstance(env, dict) or not all(
            usable(name) and isinstance(value, str) for name, value in env.items()):
        c.fail(f"{where}.env", f"{env!r} is invalid: expected {{\"NAME\": \"value\"}} with"
               f" upper-case names, none of {', '.join(sorted(map(str, reserved)))}")
        env = {}
    if not isinstance(secret_env, list) or not all(map(usable, secret_env)):
        c.fail(f"{where}.secret_env", f"{secret_env!r} is invalid: expected a list of"
               f" upper-case names, none of {', '.join(sorted(map(str, reserved)))}")
        secret_env = []
    for name in sorted(set(env) & set(secret_env)):
        c.fail(f"{where}.env", f"{name} is in both env and secret_env")
    return tuple(sorted(env.items())), tuple(secret_env)


def host_group(groups: list[str] | tuple[str, ...]) -> str:
    """The environment a host belongs to: exactly one of staging or production."""
    found = [group for group in GROUPS if group in groups]
    if len(found) != 1:
        raise SettingsError([f"inventory: a host must be in exactly one of {GROUPS}, not {found}"])
    return found[0]
