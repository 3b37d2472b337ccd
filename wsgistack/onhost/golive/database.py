"""The database host: PostgreSQL's settings, pg_hba.conf and TLS pair made live (parsed by
postgres -C first, put back if refused), each app's role and database, the daily dumps."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import PurePosixPath

from .backups import rotate_backups
from .files import Refused, Staged, content_of, parse_expect, record, run, say, tail
from .layout import (
    candidate,
    database_backups,
    database_dir,
    database_unit,
    postgresql_include,
)
from .protocol import APP_NAME, PG_VERSION
from .users import as_user, read_file_as_user, user_options, write_file_as_user

POSTGRES = "postgres"
# A SCRAM-SHA-256 verifier as PostgreSQL stores it: what apps.json holds, never a password.
VERIFIER = re.compile(r"^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def database_apps(path: PurePosixPath) -> list[tuple[str, str]]:
    """(name, verifier) of each app in apps.json: its role and database are its name."""
    with open(path) as file:
        entries = json.load(file)["apps"]
    apps = [(entry["name"], entry["verifier"]) for entry in entries]
    for name, verifier in apps:
        if not APP_NAME.match(name) or not VERIFIER.match(verifier):
            raise Refused(f"{path}: the entry of {name!r} is not an app name and a SCRAM verifier")
    return apps


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def psql(sql: str) -> subprocess.CompletedProcess[str]:
    """SQL on psql's stdin (never in argv), as postgres, in its maintenance database."""
    return subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           "-d", "postgres", "-f", "-"], input=sql, capture_output=True,
                          text=True, check=False, cwd="/", **user_options(POSTGRES))


def roles_sql(apps: list[tuple[str, str]]) -> str:
    """Each app's role (login, nothing more, its verifier as password) and its database
    (owned by it, closed to every other role)."""
    lines = []
    for name, verifier in apps:
        role, text = identifier(name), literal(name)
        lines += [
            f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS"
            f" (SELECT FROM pg_roles WHERE rolname = {text}) \\gexec",
            f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            f" NOBYPASSRLS PASSWORD {literal(verifier)};",
            f"SELECT 'CREATE DATABASE {role} OWNER {role}' WHERE NOT EXISTS"
            f" (SELECT FROM pg_database WHERE datname = {text}) \\gexec",
            f"ALTER DATABASE {role} OWNER TO {role};",
            f"REVOKE ALL ON DATABASE {role} FROM PUBLIC;",
        ]
    return "\n".join(lines) + "\n"


def roles_check_sql(apps: list[tuple[str, str]]) -> str:
    """One row per app: name|login|password|database|owner|closed, each t or f."""
    rows = ", ".join(f"({literal(name)}, {literal(verifier)})" for name, verifier in apps)
    return (
        "SELECT n.name, coalesce(r.rolcanlogin AND NOT r.rolsuper, false),"
        " coalesce(r.rolpassword = n.verifier, false), d.datname IS NOT NULL,"
        " coalesce(d.datdba = r.oid, false),"
        " coalesce(NOT has_database_privilege('public', d.oid, 'CONNECT'), false)"
        f" FROM (VALUES {rows}) AS n(name, verifier)"
        " LEFT JOIN pg_authid r ON r.rolname = n.name"
        " LEFT JOIN pg_database d ON d.datname = n.name ORDER BY n.name;\n")


ROLE_FACTS = ("cannot log in as it should", "has another password", "has no database",
              "does not own its database", "has a database open to other roles")


def roles_drift(apps: list[tuple[str, str]]) -> list[str]:
    """What differs from apps.json, one line each, naming apps, never a verifier."""
    if not apps:
        return []
    checked = psql(roles_check_sql(apps))
    if checked.returncode != 0:
        return [f"PostgreSQL did not answer: {tail(checked.stderr, 1)}"]
    drift = []
    for line in checked.stdout.split():
        name, *facts = line.split("|")
        drift += [f"{name} {what}" for what, fact in zip(ROLE_FACTS, facts, strict=True)
                  if fact != "t"]
    return drift


def database_check(root: PurePosixPath) -> str:
    """"ok" when each PostgreSQL cluster's conf.d includes our settings and every app of
    the live apps.json has its role and database as declared; else what differs. A read
    (conf.d's as postgres): no lock, nothing changed."""
    try:
        versions = sorted(name for name in os.listdir(root / "etc/postgresql")
                          if PG_VERSION.match(name))
        includes = [postgresql_include(version, root) for version in versions]
        found = as_user(POSTGRES, lambda: [read_file_as_user(path) for path in includes])
        apps = database_apps(database_dir(root) / "apps.json")
    except (OSError, ValueError, KeyError, Refused) as error:
        return f"not set up yet: {error}"
    wrong = [f"{path} does not include our settings"
             for path, text in zip(includes, found, strict=True)
             if text != include_line(root).decode()]
    return "\n".join(wrong + roles_drift(apps)) or "ok"


def cluster_problem(version: str, root: PurePosixPath) -> str:
    """Why the cluster's config (ours included) does not parse, or "": `postgres -C`
    reads it as a start would, and runs beside a live server."""
    binary = root / f"usr/lib/postgresql/{version}/bin/postgres"
    checked = run([str(binary), "-D", str(root / f"var/lib/postgresql/{version}/main"),
                   "-c", f"config_file={root / f'etc/postgresql/{version}/main/postgresql.conf'}",
                   "-C", "listen_addresses"], cwd="/", **user_options(POSTGRES))
    return "" if checked.returncode == 0 else (
        tail(checked.stderr, 5) or f"postgres -C exited {checked.returncode}")


