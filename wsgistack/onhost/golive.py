#!/usr/bin/python3
"""wsgistack-golive: the steps that make a prepared deploy live on a host, run as root.

Installed by wsgistack as /usr/local/lib/wsgistack/golive (python3 standard library only,
like gunicorn-herder beside it). A deploy plans one command per step; each step holds the
host's deploy lock for its whole duration and either completes or leaves the live state as
it was.

    golive switch APP VERSION [--config NAME --config-env VAR] --prefix /P --workers N
                  --graceful-timeout S --keep-releases K --keep-backups B --expect FILE=SHA256...
                  [--release-command '["ARGV", ...]' ...]
        Make APP's candidate config and release VERSION live: verify the candidates are the
        ones this deploy wrote, load-check the release with them as the app's user; when
        the release changes, back up the database and run the release commands (e.g. a
        migration), both as the app's user; make the config and `current` live, swap
        gunicorn gracefully through gunicorn-herder, and prune old releases. A failed check
        or command switches nothing; if the new gunicorn fails, the previous config and
        release are put back.
    golive build APP VERSION [--config NAME --config-env VAR] --prefix /P
                 --build-command '["ARGV", ...]' ... [--build-user USER]
        Run a newly installed release's build commands (e.g. collectstatic) as the build
        user (wsgistack-build, in the app's group; never the app's user) into a fresh dir
        of its own in root's build dir ($WSGISTACK_BUILD_DIR), with the candidate config
        and environment; copy what they made (files and dirs, never links, within the
        build limits) into the release's root-owned build/.
    golive migrate APP VERSION [--config NAME --config-env VAR] --prefix /P --keep-backups B
                   [--database-env VAR] --release-command '["ARGV", ...]' ...
        For an environment whose hosts share APP's database: once, on one host, before any
        host switches, back up the database (pg_dump) and run the release commands with
        the new release and its candidate config and environment. Its hosts then switch
        with --shared-database, doing neither.
    golive database VERSION --expect FILE=SHA256...
        On a database host: make PostgreSQL VERSION's candidate settings, pg_hba.conf, TLS
        pair and apps.json live (parsed by postgres -C first; restarted when the settings
        change, else reloaded; put back if refused), then each app's role and database.
    golive database-check
        "ok", or how the apps' roles and databases differ from apps.json; a read.
    golive database-backup --keep N
        As postgres (its daily timer): dump each app's database, keeping the newest N.
    golive program APP --expect FILE=SHA256
        Make APP's candidate supervisor program live: parsed by supervisor's own parser first,
        then `supervisorctl reread` + `update APP`, and left running.
    golive site SITE --expect FILE=SHA256...
        Make the candidate nginx site and TLS pair live: `nginx -t` on a copy of nginx's
        config in which they replace the live ones, then live, enabled, and nginx reloaded.
    golive site SITE --acme --expect FILE=SHA256
        The same where certbot makes the pair: the site file alone, and a self-signed
        placeholder pair first if certbot has made none yet, so that nginx can start.
    golive certificate SITE --name NAME... --directory URL --email E [--ca-bundle FILE]
        Where the site's certificate from certbot is missing, from another CA, for other
        names or within 30 days of expiring: obtain one (HTTP-01, the webroot nginx serves
        on port 80); then make it the pair nginx reads, through nginx -t and a reload. A
        refusal says which name failed and why, in one line; the live pair stays.
    golive install-certificate SITE
        certbot's deploy hook, after its timer renewed the site's certificate: make it the
        pair nginx reads, through nginx -t and a graceful reload.
    golive releases APP
        APP's complete releases, oldest first, one a line (what rollback.py chooses from
        and what `switch` prunes by); a read: it takes no lock.
    golive run APP [--config NAME --config-env VAR] [--prefix /P] [--env NAME...] -- ARGV...
        Run ARGV as APP's user in its live release, with its environment and config, and
        of the caller's variables only those named (e.g. `golive run mysite --
        django-admin createsuperuser`, over `ssh -t`): on a pty of its own in a new
        session, never the caller's terminal, unable to gain privileges. No lock.
    golive data-dir APP NAME
        Make /var/lib/APP/NAME (0750) as APP's user: root never acts inside the app's own
        dir. A link or a file there is refused. No lock.
    golive remove APP [--purge]
        Stop and remove APP's supervisor program, then its code, config and runtime dir (and
        with --purge its data, logs, user and group).

Every step records a stamp (/var/lib/wsgistack/applied/<unit>): a digest of the live state it
applied, so a host read can tell a step cut short from one that completed. Candidates are
read once, under the lock, checked against the digests the deploy computed, and staged as
<file>.new from that verified content: a concurrent deploy's candidates are refused, never
half-applied. The exit status is 0 on success and 1 with one reason line otherwise; output
that cannot be written (the controller went away) never changes the outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import grp
import hashlib
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import sqlite3
import ssl
import stat
import subprocess
import sys
import tempfile
import termios
import time
import tty
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

ROOT = PurePosixPath("/")
LOCK_WAIT = 300  # seconds a step waits for another deploy's step on this host
RELEASE_COMMAND_TIMEOUT = 900  # seconds one release or build command may take
BUILD_DIR_ENV = "WSGISTACK_BUILD_DIR"  # where build commands write (e.g. STATIC_ROOT)
# Build commands run as this user (never the app's: the running app must not reach what the
# next release is built from), in the app's group to read its config; made by the deploy.
BUILD_USER = "wsgistack-build"
# What one release's build may make, at most: bytes (as files claim them, sparse or not),
# files and dirs, and the depth of dirs. Past either, the release is not installed.
BUILD_LIMITS = {"bytes": 1 << 30, "files": 100_000, "depth": 64}
PR_SET_NO_NEW_PRIVS = 38  # prctl(2)
MARKER = ".wheelhouse-digest"  # a release is complete once this file is written, last
# Names that become paths here, declared once (wsgistack.settings checks group data by them)
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # user, program, /opt/<app>
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]*$")  # releases/<version>
# a dir of the app's own in /var/lib/<app>/ (one name, no path): backups, or its entry's
DATA_DIR = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
# an app's own config file in /etc/<app>/: not a file the stack writes there
CONFIG_NAME = re.compile(r"^(?!gunicorn\.conf\.py$|env$)[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


# --- where things are ------------------------------------------------------------------

@dataclass(frozen=True)
class ReleasePaths:
    """One installed version of an app: its own venv, never changed once installed."""

    path: PurePosixPath

    @property
    def venv(self) -> PurePosixPath:
        return self.path / "venv"

    @property
    def installed_marker(self) -> PurePosixPath:
        """Holds the digest of the wheelhouse the release was installed from, written last."""
        return self.path / MARKER

    @property
    def build(self) -> PurePosixPath:
        """What the app's build commands made (e.g. collected static files), root's."""
        return self.path / "build"

    def static(self, index: int) -> PurePosixPath:
        """Link to the app's `index`th static dir (its `static` setting), which nginx
        serves through current/: `static` for the first, as releases always had it."""
        return self.path / ("static" if index == 0 else f"static-{index}")


@dataclass(frozen=True)
class AppPaths:
    """An app's places on a host, all derived from its name (under `root`, "/" on hosts)."""

    name: str
    root: PurePosixPath = ROOT

    @property
    def home(self) -> PurePosixPath:
        """Code, venv and wheelhouse: root-owned, read-only to the app."""
        return self.root / "opt" / self.name

    @property
    def releases(self) -> PurePosixPath:
        return self.home / "releases"

    def release(self, version: str) -> ReleasePaths:
        return ReleasePaths(self.releases / version)

    @property
    def current(self) -> PurePosixPath:
        """Link to the live release, switched in one rename; gunicorn runs through it."""
        return self.home / "current"

    @property
    def wheelhouse(self) -> PurePosixPath:
        """The last uploaded wheelhouse, which releases are installed from."""
        return self.home / "wheelhouse"

    @property
    def config_dir(self) -> PurePosixPath:
        return self.root / "etc" / self.name

    def config(self, name: str) -> PurePosixPath:
        """The app's own config file, if it has one (e.g. "config.py")."""
        return self.config_dir / name

    @property
    def gunicorn_config(self) -> PurePosixPath:
        return self.config_dir / "gunicorn.conf.py"

    @property
    def env_file(self) -> PurePosixPath:
        """The app's environment: gunicorn.conf.py loads the one beside it (env.new beside
        gunicorn.conf.py.new while golive checks them)."""
        return self.config_dir / "env"

    @property
    def data(self) -> PurePosixPath:
        """The app's state, outside the code: survives every deploy."""
        return self.root / "var/lib" / self.name

    def data_dir(self, name: str) -> PurePosixPath:
        """A dir of the app's own in its data dir (backups, or one its entry declares), made
        by the app's user (golive data-dir), never by root."""
        return self.data / name

    @property
    def database(self) -> PurePosixPath:
        return self.data / f"{self.name}.sqlite3"

    @property
    def backups(self) -> PurePosixPath:
        """Online backups of the database, one taken before each release switch."""
        return self.data_dir("backups")

    @property
    def build_scratch(self) -> PurePosixPath:
        """Where the build user's commands write (root's parent, closed to the app)."""
        return build_dir(self.root) / self.name

    @property
    def run_dir(self) -> PurePosixPath:
        return self.root / "run" / self.name

    @property
    def pid_file(self) -> PurePosixPath:
        return self.run_dir / "gunicorn.pid"

    @property
    def supervisor_program(self) -> PurePosixPath:
        return self.root / "etc/supervisor/conf.d" / f"{self.name}.conf"

    @property
    def stdout_log(self) -> PurePosixPath:
        return self.root / "var/log/supervisor" / f"{self.name}.out.log"

    @property
    def stderr_log(self) -> PurePosixPath:
        return self.root / "var/log/supervisor" / f"{self.name}.err.log"

    @property
    def tmpfiles(self) -> PurePosixPath:
        return self.root / "etc/tmpfiles.d" / f"{self.name}.conf"

    @property
    def nginx_access_log(self) -> PurePosixPath:
        return self.root / "var/log/nginx" / f"{self.name}.access.log"

    @property
    def nginx_error_log(self) -> PurePosixPath:
        return self.root / "var/log/nginx" / f"{self.name}.error.log"

    def leftovers(self) -> list[PurePosixPath]:
        """What removing the app takes away (its data, user and logs stay)."""
        units = [f"app-{self.name}", f"supervisor-{self.name}"]
        return [self.home, self.config_dir, self.supervisor_program,
                candidate(self.supervisor_program), self.tmpfiles, self.run_dir,
                *(stamps_dir(self.root) / unit for unit in units)]

    def purged(self) -> list[PurePosixPath]:
        """What a purge removes as well: the data and the logs."""
        return [self.data, self.stdout_log, self.stderr_log, self.nginx_access_log,
                self.nginx_error_log]


