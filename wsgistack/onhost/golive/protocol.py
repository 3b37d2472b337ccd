"""golive's steps, declared once: each step's arguments, from which both golive's command
line parser (on the host) and the deploy's command for the step (on the controller,
`command()`) follow, and the host function that carries the step out.

A step's host function is called with the host's root and every argument by its name;
what it prints is the step's output, a Refused says why it did not happen (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .layout import BUILD_USER

# Names that become paths on a host, declared once: each step's arguments are checked by
# them, and wsgistack.config.settings checks group data by them.
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # user, program, /opt/<app>
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")  # releases/<version>
# a dir of the app's own in /var/lib/<app>/ (one name, no path): backups, or its entry's
DATA_DIR = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# an app's own config file in /etc/<app>/: not a file the stack writes there
CONFIG_NAME = re.compile(r"^(?!gunicorn\.conf\.py$|env$)[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
PG_VERSION = re.compile(r"^[0-9]{2}$")  # Debian's cluster dirs: /etc/postgresql/15/main
GROUP = re.compile(r"^[a-z]{1,30}$")  # an environment: its pgBackRest stanza, backup dir


def account_comment(name: str) -> str:
    """The comment (GECOS) of every account the deploy makes for an app: an account
    without it is not the deploy's to change or remove."""
    return f"wsgistack app {name}"

TEXT, NUMBER, FLAG, ARGV, EXPECT, REST = "text", "number", "flag", "argv", "expect", "rest"


@dataclass(frozen=True)
class Arg:
    """One argument of a step: `name` is the host function's keyword and, unless
    `positional`, the option (`--name-with-dashes`, or `option`)."""

    name: str
    help: str = ""
    kind: str = TEXT  # TEXT, NUMBER, FLAG (on or off), ARGV (a JSON argv), EXPECT
    #                   (FILE=SHA256 pairs), REST (the words after `--`)
    pattern: re.Pattern[str] | None = None  # a TEXT's form, checked on both sides
    positional: bool = False
    required: bool = False
    repeated: bool = False  # the option once per value
    default: object = None
    option: str = ""

    @property
    def flag(self) -> str:
        return self.option or "--" + self.name.replace("_", "-")

    def check(self, value: object) -> str:
        """`value` as one word of the command line; a TEXT must match its pattern."""
        word = json.dumps(list(value)) if self.kind == ARGV else str(value)
        if self.pattern is not None and not self.pattern.match(word):
            raise ValueError(f"{word!r} is not a valid {self.name.replace('_', ' ')}")
        return word

    def words(self, value: object) -> list[str]:
        """The command line's words for `value` (none for an unset option)."""
        if self.kind == FLAG:
            return [self.flag] if value else []
        if self.kind == REST:
            return ["--", *map(str, value)]
        if self.positional:
            return [self.check(value)]
        if value is None or ((self.repeated or self.kind == EXPECT) and not value):
            return []
        if self.kind == EXPECT:
            return [self.flag, *map(str, value)]
        values = value if self.repeated else [value]
        return [word for each in values for word in (self.flag, self.check(each))]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """This argument in golive's parser of its step."""
        options: dict[str, object] = {"help": self.help}
        if self.kind == FLAG:
            options["action"] = "store_true"
        elif self.kind == REST:
            options.update(nargs="+", metavar="-- ARGV")
        elif self.kind == EXPECT:
            options.update(nargs="+", metavar="FILE=SHA256")
        else:
            options["type"] = {NUMBER: int, ARGV: argv}.get(self.kind, self.text_type())
            if self.repeated:
                options.update(action="append", default=list(self.default or []))
            elif self.default is not None:
                options["default"] = self.default
        if self.positional or self.kind == REST:
            parser.add_argument(self.name, **options)
        else:
            parser.add_argument(self.flag, dest=self.name, required=self.required,
                                **options)

    def text_type(self) -> Callable[[str], str]:
        def text(word: str) -> str:
            try:
                return self.check(word)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return text


def argv(word: str) -> list[str]:
    """A command as one JSON list of strings."""
    value = json.loads(word)
    if not (isinstance(value, list) and value and all(isinstance(arg, str) for arg in value)):
        raise ValueError(f"{word!r} is not a JSON list of strings")
    return value


