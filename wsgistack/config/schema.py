"""Every setting, declared once: its default, its check, and what it means.

wsgistack.config.settings reads group data against these declarations, and the README's two
settings tables are made from them (`python -m wsgistack.config.schema` rewrites them; a unit
test fails if they drift). A group's own value, from group_data/<group>.py, shows in the
table beside the default.

This is a small table of our own rather than a pydantic model: pydantic's import and model
build cost about 100 ms on every run (measured: 0.08 s import, 0.02 s models), an eighth
of a converged host's whole no-op deploy, for checks these few lines already make.
"""

from __future__ import annotations

import ast
import ipaddress
import re
import runpy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsgistack.onhost.golive.layout import BUILD_USER
from wsgistack.onhost.golive.protocol import APP_NAME, CONFIG_NAME, DATA_DIR
from wsgistack.paths import REPO_ROOT

GROUPS = ("staging", "production")
README = REPO_ROOT / "README.md"

SERVER_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
CSP = re.compile(r"^[A-Za-z0-9 ;:/'*.@=+_-]+$")
NGINX_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
NGINX_TIME = re.compile(r"^[0-9]+(ms|s|m|h|d|w|M|y)?$")
SUPERVISOR_SIZE = re.compile(r"^[0-9]+(KB|MB|GB)?$")
MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
HEALTH_PATH = re.compile(r"^/([A-Za-z0-9._~-]+/?)*$")
STATIC_URL = re.compile(r"^/([A-Za-z0-9._~-]+/)+$")
RELEASE_DIR = re.compile(r"^(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
# A requirement pinned to one version, as pip takes it: "httpbin==0.10.4"
PACKAGE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?"
                     r"==(?P<version>[A-Za-z0-9.+!_-]+)$")