def candidate(path: PurePosixPath | str) -> PurePosixPath:
    """Where a deploy writes a config file before it is live: `<file>.next`."""
    path = PurePosixPath(path)
    return path.with_name(path.name + ".next")


def stamps_dir(root: PurePosixPath) -> PurePosixPath:
    return root / "var/lib/wsgistack/applied"


def herder(root: PurePosixPath) -> PurePosixPath:
    return root / "usr/local/lib/wsgistack/gunicorn-herder"


def supervisor_query(root: PurePosixPath) -> PurePosixPath:
    return root / "usr/local/lib/wsgistack/supervisor-query"


def build_dir(root: PurePosixPath) -> PurePosixPath:
    """Root's dir of the builds under way: one dir each, the build user's."""
    return root / "var/lib/wsgistack/build"


def lock_dir(root: PurePosixPath) -> PurePosixPath:
    """Root's own runtime dir: nobody else can create, replace or hold anything in it."""
    return root / "run/wsgistack"


def nginx_dir(root: PurePosixPath) -> PurePosixPath:
    return root / "etc/nginx"


def tls_dir(root: PurePosixPath) -> PurePosixPath:
    """The sites' certificates; their keys in private/ beneath it, root's only."""
    return root / "etc/ssl/wsgistack"


def tls_paths(site: str, root: PurePosixPath) -> tuple[PurePosixPath, PurePosixPath]:
    """The site's certificate and key as nginx reads them."""
    return tls_dir(root) / f"{site}.crt", tls_dir(root) / "private" / f"{site}.key"


def database_dir(root: PurePosixPath) -> PurePosixPath:
    """On a database host: pg_hba.conf, the server's TLS pair and the apps' roles,
    root:postgres, closed to others."""
    return root / "etc/wsgistack/postgresql"


def database_backups(root: PurePosixPath) -> PurePosixPath:
    """The daily dumps: postgres's own dir, in root's /var/lib/wsgistack (never inside a dir
    postgres owns, where root would act on a path postgres can swap)."""
    return root / "var/lib/wsgistack/database-backups"


def postgresql_include(version: str, root: PurePosixPath) -> PurePosixPath:
    """The one line in the cluster's conf.d (postgres's own dir) that includes our settings
    from root's database_dir: written as postgres, never by root."""
    return root / f"etc/postgresql/{version}/main/conf.d/wsgistack.conf"


def database_ca(root: PurePosixPath) -> PurePosixPath:
    """On a web host: the database server's certificate, which its clients pin."""
    return tls_dir(root) / "database.crt"


# --- units: live state that goes live together, and its stamp --------------------------

@dataclass(frozen=True)
class Unit:
    """Config files that go live together, and the live state their stamp covers."""

    name: str  # names the stamp: "nginx-site", "app-<app>", "supervisor-<app>"
    files: tuple[PurePosixPath, ...]
    links: tuple[PurePosixPath, ...] = ()  # links whose targets are live state too
    listing: PurePosixPath | None = None  # a dir whose entries (and link targets) are too
    root: PurePosixPath = ROOT

    @property
    def stamp(self) -> PurePosixPath:
        return stamps_dir(self.root) / self.name

    @property
    def candidates(self) -> tuple[PurePosixPath, ...]:
        return tuple(candidate(path) for path in self.files)


def app_unit(paths: AppPaths, config: str | None) -> Unit:
    """The app's config file (`config`, if it has one), gunicorn's, its environment, and the
    release `current` points to."""
    own = (paths.config(config),) if config else ()
    return Unit(f"app-{paths.name}", (*own, paths.gunicorn_config, paths.env_file),
                links=(paths.current,), root=paths.root)


def program_unit(paths: AppPaths) -> Unit:
    return Unit(f"supervisor-{paths.name}", (paths.supervisor_program,), root=paths.root)


def site_unit(site: str, root: PurePosixPath = ROOT, acme: bool = False) -> Unit:
    """The site file and TLS pair; which sites are enabled is live state too (a disabled
    default site needs a reload as much as a changed file). Where certbot makes the pair
    (`acme`), the pair is not the deploy's to write: it is certificate_unit's."""
    nginx = nginx_dir(root)
    pair = () if acme else tls_paths(site, root)
    return Unit("nginx-site", (nginx / "sites-available" / site, *pair),
                listing=nginx / "sites-enabled", root=root)


def certificate_unit(site: str, root: PurePosixPath = ROOT) -> Unit:
    """The pair nginx reads, made live from certbot's certificate (golive certificate)."""
    return Unit(f"certificate-{site}", tls_paths(site, root), root=root)


def database_unit(root: PurePosixPath = ROOT) -> Unit:
    """PostgreSQL's settings of ours (which the cluster's conf.d includes), pg_hba.conf, the
    server's certificate and key, and the apps' roles (apps.json): what `golive database`
    applies. All in root's database_dir."""
    directory = database_dir(root)
    return Unit("postgresql", (
        directory / "postgresql.conf", directory / "pg_hba.conf", directory / "server.crt",
        directory / "server.key", directory / "apps.json"), root=root)


def digest(unit: Unit) -> str:
    """The digest of the unit's live state. wsgistack/staged.py reads the same digest with
    shell (`sha256sum`, `readlink`, `find -printf`); tests prove they agree."""
    text = b""
    for path in unit.files:  # as `sha256sum FILE...` prints them; a missing file says nothing
        try:
            with open(path, "rb") as file:
                text += f"{hashlib.sha256(file.read()).hexdigest()}  {path}\n".encode()
        except OSError:
            pass
    for link in unit.links:
        with contextlib.suppress(OSError):
            text += os.fsencode(os.readlink(link)) + b"\n"
    if unit.listing is not None:
        with contextlib.suppress(OSError):
            text += b"".join(sorted(listing_line(entry) for entry in os.scandir(unit.listing)))
    return hashlib.sha256(text).hexdigest()


def listing_line(entry: os.DirEntry) -> bytes:
    target = os.readlink(entry.path) if entry.is_symlink() else ""
    return os.fsencode(f"{entry.name} {target}\n")