@dataclass(frozen=True)
class Step:
    name: str
    run: str  # the host function: "module:function" in this package
    help: str
    args: tuple[Arg, ...] = ()
    locked: bool = True  # holds the host's deploy lock, and finishes if the caller goes
    recorded: bool = True  # a locked step is added to the host's history
    usage: str = field(default="", compare=False)  # what `golive --help` says of it

    def command(self, **values: object) -> list[str]:
        """The step's words after `golive`, from its arguments by name: an unknown or a
        missing required one is a bug of the caller's."""
        known = {arg.name for arg in self.args}
        if set(values) - known:
            raise TypeError(f"golive {self.name} takes no {sorted(set(values) - known)}")
        missing = [arg.name for arg in self.args if arg.required and values.get(arg.name) in
                   (None, [], ())]
        if missing:
            raise TypeError(f"golive {self.name} needs {missing}")
        return [self.name, *(word for arg in self.args
                             for word in arg.words(values.get(arg.name, arg.default)))]


APP = Arg("app", "the app's name", pattern=APP_NAME, positional=True, required=True)
APP_VERSION = Arg("version", "the release's version", pattern=VERSION, positional=True,
                  required=True)
SITE = Arg("site", "the nginx site's name", pattern=APP_NAME, positional=True, required=True)
CONFIG = (Arg("config", "the app's own config file in /etc/APP/, if it has one",
              pattern=CONFIG_NAME),
          Arg("config_env", "the variable naming it to the app"))
PREFIX = Arg("prefix", "the app's URL prefix (SCRIPT_NAME)", required=True)
EXPECTED = Arg("expect", "each candidate and the SHA-256 this deploy wrote", kind=EXPECT,
               required=True)
STANZA = Arg("stanza", "the environment: pgBackRest's stanza", pattern=GROUP, positional=True,
             required=True)
# A restore's target: "latest" (every archived WAL), or a time PostgreSQL reads
TARGET = re.compile(r"^(latest|[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}"
                    r"(\.[0-9]{1,6})?([+-][0-9]{2}(:?[0-9]{2})?|Z| UTC)?)$")
BACKUP_KINDS = ("full", "diff")  # pgBackRest's backups the timers take
BACKUP_KIND = re.compile(rf"^({'|'.join(BACKUP_KINDS)})$")
KEEP_BACKUPS = Arg("keep_backups", "backups kept", kind=NUMBER, required=True)
TO = Arg("to", "a time, or latest (every write the backup host holds)", pattern=TARGET,
         required=True)


PATH = re.compile(r"^/[A-Za-z0-9._@+/-]+$")  # a path of ours destroy removes
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian Policy 5.6.1
# Packages whose purge takes data with it: PostgreSQL's server drops its clusters. Without
# purge they are removed (dpkg's "rc": the cluster and its config stay).
HOLDS_DATA = re.compile(r"^postgresql-[0-9]+$")


def release_commands(required: bool) -> Arg:
    return Arg("release_commands", "run as the app's user (a JSON argv)", kind=ARGV,
               repeated=True, required=required, option="--release-command")