def hba_problem() -> str:
    """Errors PostgreSQL found in the pg_hba.conf it has read (it keeps the previous rules
    when a reload finds any)."""
    checked = psql("SELECT line_number || ': ' || error FROM pg_hba_file_rules"
                   " WHERE error IS NOT NULL;\n")
    return tail(checked.stdout + checked.stderr, 5)


def include_line(root: PurePosixPath) -> bytes:
    """What the cluster's conf.d/wsgistack.conf holds: our settings, from root's dir."""
    return (f"# Managed by wsgistack: its settings, in root's {database_dir(root)}.\n"
            f"include '{database_dir(root) / 'postgresql.conf'}'\n").encode()


def include_our_settings(version: str, root: PurePosixPath) -> bytes | None:
    """Make the cluster's conf.d include our settings, as postgres (conf.d is postgres's
    own dir: root never writes there). Returns what the file held before (None: nothing),
    for put_back_include; an unchanged file is left alone (returns the same bytes)."""
    path = postgresql_include(version, root)

    def swap() -> str | None:
        before = read_file_as_user(path)
        if before != include_line(root).decode():
            write_file_as_user(path, include_line(root), 0o644)
        with contextlib.suppress(FileNotFoundError):  # where earlier deploys staged it
            os.unlink(candidate(path))
        return before

    before = as_user(POSTGRES, swap)
    return None if before is None else str(before).encode()


def put_back_include(version: str, root: PurePosixPath, before: bytes | None) -> None:
    """conf.d/wsgistack.conf as it was before include_our_settings, as postgres."""
    path = postgresql_include(version, root)

    def put_back() -> None:
        if before is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            write_file_as_user(path, before, 0o644)

    as_user(POSTGRES, put_back)


def apply_database(version: str, root: PurePosixPath, expected: dict[PurePosixPath, str]
                   ) -> None:
    """Make the candidate settings, pg_hba.conf, TLS pair and apps.json live, and the
    cluster's conf.d include the settings: the config parsed first, then PostgreSQL
    restarted (our settings changed, or it is down) or reloaded; put back as they were if
    PostgreSQL refuses them. Then each app's role and database as apps.json declares."""
    if not PG_VERSION.match(version):
        raise Refused(f"{version!r} is not a PostgreSQL major version")
    unit = database_unit(root)
    settings = unit.files[0]
    cluster = f"postgresql@{version}-main"
    staged = Staged.verified(unit, expected)
    changed = content_of(settings) != content_of(staged.new(settings))
    try:
        staged.make_live()
        before = include_our_settings(version, root)
        changed = changed or before != include_line(root)
        action = "restart" if changed or run(["systemctl", "is-active", "-q", cluster]
                                             ).returncode != 0 else "reload"
        problem = cluster_problem(version, root)
        if not problem:
            applied = run(["systemctl", action, cluster])
            problem = (tail(applied.stderr, 5) or f"systemctl {action} failed") \
                if applied.returncode != 0 else hba_problem()
        if problem:
            staged.put_back()
            put_back_include(version, root, before)
            run(["systemctl", action, cluster])
            raise Refused(f"PostgreSQL {version} refused the candidate settings; the previous"
                          f" ones are back:\n{problem}")
    finally:
        staged.clean_up()
    apps = database_apps(unit.files[4])
    applied = psql(roles_sql(apps))
    if applied.returncode != 0:
        raise Refused(f"the apps' roles and databases: {tail(applied.stderr, 5)}")
    record(unit)
    say(f"PostgreSQL {version}: settings live ({action}), roles and databases of"
        f" {', '.join(name for name, _v in apps) or 'no app'}")


def backup_databases(root: PurePosixPath, keep: int) -> None:
    """The daily dump of each app's database (pg_dump's custom format), keeping the newest
    `keep` of each: run as postgres by wsgistack-database-backup.timer, in postgres's own
    directory."""
    directory = database_backups(root)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    failed = []
    for name, _verifier in database_apps(database_dir(root) / "apps.json"):
        target = directory / f"{name}-{stamp}.dump"
        temporary = target.with_name(target.name + ".tmp")
        dumped = run(["pg_dump", "--format=custom", f"--file={temporary}", "--dbname", name],
                     cwd="/")
        if dumped.returncode != 0:
            failed.append(f"{name}: {tail(dumped.stderr, 2)}")
            continue
        os.replace(temporary, target)
        rotate_backups(directory, f"{name}-", keep)
        say(f"dumped {name} to {target}")
    if failed:
        raise Refused("pg_dump failed for " + "; ".join(failed))


def database(root: PurePosixPath, version: str, expect: list[str]) -> None:
    apply_database(version, root, parse_expect(expect))


def check(root: PurePosixPath) -> None:
    say(database_check(root))


def remove_database(root: PurePosixPath, version: str, purge: bool) -> None:
    """destroy: with purge, each app's database and role dropped; then the cluster no longer
    includes our settings, and is restarted without them (where it runs)."""
    apps_file = database_dir(root) / "apps.json"
    apps = database_apps(apps_file) if os.path.exists(apps_file) else []
    if purge and apps:
        dropped = psql("".join(f"DROP DATABASE IF EXISTS {identifier(name)} WITH (FORCE);\n"
                               f"DROP ROLE IF EXISTS {identifier(name)};\n"
                               for name, _ in apps))
        if dropped.returncode != 0:
            raise Refused("dropping the apps' databases failed: "
                          + tail(dropped.stdout + dropped.stderr, 5))
    put_back_include(version, root, None)
    run(["systemctl", "try-restart", f"postgresql@{version}-main.service"])
    say(f"PostgreSQL {version} no longer has our settings"
        + (f"; dropped {', '.join(name for name, _ in apps)}" if purge and apps else ""))