def record(unit: Unit) -> None:
    """Write the unit's stamp, last, once its live state has been applied."""
    os.makedirs(unit.stamp.parent, mode=0o755, exist_ok=True)
    write_atomically(unit.stamp, (digest(unit) + "\n").encode(), os.getuid(), os.getgid(),
                     0o644)


# --- output that never decides the outcome ---------------------------------------------

def say(text: str, err: bool = False) -> None:
    """Print a line; if the controller is gone (a broken pipe), the step goes on regardless."""
    with contextlib.suppress(OSError):
        os.write(2 if err else 1, (text.rstrip("\n") + "\n").encode(errors="replace"))


class Refused(Exception):
    """The step cannot go on; the live state is as it was. The message says why."""


def keep_going_without_the_controller() -> None:
    """A deploy killed mid-step closes the SSH channel: finish the step, not half of it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


# --- the deploy lock --------------------------------------------------------------------

@contextlib.contextmanager
def deploy_lock(root: PurePosixPath, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the host's deploy lock: a file in a root-only dir, opened without following
    links, so no other user can hold it, replace it, or point it elsewhere."""
    directory = lock_dir(root)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise Refused(f"{directory} is not a directory only this user can write: not"
                      " taking the deploy lock there")
    fd = os.open(directory / "deploy.lock",
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Refused(f"another deploy held {directory}/deploy.lock for"
                                  f" {wait:.0f}s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


# --- files ------------------------------------------------------------------------------

def write_atomically(path: PurePosixPath, content: bytes, uid: int, gid: int, mode: int) -> None:
    """Write `path` in one rename, with its owner and mode set before it appears."""
    temporary = path.with_name(f".{path.name}.golive")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(content)
        if os.getuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def parse_expect(pairs: list[str]) -> dict[PurePosixPath, str]:
    expected = {}
    for pair in pairs:
        path, _, sha256 = pair.rpartition("=")
        if path and sha256 == "missing":
            raise Refused(f"{path} is missing: a deploy writes it (run deploy.py first)")
        if not path or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise Refused(f"--expect {pair!r}: expected FILE=SHA256")
        expected[PurePosixPath(path)] = sha256
    return expected


@dataclass(frozen=True)
class Staged:
    """A unit's candidates as verified, staged beside the live files as <file>.new."""

    unit: Unit

    def new(self, path: PurePosixPath) -> PurePosixPath:
        return path.with_name(path.name + ".new")

    def previous(self, path: PurePosixPath) -> PurePosixPath:
        return path.with_name(path.name + ".prev")

    @classmethod
    def verified(cls, unit: Unit, expected: dict[PurePosixPath, str]) -> Staged:
        """Read each candidate once and stage exactly the bytes whose digest this deploy
        expects; refuse if any differs (another deploy wrote it since)."""
        if set(expected) != set(unit.candidates):
            raise Refused(f"{unit.name}: expected digests for {sorted(map(str, expected))},"
                          f" not the unit's candidates {sorted(map(str, unit.candidates))}")
        staged = cls(unit)
        for path in unit.files:
            source = candidate(path)
            try:
                with open(source, "rb") as file:
                    info = os.fstat(file.fileno())
                    content = file.read()
            except OSError as error:
                raise Refused(f"cannot read the candidate {source}: {error.strerror}") from None
            if hashlib.sha256(content).hexdigest() != expected[source]:
                raise Refused(f"{source} is not the candidate this deploy wrote (another deploy"
                              " changed it since): nothing was made live; run the deploy again")
            write_atomically(staged.new(path), content, info.st_uid, info.st_gid,
                             stat.S_IMODE(info.st_mode))
        return staged

    @classmethod
    def of_content(cls, unit: Unit, contents: dict[PurePosixPath, tuple[bytes, int]]
                   ) -> Staged:
        """Stage content this step made itself (root's, each with its mode)."""
        staged = cls(unit)
        for path in unit.files:
            content, mode = contents[path]
            write_atomically(staged.new(path), content, 0, 0, mode)
        return staged

    def make_live(self) -> None:
        """Keep each live file as <file>.prev (a hard link: the live file never goes
        missing), then rename each staged file over it."""
        for path in self.unit.files:
            previous = self.previous(path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(previous)
            with contextlib.suppress(FileNotFoundError):
                os.link(path, previous)
            os.replace(self.new(path), path)

    def put_back(self) -> None:
        """Each live file as it was before make_live: the previous one, or none."""
        for path in self.unit.files:
            try:
                os.replace(self.previous(path), path)
            except FileNotFoundError:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def clean_up(self) -> None:
        for path in self.unit.files:
            for leftover in (self.new(path), self.previous(path)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


def link_atomically(link: PurePosixPath, target: str) -> None:
    temporary = link.with_name(f".{link.name}.golive")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def read_link(path: PurePosixPath) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def remove_path(path: PurePosixPath) -> None:
    """Remove a file, link or tree without following links (rmtree is fd-based on Linux)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    """Run a command, its output captured; a `timeout` that passes raises TimeoutError."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, **options)
    except subprocess.TimeoutExpired:
        raise TimeoutError(command[0]) from None


def tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- acting as another user ------------------------------------------------------------

def no_new_privileges() -> None:
    """From here on, no setuid or file-capability program (sudo, su, passwd) can raise this
    process or its children above the user it is: for every process of an app's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def user_options(user: str, *groups: str) -> dict[str, object]:
    """subprocess options that run a command as `user` (as is, if we already are it), in
    its own group and `groups` only, never able to gain privileges."""
    account = pwd.getpwnam(user)
    if os.getuid() == account.pw_uid:
        return {"preexec_fn": no_new_privileges}
    return {"user": account.pw_uid, "group": account.pw_gid,
            "extra_groups": [grp.getgrnam(group).gr_gid for group in groups],
            "preexec_fn": no_new_privileges}


def account_comment(name: str) -> str:
    """The comment (GECOS) of every account the deploy makes for an app: an account
    without it is not the deploy's to change or remove."""
    return f"wsgistack app {name}"


def made_by_the_deploy(name: str) -> bool:
    """Whether the account `name` is one the deploy made for an app (its comment says so)."""
    try:
        return pwd.getpwnam(name).pw_gecos == account_comment(name)
    except KeyError:
        return False


def become(account: pwd.struct_passwd) -> None:
    """Be `account` and nothing more (its group only), for good (as is, if already), unable
    to gain privileges."""
    if os.getuid() != account.pw_uid:
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    no_new_privileges()


def as_user(user: str, work: Callable[[], object]) -> object:
    """Call `work()` in a child process that is `user` and nothing more, and return what it
    returned (JSON): root never acts on a path in a dir another user can write. Raises
    Refused with the child's reason if it fails."""
    account = pwd.getpwnam(user)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(reader)
        code = 0
        try:
            become(account)
            answer = {"result": work()}
        except Refused as refusal:
            answer, code = {"refused": str(refusal)}, 1
        except Exception as error:  # reported to the parent, which refuses
            answer, code = {"refused": f"{type(error).__name__}: {error}"}, 1
        with contextlib.suppress(OSError, TypeError, ValueError):
            os.write(writer, json.dumps(answer).encode())
        os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        said = pipe.read()
    _pid, status = os.waitpid(pid, 0)
    try:
        answer = json.loads(said)
    except ValueError:
        answer = {}
    if os.waitstatus_to_exitcode(status) != 0 or "result" not in answer:
        raise Refused(answer.get("refused") or f"a step as {user} failed")
    return answer["result"]


def kill_all_of(user: str) -> None:
    """End every process of `user` (kill(-1) as that user reaches its own only, and never
    the caller): nothing a build left running waits for the next one. Never for root or
    the caller's own user, whose kill(-1) would reach far more."""
    if pwd.getpwnam(user).pw_uid not in (0, os.getuid()):
        as_user(user, kill_every_other_process)


def kill_every_other_process() -> None:
    with contextlib.suppress(ProcessLookupError):  # none left
        os.kill(-1, signal.SIGKILL)


def write_file_as_user(path: PurePosixPath, content: bytes, mode: int) -> None:
    """Write `path` in one rename, as the user this process is (in a child of as_user)."""
    write_atomically(path, content, os.getuid(), os.getgid(), mode)


def read_file_as_user(path: PurePosixPath) -> str | None:
    """A small text file's content as the user this process is; None if it is missing."""
    content = content_of(path)
    return None if content is None else content.decode(errors="replace")


# --- an app's own dirs in its data dir, made as its user --------------------------------

def data_dir(paths: AppPaths, name: str) -> None:
    """Make the app's dir `name` in its data dir (0750), as the app's user: a link or a
    file there (the app's user put it) is refused in one line, never followed."""
    path = paths.data_dir(name)

    def make() -> None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o750)
        try:
            opened = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:  # ELOOP, ENOTDIR: something else is there
            raise Refused(f"{paths.name}: {path} is {kind_of(os.lstat(path).st_mode)}, not a"
                          f" directory (the app's user put it there): move it away, as"
                          f" {paths.name}, and deploy again") from None
        try:
            os.fchmod(opened, 0o750)
        finally:
            os.close(opened)

    as_user(paths.name, make)
    say(f"{path} is {paths.name}'s dir")


def kind_of(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a regular file" if stat.S_ISREG(mode)
            else "a special file")


# --- database backups, as the app's user ------------------------------------------------

def backup_database(paths: AppPaths, version: str, keep: int, url: str = "") -> None:
    """Back up the app's database to backups/, then keep the newest `keep`: with a
    PostgreSQL `url`, pg_dump's custom format; else SQLite's online backup (consistent
    while the app writes), if the app has a SQLite file. Runs as the app's user, in the
    app's own directory."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{paths.name}-{stamp}-before-{version}"
    if url:
        dump_postgresql(url, paths.backups / f"{name}.dump")
    elif os.path.isfile(paths.database):
        target = paths.backups / f"{name}.sqlite3"
        temporary = target.with_name(target.name + ".tmp")
        with sqlite3.connect(paths.database, timeout=30) as live, \
                sqlite3.connect(temporary) as copy:
            live.backup(copy)
        copy.close()
        live.close()
        os.replace(temporary, target)
    rotate_backups(paths.backups, f"{paths.name}-", keep)


def libpq_environment(url: str) -> dict[str, str]:
    """A postgresql:// URL as libpq's variables: the password never in argv."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    variables = {"PGHOST": parts.hostname or "", "PGPORT": str(parts.port or 5432),
                 "PGUSER": urllib.parse.unquote(parts.username or ""),
                 "PGPASSWORD": urllib.parse.unquote(parts.password or ""),
                 "PGDATABASE": urllib.parse.unquote(parts.path.lstrip("/")),
                 "PGSSLMODE": query.get("sslmode", ""),
                 "PGSSLROOTCERT": query.get("sslrootcert", ""), "PGCONNECT_TIMEOUT": "10"}
    return {name: value for name, value in variables.items() if value}


def dump_postgresql(url: str, target: PurePosixPath) -> None:
    """pg_dump of the app's database (custom format: pg_restore takes it) into `target`."""
    temporary = target.with_name(target.name + ".tmp")
    dumped = run(["pg_dump", "--format=custom", f"--file={temporary}"],
                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                      **libpq_environment(url)},
                 timeout=RELEASE_COMMAND_TIMEOUT)
    if dumped.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise OSError(f"pg_dump failed: {tail(dumped.stderr, 3)}")
    os.replace(temporary, target)


def rotate_backups(directory: PurePosixPath, prefix: str, keep: int) -> None:
    """Remove all but the newest `keep` backups: regular files named <prefix>*.sqlite3 or
    *.dump only, newest by name (a UTC time), whatever else the directory holds."""
    with os.scandir(directory) as entries:
        backups = sorted(entry.name for entry in entries
                         if entry.is_file(follow_symlinks=False)
                         and entry.name.startswith(prefix)
                         and entry.name.endswith((".sqlite3", ".dump")))
    for name in backups[:max(len(backups) - keep, 0)]:
        os.unlink(directory / name)


# --- releases ---------------------------------------------------------------------------

def installed_releases(paths: AppPaths) -> tuple[list[str], list[str]]:
    """(complete releases oldest first, by their marker's time; incomplete ones)."""
    complete, incomplete = [], []
    with contextlib.suppress(FileNotFoundError), os.scandir(paths.releases) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            try:
                marker = os.lstat(paths.release(entry.name).installed_marker)
                complete.append((marker.st_mtime_ns, entry.name))
            except FileNotFoundError:
                incomplete.append(entry.name)
    return [name for _time, name in sorted(complete)], sorted(incomplete)


def prune_releases(paths: AppPaths, keep: int) -> list[str]:
    """Remove all but the newest `keep` complete releases, never the live one, and every
    release whose install never finished. Returns what it removed."""
    complete, incomplete = installed_releases(paths)
    live = PurePosixPath(read_link(paths.current)).name
    removed = [name for name in complete[:max(len(complete) - keep, 0)] + incomplete
               if name != live]
    for name in removed:
        remove_path(paths.release(name).path)
    return removed


# --- supervisor -------------------------------------------------------------------------

def process_info(program: str, root: PurePosixPath) -> dict[str, str]:
    """supervisor's state and pid of `program`, asked by supervisor-query (beside this
    program, the same the host read asks); {} if supervisor does not answer."""
    asked = run([sys.executable, "-I", "-S", str(supervisor_query(root)), program, "--conf",
                 str(root / "etc/supervisor/supervisord.conf")])
    fields = asked.stdout.split()
    return {"statename": fields[0], "pid": fields[1]} if len(fields) == 2 else {}


def supervisorctl(*arguments: str) -> subprocess.CompletedProcess[str]:
    return run(["supervisorctl", *arguments])


# --- the steps --------------------------------------------------------------------------

def read_environment(path: PurePosixPath) -> dict[str, str]:
    """The variables of an app's env file (NAME=<JSON string> lines), as gunicorn.conf.py
    loads them."""
    variables = {}
    with open(path) as env:
        for line in env:
            name, _, value = line.rstrip("\n").partition("=")
            if name and not name.startswith("#"):
                variables[name] = json.loads(value)
    return variables


@dataclass(frozen=True)
class Config:
    """The app's own config file, if any (`name` in /etc/<app>/), and the variable that
    names it to the app."""

    name: str | None = None
    env: str | None = None


def app_environment(paths: AppPaths, version: str, config: Config,
                    suffix: str, prefix: str) -> dict[str, str]:
    """What the new release runs with before it is live: its config file as `suffix`
    (".next", the candidate; ".new", as staged), the prefix, and the app's own home, user
    and tools (the release's venv first on PATH)."""
    own = {config.env: f"{paths.config(config.name)}{suffix}"} if config.name else {}
    return {**own, "SCRIPT_NAME": prefix,
            "HOME": str(paths.data), "USER": paths.name, "LANG": "C.UTF-8",
            "PATH": f"{paths.release(version).venv}/bin:/usr/local/bin:/usr/bin:/bin"}


def load_check(paths: AppPaths, staged: Staged, version: str, config: Config,
               prefix: str) -> None:
    """Import the new release with the staged config, as the app's user, from the
    release's own (root-owned) directory: what gunicorn will load, before it is live."""
    release = paths.release(version)
    gunicorn = release.venv / "bin/gunicorn"
    try:
        checked = run([str(release.venv / "bin/python"), str(gunicorn), "--check-config",
                       "--config", str(staged.new(paths.gunicorn_config))],
                      env=app_environment(paths, version, config, ".new", prefix),
                      cwd=release.path, **user_options(paths.name))
    except OSError as error:
        raise Refused(f"{paths.name} {version} failed its load check; nothing was switched:"
                      f" {gunicorn}: {error.strerror}") from None
    if checked.returncode != 0:
        raise Refused(f"{paths.name} {version} failed its load check; nothing was switched:\n"
                      + tail(checked.stdout + checked.stderr, 25))


def run_app_commands(paths: AppPaths, version: str, environment: dict[str, str],
                     commands: list[list[str]], kind: str, outcome: str,
                     options: dict[str, object] | None = None) -> None:
    """Each command, in order, as the app's user (or as `options` say), in the release's
    dir, with `environment`; the first failure refuses, saying `kind` ("release command")
    and `outcome` ("nothing was switched")."""
    options = user_options(paths.name) if options is None else options
    for argv in commands:
        shown = " ".join(argv)
        refused = f"{paths.name} {version}: the {kind} `{shown}`"
        try:
            done = run(argv, env=environment, cwd=paths.release(version).path,
                       timeout=RELEASE_COMMAND_TIMEOUT, **options)
        except OSError as error:
            raise Refused(f"{refused} could not run ({error.strerror}); {outcome}") from None
        except TimeoutError:
            raise Refused(f"{refused} took over {RELEASE_COMMAND_TIMEOUT}s; {outcome}") from None
        if done.returncode != 0:
            raise Refused(f"{refused} failed (exit {done.returncode}); {outcome}:\n"
                          + tail(done.stdout + done.stderr, 25))
        say(f"ran {shown}")


def run_release_commands(paths: AppPaths, staged: Staged, version: str, config: Config,
                         prefix: str, commands: list[list[str]]) -> None:
    """The release commands (e.g. a migration), with the new release and its staged config
    and environment."""
    environment = {**read_environment(staged.new(paths.env_file)),
                   **app_environment(paths, version, config, ".new", prefix)}
    run_app_commands(paths, version, environment, commands, "release command",
                     "nothing was switched")


def build_release(paths: AppPaths, version: str, config: Config, prefix: str,
                  commands: list[list[str]], user: str = BUILD_USER) -> None:
    """Run the build commands of a newly installed release (e.g. Django's collectstatic)
    as the build user (never the app's, which the running app is: it must not reach what
    the next release is built from), in the app's group to read its candidate config, with
    its environment, writing into a fresh dir of the build user's own in root's build dir
    ($WSGISTACK_BUILD_DIR, its HOME beside it); then copy what they made, regular files and
    dirs only and within BUILD_LIMITS, into the release's root-owned build/ (read-only to
    the app, served by nginx). The build user's processes and dir go when it ends."""
    scratch, builder = paths.build_scratch, pwd.getpwnam(user)
    output = paths.release(version).build
    fresh_dir(scratch, builder)
    made = scratch / "out"
    try:
        environment = {**read_environment(candidate(paths.env_file)),
                       **app_environment(paths, version, config, ".next", prefix),
                       "HOME": str(scratch), "USER": user, BUILD_DIR_ENV: str(made)}
        run_builds(paths, version, environment, commands, user, made)
        if os.path.lexists(output):
            shutil.rmtree(output)
        try:
            copy_tree(made, output)
        except BuildTooLarge as too_large:
            shutil.rmtree(output, ignore_errors=True)
            raise Refused(f"{paths.name} {version}: its build commands made {too_large}; the"
                          " release was not installed") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # fd-based: never follows a link
    say(f"built {paths.name} {version} into {output}")


def run_builds(paths: AppPaths, version: str, environment: dict[str, str],
               commands: list[list[str]], user: str, made: PurePosixPath) -> None:
    """The build commands as `user`, in the app's group, writing into `made`; every process
    of `user` is ended after them, whatever happened, so nothing changes what is copied."""
    try:
        as_user(user, lambda: os.mkdir(made, 0o755))
        run_app_commands(paths, version, environment, commands, "build command",
                         "the release was not installed", user_options(user, paths.name))
    finally:
        kill_all_of(user)


def fresh_dir(path: PurePosixPath, owner: pwd.struct_passwd) -> None:
    """A new empty dir (0700) of `owner`'s, in a parent that only root can write."""
    os.makedirs(path.parent, mode=0o755, exist_ok=True)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o700)
    os.chown(path, owner.pw_uid, owner.pw_gid)