APP_STATES = ("present", "absent")
TLS_MODES = ("files", "acme")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$")
# A systemd calendar event (systemd.time(7)), e.g. "Sun *-*-* 02:30": a character outside
# these is refused here; systemd refuses a malformed one when its timer starts.
CALENDAR = re.compile(r"^[A-Za-z0-9*:,./~ -]+$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


@dataclass(frozen=True)
class Check:
    """What a value must be: its type, a test of it, and the words for what is expected."""

    kind: type | tuple[type, ...]
    test: Callable[[Any], Any]
    expected: str

    def problem(self, value: Any) -> str | None:
        """None if the value passes, else the message (which shows the value)."""
        wrong_kind = not isinstance(value, self.kind) or (
            isinstance(value, bool) and bool not in (
                self.kind if isinstance(self.kind, tuple) else (self.kind,)))
        if wrong_kind or not self.test(value):
            return f"{value!r} is invalid: expected {self.expected}"
        return None


@dataclass(frozen=True)
class FromGroup:
    """An app key whose default is the value of a group key."""

    key: str


REQUIRED = object()  # a key with no default: group data must set it


@dataclass(frozen=True)
class Key:
    """One setting. `default` is REQUIRED, a value (None: optional, unset), or, for an app
    key, FromGroup(group key). `meaning` is its README line, in markdown."""

    name: str
    default: Any
    check: Check
    meaning: str


def between(low: int, high: int, unit: str = "") -> Check:
    return Check(int, lambda v: low <= v <= high, f"{low} to {high}{unit}")


def is_network(value: object) -> bool:
    try:
        ipaddress.ip_network(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


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


def is_commands(value: list) -> bool:
    return all(isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv)
               for argv in value)


BOOL = Check(bool, lambda v: True, "True or False")
PORT = Check(int, lambda v: 1 <= v <= 65535, "a port, 1-65535")
WORKERS = between(1, 64)
BODY_SIZE = Check(str, NGINX_SIZE.match, "an nginx size like 1m")
TIMEOUT = between(1, 3600, " seconds")
# Accounts a Debian host has, or that its packages, its cloud image or this stack make: an
# app named after one would take it over (its home, shell and group), so none is an app name.
ACCOUNTS = frozenset([
    # base-passwd's users and groups
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "adm", "tty",
    "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio",
    "dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff", "users",
    "input", "kvm", "render", "sgx", "netdev", "crontab", "ssl-cert",
    # services' accounts, the users cloud images log in as, and this stack's own
    "messagebus", "sshd", "postgres", "supervisor", "nginx", "certbot", "polkitd", "admin",
    "debian", "ubuntu", "wsgistack", BUILD_USER])


def is_app_name(name: str) -> bool:
    return bool(APP_NAME.match(name)) and name not in ACCOUNTS \
        and not name.startswith("systemd-")


NAME = Check(str, is_app_name, "lowercase letters, digits and -, at most 31, and no account"
             " a Debian host or this stack has (root, www-data, postgres, admin, sudo, ...)")
CONTROLLER_FILE = Check(str, bool, "a file path on the controller")
COMMANDS = Check(list, is_commands, "a list of commands, each a list of arguments, e.g."
                 " [[\"django-admin\", \"migrate\"]]")

GROUP_KEYS = (
    Key("server_names", REQUIRED, Check(list, lambda v: bool(v) and all(
        isinstance(n, str) and SERVER_NAME.match(n) for n in v), "a non-empty list of host names"),
        "nginx `server_name`; the first is used in URLs and health checks"),
    Key("site_name", "wsgistack", Check(str, APP_NAME.match, "lowercase letters, digits and -"),
        "the nginx site file's name"),
    Key("http_port", 80, PORT, "nginx's HTTP port, IPv4 and IPv6: redirects to HTTPS only"),
    Key("https_port", 443, PORT, "nginx's HTTPS port, IPv4 and IPv6 (TLS 1.2 and 1.3,"
        " Mozilla \"intermediate\")"),
    Key("tls_mode", "files", Check(str, lambda v: v in TLS_MODES,
                                   f"one of {', '.join(TLS_MODES)}"),
        "where the site's certificate comes from: `files`, the pair below; `acme`, certbot"
        " on each web host obtains and renews one for `server_names` from `acme_directory`"
        " (see \"Certificates from an ACME CA\")"),
    Key("acme_directory", LETS_ENCRYPT, Check(str, HTTPS_URL.match, "an https:// URL"),
        "with `acme`: the CA's ACME directory (a sandbox with `ca=1` sets its own)"),
    Key("acme_email", None, Check(str, EMAIL.match, "an email address"),
        "with `acme`: the ACME account's contact address, for the CA's notices; required"),
    Key("acme_ca_certificate", None, CONTROLLER_FILE, "with `acme`: the CA certificate that"
        " signs the ACME directory's HTTPS, if no public CA does (a private CA's; a sandbox"
        " with `ca=1` sets its own)"),
    Key("tls_certificate", None, CONTROLLER_FILE, "the certificate file on the controller;"
        " unset: `<secrets_dir>/<group>/tls/<site_name>.crt`, made self-signed once if"
        " missing where `generate_secrets` is on (never in production)"),
    Key("tls_certificate_key", None, CONTROLLER_FILE, "its private key (uploaded 0600, root"
        " only); unset: `.key` beside the kept certificate. Set both or neither"),
    Key("hsts", False, BOOL, "send `Strict-Transport-Security` (browsers then refuse plain"
        " HTTP for `hsts_max_age`)"),
    Key("hsts_max_age", 63072000, Check(int, lambda v: 0 <= v <= 10**9, "seconds, 0 or more"),
        "its `max-age`, seconds"),
    Key("client_max_body_size", "1m", BODY_SIZE, "largest request body nginx accepts"
        " (an app's `max_body_size` for its own)"),
    Key("content_security_policy", "default-src 'self'; frame-ancestors 'none'; base-uri"
        " 'none'; form-action 'self'; object-src 'none'", Check(
            str, CSP.match, "a Content-Security-Policy value (no quotes or newlines)"),
        "the `Content-Security-Policy` header on every answer"),
    Key("health_check_from", [], Check(list, lambda v: all(map(is_network, v)),
                                       "a list of addresses or networks, e.g. [\"10.0.0.0/8\"]"),
        "addresses or networks (e.g. a load balancer's) that may ask an app's own health path"
        " (e.g. `<prefix>/healthz`) besides the host itself"),
    Key("static_expires", "7d", Check(str, NGINX_TIME.match, "an nginx time like 7d"),
        "browser cache time for static files (nginx `expires`)"),
    Key("gunicorn_workers", 2, WORKERS, "gunicorn workers per app (an app's `workers` for"
        " its own)"),
    Key("gunicorn_timeout", 30, TIMEOUT, "seconds a request may take before gunicorn kills"
        " its worker (an app's `timeout` for its own)"),
    Key("gunicorn_graceful_timeout", 30, TIMEOUT, "seconds workers get to finish in-flight"
        " requests on stop or reload (supervisor waits 10 s more)"),
    Key("log_max_bytes", "10MB", Check(str, SUPERVISOR_SIZE.match, "a size like 10MB"),
        "supervisor rotates an app's stdout and stderr logs at this size"),
    Key("log_backups", 5, between(0, 100), "rotated logs kept of each"),
    Key("rollout_batch_size", 1, Check(int, lambda v: v >= 1, "1 or more hosts"),
        "hosts of a group that go live at a time; each batch must pass its health checks"
        " before the next starts, and the first failure stops the rollout"),
    Key("health_timeout", 30, between(1, 600, " seconds"), "seconds a host's health checks"
        " wait for a healthy answer before failing the host"),
    Key("keep_releases", 5, between(1, 100), "releases kept per app in"
        " `/opt/<app>/releases/` (the live one always), for `rollback.py`"),
    Key("keep_backups", 5, between(0, 1000), "database backups kept per app in"
        " `/var/lib/<app>/backups/`, one taken before each release switch"),
    Key("database_backups", 14, between(1, 1000), "daily dumps kept per app on an"
        " environment's database host (`/var/lib/wsgistack/database-backups/`)"),
    Key("backup_full_on", "Sun *-*-* 02:30", Check(str, CALENDAR.match, "a systemd calendar"
        " event like \"Sun *-*-* 02:30\""), "when pgBackRest takes a full backup of an"
        " environment's database to its backup host"),
    Key("backup_diff_on", "Mon..Sat *-*-* 02:30", Check(str, CALENDAR.match, "a systemd"
        " calendar event like \"Mon..Sat *-*-* 02:30\""), "when pgBackRest takes a"
        " differential backup (what changed since the last full one)"),
    Key("backup_app_data_on", "hourly", Check(str, CALENDAR.match, "a systemd calendar event"
        " like \"hourly\""), "when each web host sends its apps' data (SQLite databases,"
        " uploads: `/var/lib/<app>/`) to the backup host; also before each release switch"),
    Key("backup_app_data_days", 30, between(1, 3650, " days"), "days each app's data is kept"
        " on the backup host (its newest copy always): older copies are forgotten after each"
        " timed run"),
    Key("backup_full_kept", 2, between(1, 100), "full backups kept on the backup host, with"
        " the WAL to recover to any moment since the oldest"),
    Key("backup_archive_timeout", 30, between(5, 60, " seconds"), "seconds at most before"
        " PostgreSQL hands a partly filled WAL segment to the archive: the most a database"
        " host's loss may cost"),
    Key("backup_port", 2222, PORT, "the backup host's SFTP port for its senders: an sshd of"
        " its own, firewalled to the environment's hosts (the host's own sshd keeps its"
        " port, and refuses the senders' accounts)"),
    Key("secrets_file", None, Check(str, bool, "a file on the controller"), "the stack's"
        " secrets, encrypted (`python -m wsgistack.config.vault`; safe to commit), read after"
        " the variables and before `secrets_dir`; unset: `secrets/<group>.toml` in this repo"),
    Key("secrets_dir", "~/.config/wsgistack/secrets", Check(str, bool, "a directory on the"
        " controller"), "on the controller: app secrets are read from"
        " `<dir>/<group>/<app>.<name>` (e.g. `flasktodo.secret_key`), after the variable"
        " `<GROUP>_<APP>_<NAME>` (e.g. `PRODUCTION_FLASKTODO_SECRET_KEY`) and the"
        " `secrets_file`; the key of that file is `<dir>/<group>/secrets_key`"
        " (`$<GROUP>_SECRETS_KEY` first)"),
    Key("generate_secrets", True, BOOL, "make a missing secret once and keep it in"
        " `secrets_dir` (never in production)"),
    Key("apps", REQUIRED, Check(list, bool, "a non-empty list of app entries"),
        "the WSGI apps on each host: one entry each, with the keys below"),
)

APP_KEYS = (
    Key("name", REQUIRED, NAME, "the app's unix user, supervisor program, `/opt/<name>`,"
        " `/etc/<name>`, `/var/lib/<name>`"),
    Key("source", None, Check(str, lambda v: (REPO_ROOT / v).is_dir(), "the app's dir on the"
        " controller (relative to the repo, or absolute)"),
        "the app's dir, any layout: a project (`pyproject.toml`, `setup.py`) or a plain tree"
        " like `startproject` makes. Set `source` or `package`"),
    Key("package", None, Check(str, PACKAGE.match, "one version of a package on PyPI, e.g."
                               " \"httpbin==0.10.4\""),
        "a pinned requirement on PyPI, e.g. `\"httpbin==0.10.4\"`"),
    Key("wsgi", REQUIRED, Check(str, is_wsgi_target, "module:name or module:factory(literal"
                                " arguments), as gunicorn takes it"),
        "gunicorn's app: `module:name` or `module:factory(literal arguments)`"),
    Key("prefix", REQUIRED, Check(str, PREFIX.match, "a URL path like /app, no trailing"
                                  " slash"),
        "the URL path the app is mounted at (its `SCRIPT_NAME`)"),
    Key("port", REQUIRED, Check(int, lambda v: 1024 <= v <= 65535, "a port, 1024-65535"),
        "gunicorn's port, on 127.0.0.1"),
    Key("config", None, Check(str, lambda v: (REPO_ROOT / v).is_file() and CONFIG_NAME.match(
        Path(v).name.removesuffix(".j2")), "a template file on"
                              " the controller (jinja2), named as the file on the host plus"
                              " .j2, e.g. \"apps/shop/settings.py.j2\""),
        "the template of the app's own config file, landing at `/etc/<name>/<file less"
        " .j2>`; set with `config_env`"),
    Key("config_env", None, Check(str, ENV_NAME.match, "an environment variable name"),
        "the variable that names that file to the app, e.g. `\"FLASKTODO_CONFIG\"`"),
    Key("database_env", None, Check(str, ENV_NAME.match, "an environment variable name"),
        "where its environment has a database host: the variable that gets the URL of the"
        " app's own PostgreSQL role and database (e.g. `\"DATABASE_URL\"`); its password is"
        " the secret `DATABASE_PASSWORD`. Unset, or no database host: none"),
    Key("workers", FromGroup("gunicorn_workers"), WORKERS, "its gunicorn workers"),
    Key("max_body_size", FromGroup("client_max_body_size"), BODY_SIZE, "the largest request"
        " body nginx lets through to it"),
    Key("timeout", FromGroup("gunicorn_timeout"), TIMEOUT, "seconds a request may take"
        " before gunicorn kills its worker"),
    Key("env", {}, Check(dict, lambda v: all(
        isinstance(name, str) and ENV_NAME.match(name) and isinstance(value, str)
        for name, value in v.items()), "{\"NAME\": \"value\"} with upper-case names"),
        "the app's plain environment variables, `{\"NAME\": \"value\"}`"),
    Key("secret_env", [], Check(list, lambda v: all(
        isinstance(name, str) and ENV_NAME.match(name) for name in v),
        "a list of upper-case names"),
        "variables whose values are secrets, `[\"NAME\"]`: read from `$<GROUP>_<APP>_<NAME>`,"
        " the stack's encrypted `secrets_file` (`<app>.<NAME>`) or"
        " `<secrets_dir>/<group>/<app>.<name>`"),
    Key("health_path", "/", Check(str, HEALTH_PATH.match, "a path under the prefix like"
                                  " /healthz"),
        "what the health checks ask under the prefix (see \"An app's health\")"),
    Key("data_dirs", [], Check(list, lambda v: all(
        isinstance(name, str) and DATA_DIR.match(name) and name != "backups" for name in v),
        "a list of dir names, e.g. [\"packages\"]"),
        "dirs the app needs in its data dir, `/var/lib/<name>/<dir>` (e.g. `[\"uploads\"]`):"
        " made by its user (0750) and kept across releases, like `backups/`"),
    Key("build_commands", [], COMMANDS, "run once per installed release, as the build user"
        " `wsgistack-build` in the app's group (never as the app's user), writing into"
        " `$WSGISTACK_BUILD_DIR` (copied into the release's `build/`), e.g."
        " `[[\"django-admin\", \"collectstatic\", \"--noinput\"]]`"),
    Key("release_commands", [], COMMANDS, "run as the app's user with the new release, its"
        " config and environment, after the database backup and before the switch; a"
        " failure switches nothing. E.g. `[[\"django-admin\", \"migrate\", \"--noinput\"]]`"),
    Key("static", {}, Check(dict, lambda v: all(
        isinstance(url, str) and STATIC_URL.match(url) and isinstance(folder, str)
        and RELEASE_DIR.match(folder) for url, folder in v.items()),
        "{\"/static/\": \"package/static\"}: URL paths under the prefix, ending in /, and dirs"
        " in the release's installed packages or build/"),
        "URL paths under the prefix that nginx serves itself, from dirs in the release's"
        " packages or, as `build/...`, in what its build commands made, e.g."
        " `{\"/static/\": \"flasktodo/static\"}`"),
    Key("state", "present", Check(str, lambda v: v in APP_STATES,
                                  f"one of {', '.join(APP_STATES)}"),
        "`\"absent\"` removes the app (program, site locations, code, config), keeping its"
        " data; such an entry needs only `name`"),
    Key("purge", False, BOOL, "with `\"state\": \"absent\"`: remove its data and user too"),
)

GROUP_KEY = {key.name: key for key in GROUP_KEYS}
APP_KEY = {key.name: key for key in APP_KEYS}


def group_files() -> dict[str, dict[str, Any]]:
    """What group_data/all.py and each group's file set."""
    def read(name: str) -> dict[str, Any]:
        values = runpy.run_path(str(REPO_ROOT / "group_data" / f"{name}.py"))
        return {k: v for k, v in values.items() if not k.startswith("_")}

    return {name: read(name) for name in ("all", *GROUPS)}


def shown(value: Any, whole: bool = True) -> str:
    """A value as a table cell, in Python's own spelling; where not `whole` and too long for
    a cell, just "set"."""
    text = repr(value).replace("|", "\\|")
    return f"`{text}`" if whole or len(text) <= 48 else "set"


def default_cell(key: Key, files: dict[str, dict[str, Any]]) -> str:
    if key.default is REQUIRED:
        cell = "required"
    elif isinstance(key.default, FromGroup):
        cell = f"`{key.default.key}`"
    elif key.default is None:
        cell = "unset"
    else:
        cell = shown(key.default)
    overrides = [f"{name}.py: {shown(values[key.name], whole=False)}"
                 for name, values in files.items() if key.name in values]
    return cell + (f" ({'; '.join(overrides)})" if overrides else "")


def table(keys: tuple[Key, ...], files: dict[str, dict[str, Any]]) -> str:
    rows = [f"| `{key.name}` | {default_cell(key, files)} | {key.meaning} |" for key in keys]
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *rows])


def readme_tables() -> dict[str, str]:
    """The README's generated blocks, by marker name."""
    files = group_files()
    return {"settings": table(GROUP_KEYS, files),
            "app keys": table(APP_KEYS, {})}


def block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}: made by python -m wsgistack.config.schema -->\n)(.*?)"
                      rf"(<!-- end of {name} -->)", re.S)


def with_tables(readme: str) -> str:
    """The README text with its generated blocks made anew."""
    for name, text in readme_tables().items():
        readme, found = block(name).subn(lambda m, t=text: f"{m[1]}{t}\n{m[3]}", readme)
        if found != 1:
            raise SystemExit(f"README.md: the block '{name}' must appear exactly once")
    return readme


if __name__ == "__main__":
    README.write_text(with_tables(README.read_text()))