STEPS = {step.name: step for step in (
    Step("switch", "switch:switch", "make an app's config and release live", (
        APP, APP_VERSION, *CONFIG, PREFIX,
        Arg("workers", "gunicorn's workers", kind=NUMBER, required=True),
        Arg("graceful_timeout", "seconds old workers may finish their requests", kind=NUMBER,
            required=True),
        Arg("keep_releases", "complete releases kept", kind=NUMBER, required=True),
        KEEP_BACKUPS, EXPECTED, release_commands(False),
        Arg("shared_database", "the environment's data: migrated once for all hosts, not here",
            kind=FLAG)),
        usage="Verify the candidates are the ones this deploy wrote, load-check the release"
              " with them as the app's user; on a new release, back up the data and run the"
              " release commands; make config and `current` live, swap gunicorn gracefully"
              " (gunicorn-herder), prune old releases. A failure switches nothing, or puts"
              " the previous config and release back."),
    Step("migrate", "switch:migrate", "back up the environment's database and run the release"
         " commands, once for all its hosts", (
             APP, APP_VERSION, *CONFIG, PREFIX, KEEP_BACKUPS,
             Arg("database_env", "the variable holding its URL"), release_commands(True)),
         usage="Once, on one host, before any host switches: pg_dump, then the release"
               " commands with the new release and its candidate config."),
    Step("build", "build:build", "run a new release's build commands", (
        APP, APP_VERSION, *CONFIG, PREFIX,
        Arg("build_commands", "run as the build user (a JSON argv)", kind=ARGV, repeated=True,
            required=True, option="--build-command"),
        Arg("build_user", f"who runs them, in the app's group (default {BUILD_USER})",
            default=BUILD_USER)),
        usage="As the build user (never the app's) in a fresh dir of its own; what they made"
              " (files and dirs, within the build limits) is copied into the release's"
              " root-owned build/."),
    Step("program", "program:program", "make an app's supervisor program live",
         (APP, EXPECTED), usage="Parsed by supervisor's own parser, then reread, update."),
    Step("site", "site:site", "make the nginx site and TLS pair live", (
        SITE, EXPECTED,
        Arg("acme", "the pair is certbot's (golive certificate), not a candidate", kind=FLAG)),
        usage="nginx -t on a copy of nginx's config with the candidates, then live, enabled,"
              " reloaded; with --acme a self-signed placeholder pair until certbot's."),
    Step("certificate", "certificate:certificate", "obtain the site's certificate from an ACME"
         " CA where due, and make it live", (
             SITE,
             Arg("names", "a name the certificate is for", repeated=True, required=True,
                 option="--name"),
             Arg("directory", "the CA's ACME directory URL", required=True),
             Arg("email", "the account's contact", required=True),
             Arg("ca_bundle", "CA certificates for the directory's HTTPS")),
         usage="Where it is missing, from another CA, for other names or within 30 days of"
               " expiring (HTTP-01); a refusal names the name that failed, in one line."),
    Step("install-certificate", "certificate:install", "make certbot's renewed certificate"
         " live (certbot's deploy hook)", (SITE,)),
    Step("database", "database:database", "make PostgreSQL's settings and roles live", (
        Arg("version", "PostgreSQL's major version", pattern=PG_VERSION, positional=True,
            required=True), EXPECTED),
        usage="Parsed by postgres -C first; restarted when the settings change, else"
              " reloaded; put back if refused; then each app's role and database."),
    Step("database-remove", "database:remove_database", "take our settings off PostgreSQL"
         " (destroy)", (Arg("version", "PostgreSQL's major version", pattern=PG_VERSION,
                            positional=True, required=True),
                        Arg("purge", "drop the apps' databases and roles too", kind=FLAG)),
         usage="The cluster's conf.d include removed as postgres; the cluster restarted."),
    Step("database-check", "database:check", "\"ok\", or how the roles differ from apps.json",
         locked=False),
    Step("database-backup", "database:backup_databases", "dump each app's database (as"
         " postgres, its daily timer)",
         (Arg("keep", "dumps kept of each", kind=NUMBER, required=True),), locked=False),
    Step("backup-store", "offsite:backup_store", "make the backup host's SFTP-only accounts"
         " live", (EXPECTED,), usage="Checked by sshd -t, then sshd reloaded; put back if"
         " refused."),
    Step("archiving", "offsite:archiving", "make pgBackRest's config live: WAL and backups to"
         " the backup host", (STANZA, EXPECTED, Arg("remount", "mount the repository again:"
                                                    " its unit changed", kind=FLAG)),
         usage="The repository mounted, the stanza made once and checked, a first full"
               " backup where there is none; put back if refused."),
    Step("take-backup", "offsite:take_backup", "a pgBackRest backup to the backup host, now"
         " (its timers)", (STANZA, Arg("kind", "full or diff", pattern=BACKUP_KIND,
                                       required=True))),
    Step("archive-check", "offsite:archive_check", "how archiving to the backup host fares"
         " (JSON)", locked=False),
    Step("app-backups", "appdata:app_backups", "make restic's config live: the apps' data to"
         " the backup host", (EXPECTED,), usage="The repository made once, each app's data"
         " sent; put back if the repository does not open."),
    Step("send-apps", "appdata:send_apps", "send every app's data to the backup host (its"
         " timer)"),
    Step("restore-app", "appdata:restore_app", "an app's data dir from the backup host",
         (APP, TO), usage="Its newest backup at or before the time, unpacked by the app's user."),
    Step("restore-app-plan", "appdata:restore_plan", "what restore-app would replace (JSON)",
         (APP, TO), locked=False),
    Step("restore-database-plan", "offsite:restore_plan", "what restore-database would"
         " replace (JSON)", (STANZA, TO), locked=False),
    Step("restore-database", "offsite:restore_database", "restore the environment's"
         " database from the backup host", (
             STANZA, Arg("version", "PostgreSQL's major version", pattern=PG_VERSION,
                         required=True), TO),
         usage="The cluster stopped, restored to the time, started; waits for writes."),
    Step("status", "status:status", "what runs here: each app's releases and program, the"
         " site's certificate, the database, the last steps (JSON)", (
             Arg("apps", "an app whose state to report", repeated=True, option="--app",
                 pattern=APP_NAME),
             Arg("site", "the nginx site's name", default=""),
             Arg("database", "this is the environment's database host", kind=FLAG)),
         locked=False),
    Step("releases", "releases:releases", "an app's complete releases, oldest first",
         (APP,), locked=False),
    Step("run", "apprun:run_in_app", "run a command as the app, in its live release", (
        APP, *CONFIG, Arg("prefix", "its URL prefix (SCRIPT_NAME)", default=""),
        Arg("passed", "pass the caller's variable NAME on (none is by default)",
            repeated=True, option="--env"),
        Arg("argv", "the command", kind=REST, required=True)), locked=False,
        usage="On a pty of its own in a new session (never the caller's terminal), unable"
              " to gain privileges, e.g. `golive run mysite -- django-admin createsuperuser`"
              " over ssh -t."),
    Step("data-dir", "users:data_dir", "make a dir of the app's own in its data dir, as its"
         " user", (APP, Arg("name", "the dir's name", pattern=DATA_DIR, positional=True,
                            required=True)), locked=False,
         usage="A link or a file there is refused, never followed."),
    Step("remove", "program:remove", "remove an app marked absent",
         (APP, Arg("purge", "its data, logs and user too", kind=FLAG))),
    Step("install-packages", "teardown:install_packages", "install Debian packages,"
         " recording what dpkg gained (what destroy takes off)",
         (Arg("packages", "a Debian package", repeated=True, required=True,
              option="--package", pattern=DEBIAN_PACKAGE),
          Arg("background", "return at once; wait-packages waits and records", kind=FLAG)),
         usage="apt-get update and install, without recommends, never asking; the packages"
               " dpkg gained (dependencies too) are added to"
               " /var/lib/wsgistack/installed-packages."),
    Step("wait-packages", "packages:wait", "wait for install-packages --background to end,"
         " and record what dpkg gained"),
    Step("remove-packages", "teardown:remove_packages", "take off the packages the deploy"
         " installed (its record), and nothing else",
         (Arg("purge", "PostgreSQL's server too, with its clusters", kind=FLAG),),
         usage="Refused if that would remove a package the deploy did not install. Without"
               " --purge, PostgreSQL's server is removed, not purged: its clusters stay."),
    Step("remove-paths", "teardown:remove_paths", "remove the deploy's own paths (destroy)",
         (Arg("paths", "a path", repeated=True, option="--path", pattern=PATH),
          Arg("empty_dirs", "a dir removed only where empty (after the paths)",
              repeated=True, option="--empty-dir", pattern=PATH)),
         recorded=False,  # the history may be among them
         usage="Each only where every dir above it is a real dir only root can write."),
)}