def run_in_app(paths: AppPaths, config: Config, prefix: str, argv: list[str],
               passed: list[str]) -> int:
    """Run `argv` (e.g. `django-admin createsuperuser`) as the app's user, in its live
    release with its environment and config, plus the caller's variables named in `passed`;
    return its exit status. It never gets the caller's terminal: where the caller has one,
    the command gets a pty of its own in a new session, relayed here (as `su --pty`);
    otherwise a new session without a terminal. Takes no lock."""
    version = read_link(paths.current).removeprefix("releases/")
    if not version:
        raise Refused(f"{paths.name} has no live release on this host")
    terminal = any(os.isatty(fd) for fd in (0, 1, 2))
    environment = {**read_environment(paths.env_file),
                   **app_environment(paths, version, config, "", prefix),
                   **{name: os.environ[name] for name in passed if name in os.environ},
                   **({"TERM": os.environ.get("TERM", "xterm")} if terminal else {})}
    account = pwd.getpwnam(paths.name)

    def child() -> None:
        try:
            os.chdir(paths.release(version).path)
            become(account)
            os.execvpe(argv[0], argv, environment)
        except OSError as error:
            say(f"golive run: {argv[0]}: {error.strerror}", err=True)
        os._exit(127)

    if terminal:
        return relay_through_pty(child)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        child()
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def relay_through_pty(child: Callable[[], None]) -> int:
    """Start `child` in a new session on a pty of its own, relay the caller's terminal to
    and from it (raw, the window's size followed) until it exits; its exit status."""
    pid, master = pty.fork()
    if pid == 0:
        child()
    saved = termios.tcgetattr(0) if os.isatty(0) else None

    def resize(*_: object) -> None:
        with contextlib.suppress(OSError):
            size = fcntl.ioctl(0 if saved else 1, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    resize()
    signal.signal(signal.SIGWINCH, resize)
    try:
        if saved:
            tty.setraw(0)
        relay(master)
    finally:
        if saved:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        os.close(master)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def relay(master: int) -> None:
    """Copy the caller's input to the pty and the pty's output to the caller's, until the
    pty closes (the command and all it started have exited)."""
    sources = [0, master]
    while True:
        try:
            ready, _w, _x = select.select(sources, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the pty's other end is closed
                return
            if not data:
                return
            os.write(1, data)
        if 0 in ready:
            data = os.read(0, 65536)
            if data:
                os.write(master, data)
            else:
                sources.remove(0)


class BuildTooLarge(Exception):
    """A build made more than BUILD_LIMITS allows; says what."""


def copy_tree(source: PurePosixPath, target: PurePosixPath) -> None:
    """Copy a tree another user owns into a new root-owned one (dirs 0755, files 0644),
    reading it through directory descriptors with O_NOFOLLOW: links, devices and FIFOs are
    skipped, never followed, however the tree changes meanwhile. Within BUILD_LIMITS
    (BuildTooLarge): its depth bounds the recursion and the descriptors held."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    budget = {"bytes": BUILD_LIMITS["bytes"], "files": BUILD_LIMITS["files"]}
    top = os.open(source, flags | os.O_DIRECTORY)
    try:
        copy_dir(top, target, flags, budget, 0)
    finally:
        os.close(top)


def copy_dir(directory: int, target: PurePosixPath, flags: int, budget: dict[str, int],
             depth: int) -> None:
    if depth > BUILD_LIMITS["depth"]:
        raise BuildTooLarge(f"dirs deeper than {BUILD_LIMITS['depth']}")
    os.mkdir(target, 0o755)
    os.chmod(target, 0o755)  # whatever the umask
    for name, opened in entries(directory, flags):
        try:
            spend(budget, "files", 1, f"more than {BUILD_LIMITS['files']} files")
            kind = os.fstat(opened)
            if stat.S_ISDIR(kind.st_mode):
                copy_dir(opened, target / name, flags, budget, depth + 1)
            elif stat.S_ISREG(kind.st_mode):
                spend(budget, "bytes", max(kind.st_size, kind.st_blocks * 512),
                      f"more than {BUILD_LIMITS['bytes']} bytes")
                copy_file(opened, target / name)
        finally:
            os.close(opened)


def entries(directory: int, flags: int) -> Iterator[tuple[str, int]]:
    """Each entry of an open dir, opened without following it; links and entries gone
    since are skipped."""
    for entry in os.scandir(directory):
        try:
            yield entry.name, os.open(entry.name, flags, dir_fd=directory)
        except OSError:  # a link (ELOOP), or gone since
            continue


def spend(budget: dict[str, int], what: str, amount: int, said: str) -> None:
    budget[what] -= amount
    if budget[what] < 0:
        raise BuildTooLarge(said)


def copy_file(opened: int, target: PurePosixPath) -> None:
    written = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(written, "wb") as out:
        while chunk := os.read(opened, 1 << 20):
            out.write(chunk)
    os.chmod(target, 0o644)


def reload_gunicorn(paths: AppPaths, workers: int, graceful_timeout: int) -> str:
    """Swap the running gunicorn to the live release through gunicorn-herder, which signals
    only the master supervisor's herder runs. The herder runs as the app's user: it reads
    pid files in the app's own run dir, which root never does. Decided by the herder's exit
    status (it watches the new master), never by whether anyone read its output; on
    failure, the end of gunicorn's log (root's to read) says why."""
    info = process_info(paths.name, paths.root)
    if info.get("statename") not in ("RUNNING", "STARTING") or info.get("pid", "0") == "0":
        return f"{paths.name} is not running: supervisor starts the new release"
    swapped = run([sys.executable, "-I", str(herder(paths.root)), "reload",
                   "--pidfile", str(paths.pid_file), "--supervised-pid", info["pid"],
                   "--user", paths.name, "--workers", str(workers),
                   "--graceful-timeout", str(graceful_timeout)],
                  cwd="/", **user_options(paths.name))
    if swapped.returncode != 0:
        said = tail(swapped.stderr or swapped.stdout, 20) or "gunicorn-herder failed"
        log = tail((content_of(paths.stderr_log) or b"").decode(errors="replace"), 15)
        raise Refused(said + (f"\n{paths.stderr_log}:\n{log}" if log else ""))
    return swapped.stdout.strip()


def switch(paths: AppPaths, version: str, config: Config, prefix: str, workers: int,
           graceful_timeout: int, keep_releases: int, keep_backups: int,
           expected: dict[PurePosixPath, str], release_commands: list[list[str]],
           shared_database: bool = False) -> None:
    """With `shared_database` the data is the environment's, backed up and migrated once
    for all its hosts (`golive migrate`): this host does neither."""
    unit = app_unit(paths, config.name)
    release = f"releases/{version}"
    installed(paths, version)
    staged = Staged.verified(unit, expected)
    try:
        load_check(paths, staged, version, config, prefix)
        previous = read_link(paths.current)
        if previous != release and not shared_database:
            as_user(paths.name, lambda: backup_database(paths, version, keep_backups))
            run_release_commands(paths, staged, version, config, prefix, release_commands)
        staged.make_live()
        link_atomically(paths.current, release)
        try:
            say(reload_gunicorn(paths, workers, graceful_timeout))
        except Refused:
            staged.put_back()
            if previous:
                link_atomically(paths.current, previous)
            raise
    finally:
        staged.clean_up()
    record(unit)
    for removed in prune_releases(paths, keep_releases):
        say(f"removed the old release {paths.name} {removed}")
    say(f"{paths.name} {version} is live")


def installed(paths: AppPaths, version: str) -> None:
    if not os.path.isfile(paths.release(version).installed_marker):
        raise Refused(f"{paths.name} {version} is not installed on this host")


def migrate(paths: AppPaths, version: str, config: Config, prefix: str, keep_backups: int,
            database_env: str | None, commands: list[list[str]]) -> None:
    """For an environment whose hosts share the app's database, once, on one host, before
    any switches: back up the database (pg_dump, as the app's user), then run the release
    commands with the new release and its candidate config and environment. A failure
    leaves every host on the release it runs."""
    installed(paths, version)
    environment = {**read_environment(candidate(paths.env_file)),
                   **app_environment(paths, version, config, ".next", prefix)}
    url = environment.get(database_env, "") if database_env else ""
    as_user(paths.name, lambda: backup_database(paths, version, keep_backups, url))
    run_app_commands(paths, version, environment, commands, "release command",
                     "no host was switched")
    say(f"{paths.name} {version}: the environment's database is migrated")


def parse_program(path: PurePosixPath, program: str) -> None:
    """Parse a program file as supervisord would at start-up, with this host's users."""
    from supervisor.options import ServerOptions  # Debian's python3-supervisor

    with tempfile.NamedTemporaryFile("w", suffix=".conf") as main:
        main.write(f"[supervisord]\n[include]\nfiles = {path}\n")
        main.flush()
        options = ServerOptions()
        try:
            options.realize(args=["-c", main.name])
        except (ValueError, SystemExit) as error:
            raise Refused(f"{path.with_name(path.name[:-4])}.next is not a valid supervisor"
                          f" program: {error}") from None
        names = [group.name for group in options.process_group_configs]
    if names != [program]:
        raise Refused(f"{path} defines {names}, expected [{program}]")


def apply_program(paths: AppPaths, expected: dict[PurePosixPath, str]) -> None:
    unit = program_unit(paths)
    staged = Staged.verified(unit, expected)
    try:
        parse_program(staged.new(paths.supervisor_program), paths.name)
        staged.make_live()
    finally:
        staged.clean_up()
    supervisorctl("reread")
    updated = supervisorctl("update", paths.name)
    if info_state(paths) not in ("RUNNING", "STARTING"):
        started = supervisorctl("start", paths.name)
        if info_state(paths) not in ("RUNNING", "STARTING"):
            raise Refused(f"supervisor could not start {paths.name}: "
                          + tail(updated.stdout + started.stdout + started.stderr, 5))
    record(unit)
    say(f"the {paths.name} supervisor program is live")


def info_state(paths: AppPaths) -> str:
    return process_info(paths.name, paths.root).get("statename", "")


def nginx_test_config(staged: Staged, site: str, test: str) -> str:
    """Write into `test` (a root-only temp dir) a copy of nginx's config in which the staged
    files (the site, its pair, or both) replace the live ones; returns the site's path
    there."""
    nginx = nginx_dir(staged.unit.root)
    enabled = nginx / "sites-enabled"
    with open(nginx / "nginx.conf") as conf:
        text = conf.read()
    if f"{enabled}/" not in text:
        raise Refused(f"nginx.conf does not include {enabled}/: cannot test the candidate")
    with open(os.path.join(test, "nginx.conf"), "w") as conf:
        conf.write(text.replace(f"{enabled}/", f"{test}/sites-enabled/"))
    os.mkdir(os.path.join(test, "sites-enabled"))
    with os.scandir(enabled) as entries:
        for entry in entries:
            if entry.name != site and os.path.exists(entry.path):
                os.symlink(os.path.realpath(entry.path),
                           os.path.join(test, "sites-enabled", entry.name))
    available = nginx / "sites-available" / site
    staged_site = available in staged.unit.files
    with open(staged.new(available) if staged_site else available) as source:
        content = source.read()
    for live in staged.unit.files:
        if live != available:
            content = content.replace(f" {live};", f" {staged.new(live)};")
    tested = os.path.join(test, "sites-enabled", site)
    with open(tested, "w") as file:
        file.write(content)
    return tested


def go_live_through_nginx(staged: Staged, site: str, what: str) -> None:
    """Make `staged` live once nginx takes it: `nginx -t` on a copy of the config with it,
    then live, the site enabled, and nginx reloaded (requests in flight finish); the
    previous files are put back if nginx refuses them once live. `what` names them."""
    root = staged.unit.root
    try:
        with tempfile.TemporaryDirectory(prefix="golive-nginx-") as test:
            tested = nginx_test_config(staged, site, test)
            checked = run(["nginx", "-t", "-q", "-c", os.path.join(test, "nginx.conf")])
        if checked.returncode != 0:
            raise Refused(f"{what} fails nginx -t; the live site is unchanged:\n"
                          + tail(checked.stderr.replace(tested, what), 10))
        staged.make_live()
        link_atomically(nginx_dir(root) / "sites-enabled" / site, f"../sites-available/{site}")
        applied = run(["nginx", "-t", "-q"])
        if applied.returncode == 0:
            accepting = nginx_workers(root)
            applied = run(["systemctl", "reload", "nginx"])
        if applied.returncode != 0:
            staged.put_back()
            raise Refused(f"nginx refused {what} once live; the previous one is back:\n"
                          + tail(applied.stderr, 10))
        wait_for_new_workers(root, accepting)
    finally:
        staged.clean_up()


NGINX_RELOAD_WAIT = 10  # seconds a reload may take to replace nginx's workers


def nginx_workers(root: PurePosixPath) -> set[int]:
    """The pids of nginx's workers that accept connections (not those finishing their
    requests after a reload, titled "worker process is shutting down")."""
    try:
        master = int((content_of(root / "run/nginx.pid") or b"").strip() or 0)
    except ValueError:
        return set()
    workers: set[int] = set()
    if not master:
        return workers
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                if int(stat_file.read().rsplit(")", 1)[1].split()[1]) != master:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if b"shutting down" not in cmdline.read():
                    workers.add(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return workers


def wait_for_new_workers(root: PurePosixPath, before: set[int]) -> None:
    """`systemctl reload nginx` only signals nginx: wait until workers of the new config
    accept connections and none of the old ones does, so that what the step reports live
    is what the next connection gets (at most NGINX_RELOAD_WAIT seconds; nginx keeps its
    old config if the new one fails to load, which nginx -t has ruled out)."""
    if not before:
        return
    deadline = time.monotonic() + NGINX_RELOAD_WAIT
    while time.monotonic() < deadline:
        now = nginx_workers(root)
        if now and not now & before:
            return
        time.sleep(0.05)


def apply_site(site: str, root: PurePosixPath, expected: dict[PurePosixPath, str],
               acme: bool = False) -> None:
    unit = site_unit(site, root, acme)
    staged = Staged.verified(unit, expected)
    if acme:
        make_placeholder_pair(site, root)
    go_live_through_nginx(staged, site, str(candidate(unit.files[0])))
    record(unit)
    say(f"the {site} nginx site is live")


# --- the site's certificate from an ACME CA (certbot) -----------------------------------

RENEW_BEFORE = 30 * 86400  # seconds: certbot's own default (renew_before_expiry)
CERTBOT_TIMEOUT = 300  # seconds one certbot run may take


def acme_webroot(root: PurePosixPath) -> PurePosixPath:
    """Where certbot writes HTTP-01 tokens and nginx serves them on port 80."""
    return root / "var/lib/wsgistack/acme"


def letsencrypt_dir(root: PurePosixPath) -> PurePosixPath:
    return root / "etc/letsencrypt"


def lineage(site: str, root: PurePosixPath) -> tuple[PurePosixPath, PurePosixPath]:
    """certbot's current certificate (with its chain) and key for the site's name."""
    live = letsencrypt_dir(root) / "live" / site
    return live / "fullchain.pem", live / "privkey.pem"


def renewal_config(site: str, root: PurePosixPath) -> PurePosixPath:
    return letsencrypt_dir(root) / "renewal" / f"{site}.conf"


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
    server, not_after, installed, names = "", 0.0, False, []
    for line in lines:
        text = line.strip()
        if text.startswith("server="):
            server = text.removeprefix("server=")
        elif text.startswith("notAfter="):
            with contextlib.suppress(ValueError):
                not_after = float(ssl.cert_time_to_seconds(text.removeprefix("notAfter=")))
        elif text == "installed=1":
            installed = True
        elif text.startswith("DNS:"):
            names += [name.strip().removeprefix("DNS:") for name in text.split(",")]
    return Certificate(server, tuple(sorted(names)), not_after, installed)


def certificate_lines(site: str, root: PurePosixPath) -> list[str]:
    """What the deploy's state read prints for the site's certificate, read here."""
    fullchain, privkey = lineage(site, root)
    config = content_of(renewal_config(site, root)) or b""
    lines = [f"server={line.partition('=')[2].strip()}" for line in config.decode().splitlines()
             if line.partition("=")[0].strip() == "server"]
    certbots = [content_of(fullchain), content_of(privkey)]
    if certbots[0] is not None:
        lines += run(["openssl", "x509", "-in", str(fullchain), "-noout", "-enddate", "-ext",
                      "subjectAltName"]).stdout.splitlines()
    live = [content_of(path) for path in tls_paths(site, root)]
    if None not in certbots and certbots == live:
        lines.append("installed=1")
    return lines


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


def certbot_failure(output: str) -> str:
    """certbot's reason in one line: each name the CA could not validate and why, else the
    CA's error (e.g. a rate limit), else certbot's last word."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    failed = []
    for index, line in enumerate(lines):
        if line.startswith("Domain:"):
            after = lines[index + 1:index + 4]
            kind = next((x.removeprefix("Type:").strip() for x in after if x.startswith("Type:")),
                        "")
            detail = next((x.removeprefix("Detail:").strip() for x in after
                           if x.startswith("Detail:")), "")
            failed.append(f"{line.removeprefix('Domain:').strip()}: {kind}: {detail}")
    if failed:
        return "; ".join(failed)
    said = [line for line in lines if not line.startswith(
        ("Saving debug log", "Ask for help", "See the logfile", "Some challenges have failed"))]
    found = next((index for index, line in enumerate(said) if " :: " in line),
                 next((index for index, line in enumerate(said) if "error" in line.lower()),
                      len(said) - 1))
    if found < 0:
        return "certbot failed"
    # A heading ("An unexpected error occurred:") says why on the line after it.
    return " ".join(said[found:found + 2]) if said[found].endswith(":") else said[found]


def obtain_certificate(site: str, names: list[str], directory: str, email: str,
                       ca_bundle: str | None, root: PurePosixPath) -> None:
    """Ask certbot for a certificate for `names` (HTTP-01, the webroot nginx serves), kept
    under the site's name; the CA's answer in one line if it fails."""
    command = [
        "certbot", "certonly", "--non-interactive", "--agree-tos", "--no-eff-email",
        "--email", email, "--server", directory, "--cert-name", site, "--force-renewal",
        # Its deploy hook (install-certificate) would wait for the lock this step holds:
        # this step makes the certificate live itself.
        "--no-directory-hooks",
        "--webroot", "--webroot-path", str(acme_webroot(root)),
        "--config-dir", str(letsencrypt_dir(root)),
        "--work-dir", str(root / "var/lib/letsencrypt"),
        "--logs-dir", str(root / "var/log/letsencrypt"),
        *(argument for name in names for argument in ("--domain", name))]
    environment = {**os.environ, "REQUESTS_CA_BUNDLE": ca_bundle} if ca_bundle else None
    try:
        result = run(command, env=environment, timeout=CERTBOT_TIMEOUT)
    except TimeoutError:
        raise Refused(f"certbot took over {CERTBOT_TIMEOUT}s asking {directory} for"
                      f" {', '.join(names)}; the current certificate keeps serving") from None
    if result.returncode != 0:
        raise Refused(f"no certificate for {', '.join(names)} from {directory}:"
                      f" {certbot_failure(result.stdout + result.stderr)}; the current"
                      " certificate keeps serving")


def install_certificate(site: str, root: PurePosixPath) -> bool:
    """Make certbot's certificate and key the pair nginx reads, through nginx -t; False if
    they already are (or certbot has none)."""
    unit = certificate_unit(site, root)
    sources = lineage(site, root)
    contents = {path: content_of(source) for path, source in zip(unit.files, sources, strict=True)}
    if None in contents.values() or all(content == content_of(path)
                                        for path, content in contents.items()):
        return False
    certificate, key = unit.files
    staged = Staged.of_content(unit, {certificate: (contents[certificate], 0o644),
                                      key: (contents[key], 0o600)})
    go_live_through_nginx(staged, site, f"certbot's certificate for {site}")
    return True


def make_placeholder_pair(site: str, root: PurePosixPath) -> None:
    """Where certbot has made no pair yet, a self-signed one, so that nginx can start and
    answer the CA's challenges on port 80; `golive certificate` replaces it."""
    certificate, key = tls_paths(site, root)
    if content_of(certificate) is not None and content_of(key) is not None:
        return
    with tempfile.TemporaryDirectory(dir=key.parent) as scratch:  # root's, closed to others
        made = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
                    f"/CN={site} placeholder until certbot's certificate", "-keyout",
                    f"{scratch}/key", "-out", f"{scratch}/crt"])
        if made.returncode != 0:
            raise Refused(f"openssl did not make the placeholder pair: {tail(made.stderr, 1)}")
        os.chmod(f"{scratch}/crt", 0o644)
        os.replace(f"{scratch}/key", key)
        os.replace(f"{scratch}/crt", certificate)


def certificate(site: str, names: list[str], directory: str, email: str,
                ca_bundle: str | None, root: PurePosixPath) -> None:
    """Obtain a certificate where the site's is missing, from another CA, for other names
    or close to expiring; then make it the live pair."""
    problem = certificate_problem(parse_certificate(certificate_lines(site, root)), names,
                                  directory, time.time())
    if problem:
        obtain_certificate(site, names, directory, email, ca_bundle, root)
    install_certificate(site, root)
    found = parse_certificate(certificate_lines(site, root))
    expires = time.strftime("%Y-%m-%d", time.gmtime(found.not_after))
    say(f"the certificate for {', '.join(found.names)} from {found.server} is live (expires"
        f" {expires}{'; it was new: ' + problem if problem else ''})")


def remove(paths: AppPaths, purge: bool) -> None:
    supervisorctl("stop", paths.name)
    for path in (paths.supervisor_program, candidate(paths.supervisor_program)):
        remove_path(path)
    supervisorctl("reread")
    supervisorctl("update", paths.name)
    for path in paths.leftovers() + (paths.purged() if purge else []):
        remove_path(path)
    if purge and made_by_the_deploy(paths.name):
        for command, database in (("userdel", "passwd"), ("groupdel", "group")):
            if run(["getent", database, paths.name]).returncode == 0:
                removed = run([command, paths.name])
                if removed.returncode != 0:
                    raise Refused(f"{command} {paths.name}: {removed.stderr.strip()}")
    say(f"{paths.name} is removed" + (" with its data and user" if purge else ""))


# --- the database host: PostgreSQL ----------------------------------------------------

POSTGRES = "postgres"
PG_VERSION = re.compile(r"^[0-9]{2}$")  # Debian's cluster dirs: /etc/postgresql/15/main
# A SCRAM-SHA-256 verifier as PostgreSQL stores it: what apps.json holds, never a password.
VERIFIER = re.compile(r"^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


def content_of(path: PurePosixPath) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return None


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


# --- command line -----------------------------------------------------------------------

def app_name(text: str) -> str:
    if not APP_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an app name")
    return text


def config_name(text: str) -> str:
    if not CONFIG_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an app's config file name")
    return text


def release_command(text: str) -> list[str]:
    argv = json.loads(text)
    if not (isinstance(argv, list) and argv and all(isinstance(arg, str) for arg in argv)):
        raise ValueError(f"{text!r} is not a JSON list of strings")
    return argv


def data_dir_name(text: str) -> str:
    if not DATA_DIR.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a dir name")
    return text


def pg_version(text: str) -> str:
    if not PG_VERSION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a PostgreSQL major version")
    return text


def version_name(text: str) -> str:
    if not VERSION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a version")
    return text


def config_options(step: argparse.ArgumentParser) -> None:
    step.add_argument("--config", type=config_name, metavar="NAME",
                      help="the app's own config file in /etc/APP/, if it has one")
    step.add_argument("--config-env", metavar="VAR", help="the variable naming it to the app")


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="golive", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--root", type=PurePosixPath, default=ROOT,
                     help="where the host's paths start (tests use a scratch dir)")
    steps = cli.add_subparsers(dest="step", required=True)
    step = steps.add_parser("switch", help="make an app's config and release live")
    step.add_argument("app", type=app_name)
    step.add_argument("version", type=version_name)
    config_options(step)
    step.add_argument("--prefix", required=True)
    for option in ("--workers", "--graceful-timeout", "--keep-releases", "--keep-backups"):
        step.add_argument(option, type=int, required=True)
    step.add_argument("--expect", nargs="+", required=True, metavar="FILE=SHA256")
    step.add_argument("--release-command", type=release_command, action="append", default=[],
                      metavar='\'["ARGV", ...]\'', help="run before the switch (JSON argv)")
    step.add_argument("--shared-database", action="store_true",
                      help="the environment's data: migrated once for all hosts, not here")
    step = steps.add_parser("migrate", help="back up the environment's database and run the"
                            " release commands, once for all its hosts")
    step.add_argument("app", type=app_name)
    step.add_argument("version", type=version_name)
    config_options(step)
    step.add_argument("--prefix", required=True)
    step.add_argument("--keep-backups", type=int, required=True)
    step.add_argument("--database-env", metavar="VAR", help="the variable holding its URL")
    step.add_argument("--release-command", type=release_command, action="append", required=True,
                      metavar='\'["ARGV", ...]\'', help="run as the app's user (JSON argv)")
    step = steps.add_parser("database", help="make PostgreSQL's settings and roles live")
    step.add_argument("version", type=pg_version)
    step.add_argument("--expect", nargs="+", required=True, metavar="FILE=SHA256")
    steps.add_parser("database-check", help="\"ok\", or how the roles differ from apps.json")
    step = steps.add_parser("database-backup", help="dump each app's database (as postgres)")
    step.add_argument("--keep", type=int, required=True, help="dumps kept of each")
    step = steps.add_parser("build", help="run a new release's build commands")
    step.add_argument("app", type=app_name)
    step.add_argument("version", type=version_name)
    config_options(step)
    step.add_argument("--prefix", required=True)
    step.add_argument("--build-command", type=release_command, action="append", required=True,
                      metavar='\'["ARGV", ...]\'', help="run as the build user (JSON argv)")
    step.add_argument("--build-user", default=BUILD_USER,
                      help=f"who runs them, in the app's group (default {BUILD_USER})")
    step = steps.add_parser("program", help="make an app's supervisor program live")
    step.add_argument("app", type=app_name)
    step.add_argument("--expect", nargs="+", required=True, metavar="FILE=SHA256")
    step = steps.add_parser("site", help="make the nginx site and TLS pair live")
    step.add_argument("site", type=app_name)
    step.add_argument("--expect", nargs="+", required=True, metavar="FILE=SHA256")
    step.add_argument("--acme", action="store_true",
                      help="the pair is certbot's (golive certificate), not a candidate")
    step = steps.add_parser("certificate", help="obtain the site's certificate from an ACME"
                            " CA where due, and make it live")
    step.add_argument("site", type=app_name)
    step.add_argument("--name", action="append", required=True, dest="names",
                      help="a name the certificate is for (repeated)")
    step.add_argument("--directory", required=True, help="the CA's ACME directory URL")
    step.add_argument("--email", required=True, help="the account's contact")
    step.add_argument("--ca-bundle", help="CA certificates for the directory's HTTPS")
    step = steps.add_parser("install-certificate", help="make certbot's renewed certificate"
                            " live (certbot's deploy hook)")
    step.add_argument("site", type=app_name)
    step = steps.add_parser("releases", help="an app's complete releases, oldest first")
    step.add_argument("app", type=app_name)
    step = steps.add_parser("run", help="run a command as the app, in its live release")
    step.add_argument("app", type=app_name)
    config_options(step)
    step.add_argument("--prefix", default="", help="its URL prefix (SCRIPT_NAME)")
    step.add_argument("--env", action="append", default=[], metavar="NAME", dest="passed",
                      help="pass the caller's variable NAME on (repeated; none is by default)")
    step.add_argument("argv", nargs="+", metavar="-- ARGV")
    step = steps.add_parser("data-dir", help="make a dir of the app's own in its data dir, as"
                            " its user")
    step.add_argument("app", type=app_name)
    step.add_argument("name", type=data_dir_name)
    step = steps.add_parser("remove", help="remove an app marked absent")
    step.add_argument("app", type=app_name)
    step.add_argument("--purge", action="store_true", help="its data, logs and user too")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    root = args.root
    if args.step == "releases":
        print("\n".join(installed_releases(AppPaths(args.app, root))[0]))
        return 0
    if args.step == "database-check":
        print(database_check(root))
        return 0
    if args.step == "database-backup":
        try:
            backup_databases(root, args.keep)
        except (Refused, OSError, ValueError, KeyError) as error:
            say(f"golive database-backup: {error}", err=True)
            return 1
        return 0
    if args.step == "run":
        try:
            return run_in_app(AppPaths(args.app, root), Config(args.config, args.config_env),
                              args.prefix, args.argv, args.passed)
        except (Refused, OSError) as error:
            say(f"golive run: {error}", err=True)
        return 1
    if args.step == "data-dir":
        try:
            data_dir(AppPaths(args.app, root), args.name)
        except (Refused, OSError) as error:
            say(str(error), err=True)
            return 1
        return 0
    keep_going_without_the_controller()
    try:
        with deploy_lock(root):
            if args.step == "switch":
                switch(AppPaths(args.app, root), args.version,
                       Config(args.config, args.config_env), args.prefix,
                       args.workers, args.graceful_timeout, args.keep_releases,
                       args.keep_backups, parse_expect(args.expect), args.release_command,
                       args.shared_database)
            elif args.step == "migrate":
                migrate(AppPaths(args.app, root), args.version,
                        Config(args.config, args.config_env), args.prefix, args.keep_backups,
                        args.database_env, args.release_command)
            elif args.step == "database":
                apply_database(args.version, root, parse_expect(args.expect))
            elif args.step == "build":
                build_release(AppPaths(args.app, root), args.version,
                              Config(args.config, args.config_env), args.prefix,
                              args.build_command, args.build_user)
            elif args.step == "program":
                apply_program(AppPaths(args.app, root), parse_expect(args.expect))
            elif args.step == "site":
                apply_site(args.site, root, parse_expect(args.expect), args.acme)
            elif args.step == "certificate":
                certificate(args.site, args.names, args.directory, args.email, args.ca_bundle,
                            root)
            elif args.step == "install-certificate":
                if install_certificate(args.site, root):
                    say(f"certbot's renewed certificate for {args.site} is live")
            else:
                remove(AppPaths(args.app, root), args.purge)
    except Refused as refusal:
        say(str(refusal), err=True)
        return 1
    except OSError as error:
        say(f"golive {args.step}: {error}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
