"""Where things are on a host, declared once: each app's paths, root's own dirs, the
names that become paths, and the units (files that go live together, and their stamp).
The controller renders and reads the same paths from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

ROOT = PurePosixPath("/")
MARKER = ".wheelhouse-digest"  # a release is complete once this file is written, last
CANDIDATE = ".next"  # a config file's candidate, beside it: `<file>.next`
# Build commands run as this user (never the app's: the running app must not reach what the
# next release is built from), in the app's group to read its config; made by the deploy.
BUILD_USER = "wsgistack-build"


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

    @property
    def wheels(self) -> PurePosixPath:
        """The wheels the release was installed from: hard links into the app's store."""
        return self.path / "wheels"

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
        """The last upload: the wheels the host lacked and the release's requirements."""
        return self.home / "wheelhouse"

    @property
    def wheels(self) -> PurePosixPath:
        """Every wheel of the installed releases, once: `<digest>-<file name>`, each
        hard-linked into the releases that hold it (gone with the last of them)."""
        return self.home / "wheels"

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
    return path.with_name(path.name + CANDIDATE)


def stamps_dir(root: PurePosixPath) -> PurePosixPath:
    return root / "var/lib/wsgistack/applied"


def herder(root: PurePosixPath) -> PurePosixPath:
    return root / "usr/local/lib/wsgistack/gunicorn-herder"


def supervisor_query(root: PurePosixPath) -> PurePosixPath:
    return root / "usr/local/lib/wsgistack/supervisor-query"


def uv_program(root: PurePosixPath, version: str) -> PurePosixPath:
    """uv, which installs each release's packages from its wheelhouse: named by its version,
    so a host that has it has that one."""
    return root / f"usr/local/lib/wsgistack/uv-{version}"


def build_dir(root: PurePosixPath) -> PurePosixPath:
    """Root's dir of the builds under way: one dir each, the build user's."""
    return root / "var/lib/wsgistack/build"


def installed_packages(root: PurePosixPath) -> PurePosixPath:
    """What the deploy's installs gained (dependencies too), one a line: destroy's record."""
    return root / "var/lib/wsgistack/installed-packages"


def installed_accounts(root: PurePosixPath) -> PurePosixPath:
    """The users and groups those packages made ("user postgres"): destroy removes them once
    it has purged every package of the record."""
    return root / "var/lib/wsgistack/installed-accounts"


def installed_paths(root: PurePosixPath) -> PurePosixPath:
    """What those packages change that the host may have had before (/etc/default/locale),
    as it was before the deploy's first install: destroy puts it back (JSON, root's)."""
    return root / "var/lib/wsgistack/installed-paths.json"


def packages_pending(root: PurePosixPath) -> PurePosixPath:
    """Root's note of a background install under way (golive packages.py)."""
    return root / "var/lib/wsgistack/packages-run/pending.json"


def restic_cache(root: PurePosixPath) -> PurePosixPath:
    """restic's cache on a web host (root's; not in root's home)."""
    return root / "var/lib/wsgistack/restic-cache"


def backup_outcome(kind: str, root: PurePosixPath) -> PurePosixPath:
    """On a database host: how its last pgBackRest backup of `kind` (full, diff) went."""
    return stamps_dir(root) / f"pgbackrest-{kind}"


def history_log(root: PurePosixPath) -> PurePosixPath:
    """Every go-live step that changed the host, a JSON line each: root's alone."""
    return root / "var/log/wsgistack/history.log"


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


def backup_store(root: PurePosixPath, sender: str) -> PurePosixPath:
    """On a backup host: a root-owned chroot per sender ("": the dir of them all); the
    sender's own dir inside it (`repository`) is all it can reach."""
    return root / "srv/wsgistack-backups" / sender


def backup_dir(root: PurePosixPath) -> PurePosixPath:
    """On a database host: pgBackRest's config (with the repository's key), the SSH key and
    the backup host's known key, root:postgres, closed to others."""
    return root / "etc/wsgistack/backup"


def repository_mount(root: PurePosixPath) -> PurePosixPath:
    """On a database host: where postgres mounts its repository from the backup host."""
    return root / "var/lib/wsgistack/pgbackrest"


def backup_sftp_dir(root: PurePosixPath) -> PurePosixPath:
    """On a backup host: the config of the sshd that lets the senders in (root's)."""
    return root / "etc/wsgistack/backup-store"


def backup_store_unit(root: PurePosixPath = ROOT) -> Unit:
    """The backup host's SFTP for its senders: an sshd of its own (their accounts SFTP only,
    chrooted, by key, on a port firewalled to them), and the host's own sshd's drop-in that
    refuses them."""
    return Unit("backup-store", (backup_sftp_dir(root) / "sshd_config",
                                 root / "etc/ssh/sshd_config.d/wsgistack-backups.conf"),
                root=root)


def data_sent(app: str, root: PurePosixPath = ROOT) -> PurePosixPath:
    """When the app's data last reached the backup host (UTC), for the deploy summary."""
    return stamps_dir(root) / f"data-sent-{app}"


def app_backups_unit(root: PurePosixPath = ROOT) -> Unit:
    """On a web host: restic's settings (the backup host's repository, the apps whose data
    goes there) and its key, live once the repository opens with them."""
    return Unit("app-backups", (backup_dir(root) / "restic.json",
                                backup_dir(root) / "restic-password"), root=root)


def archiving_unit(root: PurePosixPath = ROOT) -> Unit:
    """pgBackRest's config on the database host: live once its stanza checks out."""
    return Unit("pgbackrest", (backup_dir(root) / "pgbackrest.conf",), root=root)


def database_ca(root: PurePosixPath) -> PurePosixPath:
    """On a web host: the database server's certificate, which its clients pin."""
    return tls_dir(root) / "database.crt"


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