# --- what a host read reports -----------------------------------------------------------
# The site's certificate from certbot, as golive's certificate step and the deploy's host
# read (wsgistack.components.acme) both print it and decide from it.

RENEW_BEFORE = 30 * 86400  # seconds: certbot's own default (renew_before_expiry)


@dataclass(frozen=True)
class Certificate:
    """The site's certificate from certbot, as found on a host."""

    server: str = ""  # the ACME directory it came from; "" when there is none
    names: tuple[str, ...] = ()
    not_after: float = 0.0  # seconds since the epoch
    installed: bool = False  # the pair nginx reads is this one


def parse_certificate(lines: list[str]) -> Certificate:
    """Read what `certificate_lines` (here) or the deploy's state read (wsgistack.acme)
    printed: `server=URL`, openssl's `notAfter=...` and subjectAltName, `installed=1`."""
    from ssl import cert_time_to_seconds  # here: every golive step imports this module

    server, not_after, installed, names = "", 0.0, False, []
    for line in lines:
        text = line.strip()
        if text.startswith("server="):
            server = text.removeprefix("server=")
        elif text.startswith("notAfter="):
            with contextlib.suppress(ValueError):
                not_after = float(cert_time_to_seconds(text.removeprefix("notAfter=")))
        elif text == "installed=1":
            installed = True
        elif text.startswith("DNS:"):
            names += [name.strip().removeprefix("DNS:") for name in text.split(",")]
    return Certificate(server, tuple(sorted(names)), not_after, installed)


def certificate_problem(found: Certificate, names: list[str], directory: str,
                        now: float) -> str:
    """Why the site needs a new certificate from certbot; "" if the one it has will do."""
    if not found.server or not found.names:
        return f"there is no certificate from {directory} yet"
    if found.server != directory:
        return f"the certificate is from another CA ({found.server})"
    if found.names != tuple(sorted(names)):
        return f"the certificate is for other names ({', '.join(found.names)})"
    if found.not_after - now < RENEW_BEFORE:
        return f"the certificate expires {time.strftime('%Y-%m-%d', time.gmtime(found.not_after))}"
    return ""


def command(step: str, **values: object) -> list[str]:
    """The words after `golive` that run `step` with these arguments."""
    return STEPS[step].command(**values)


def parser(description: str) -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="golive", description=description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--root", default="/",
                     help="where the host's paths start (tests use a scratch dir)")
    steps = cli.add_subparsers(dest="step", required=True)
    for step in STEPS.values():
        each = steps.add_parser(step.name, help=step.help, description=step.usage or step.help)
        for arg in step.args:
            arg.add_to(each)
    return cli
