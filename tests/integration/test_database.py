"""One PostgreSQL for an environment's web hosts: production = 2 web hosts + 1 database
host, deployed by the same run as staging's single host, which keeps SQLite; and its
backup host, where the database is archived (pgBackRest): restored to a point in time, and
onto a new bare host put where the database host was.

The database host has no way in from the controller, only through production1, as a
database host normally sits (`sandbox up --behind production-db1=production1`): deployed
through its jump host, and stopped with one clear line when either hop's host key changes.

A sandbox of its own; the tests run in order, each leaving the environment converged for
the next.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.integration import parents
from tests.integration.helpers import (
    BACKUP_PASSPHRASE,
    DATABASE_PASSWORD,
    FLASKTODO_VERSION,
    Deployed,
    Run,
    app_release,
    apps_data,
    deploy,
    deploy_environment,
    http,
    own_sandbox,
    sandbox_cli,
    wait_for_http_ok,
)
from tests.integration.load import Load
from wsgistack.components import backup, database
from wsgistack.config.environment import Environment as WhereEnvironment
from wsgistack.config.environment import Member

NAME, SUBNET = "idb", "10.188.0.0/24"
# PostgreSQL closes a WAL segment for the archive within this many seconds (the setting's
# least): what a lost database host may cost, waited for by the lost-host test.
ARCHIVE_TIMEOUT = ("--data", "backup_archive_timeout=5")
BACKUP_PORT = 2222  # backup_port's default
PASSWORD = DATABASE_PASSWORD
SERVER_NAME = {"staging": "staging.flasktodo.test", "production": "flasktodo.test"}
PSQL = ("psql -X -A -t -v ON_ERROR_STOP=1 \"host={host} dbname=flasktodo user=flasktodo"
        " sslmode={sslmode} sslrootcert=/etc/ssl/wsgistack/database.crt connect_timeout=5\"")
# FlaskTODO's next migration, expand-only: the release before it keeps working on it.
NOTE_COLUMN = ('(2, "a note on each item", {"sqlite": "ALTER TABLE items ADD COLUMN note TEXT'
               ' NOT NULL DEFAULT \'\'", "postgresql": "ALTER TABLE items ADD COLUMN note text'
               ' NOT NULL DEFAULT \'\'"}),')
BROKEN = ('(3, "a broken migration", {"sqlite": "SELECT no_such_function()",'
          ' "postgresql": "SELECT no_such_function()"}),')


class Environment(Deployed):
    @property
    def web(self) -> list[dict]:
        return self.sandbox.hosts("production")[:2]

    @property
    def database(self) -> dict:
        return self.sandbox.host("production-db1")

    @property
    def backup(self) -> dict:
        return self.sandbox.host("production-backup1")

    def archived(self) -> None:
        """Every write so far on the backup host: the WAL segment in use closed, and
        archived."""
        segment = self.sql("SELECT pg_walfile_name(pg_switch_wal())")
        deadline = time.monotonic() + 60
        while self.sql("SELECT last_archived_wal FROM pg_stat_archiver") < segment:
            assert time.monotonic() < deadline, f"{segment} was not archived within 60 s"
            time.sleep(0.5)

    def titles(self, host: dict) -> list[str]:
        """The items' titles as the app on a web host lists them."""
        status, _headers, body = http(host["address"], "/flasktodo/api/items", "flasktodo.test")
        assert status == 200, body
        return [item["title"] for item in json.loads(body)["items"]]

    def sql(self, query: str) -> str:
        """A query in FlaskTODO's database, as postgres on the database host."""
        return self.ssh(self.database, f"cd / && runuser -u postgres -- psql -X -A -t -d flasktodo"
                                       f" -c {json.dumps(query)}").strip()

    def deploy(self, *args: str, entry: str = "deploy.py") -> Run:
        return super().deploy(*args, *ARCHIVE_TIMEOUT, entry=entry)

    def archived_since(self, moment: float, timeout: float = 60) -> float:
        """Seconds until PostgreSQL archived a segment closed after `moment` (by itself: no
        forced switch)."""
        while True:
            archived = float(self.sql("SELECT coalesce(extract(epoch FROM last_archived_time),"
                                      " 0) FROM pg_stat_archiver"))
            if archived > moment:
                return archived - moment
            assert time.time() < moment + timeout, f"nothing archived within {timeout} s"
            time.sleep(0.5)

    def live(self, host: dict) -> str:
        return self.ssh(host, "readlink /opt/flasktodo/current").strip()

    def reaches(self, host: dict, address: str, port: int) -> bool:
        """Whether `host` opens a TCP connection to address:port within 5 s."""
        return self.ssh(host, f"timeout 5 bash -c 'echo > /dev/tcp/{address}/{port}'"
                              " && echo open || echo refused", check=False).split() == ["open"]


def reachable(address: str, port: int) -> bool:
    """Whether the controller opens a TCP connection to address:port within 5 s."""
    return subprocess.run(["timeout", "5", "bash", "-c", f"echo > /dev/tcp/{address}/{port}"],
                          capture_output=True).returncode == 0


def with_migration(parent: Path, version: str, migration: str) -> Path:
    """FlaskTODO as `version`, with `migration` added to its list."""
    source = app_release(parent, version)
    db = source / "src/flasktodo/db.py"
    db.write_text(db.read_text().replace("\n]\nSCHEMA_VERSION", f"\n    {migration}\n]\n"
                                         "SCHEMA_VERSION", 1))
    return source


@pytest.fixture(scope="module")
def environment(secrets_dir: Path) -> Iterator[Environment]:
    with own_sandbox(NAME, SUBNET, "staging=1,production=2,production-db=1,production-backup=1",
                     options=("--behind", "production-db1=production1")) as sandbox:
        first = deploy_environment(sandbox, secrets_dir, "-y", *ARCHIVE_TIMEOUT)
        yield Environment(sandbox, secrets_dir, first)


def test_the_database_host_comes_first_and_a_second_run_changes_nothing(
        environment: Environment) -> None:
    first = environment.first.succeeded()
    lines = first.output.splitlines()

    def started(operation: str) -> int:
        return next(number for number, line in enumerate(lines)
                    if line.startswith("--> Starting operation:") and operation in line)

    assert started("Make PostgreSQL 15's settings") < started("Migrate flasktodo's production")
    assert started("Migrate flasktodo's production") < started("Switch flasktodo")
    assert re.search(r"idb-production-db1: PostgreSQL 15 at \S+ for flasktodo; archiving to the"
                     r" backup host from this run on  ok", first.output)
    assert environment.deploy("-y").succeeded().changed_ops() == []
    dry = environment.deploy("--dry", "--debug").succeeded()
    assert dry.planned_changes() == []
    for run in (first, dry):
        assert PASSWORD not in run.output, "the password never in pyinfra's output"
    reads = re.findall(r"Running command on ([^:\s]+)", dry.output)
    assert sorted(reads) == sorted(host["name"] for host in environment.sandbox.hosts()), \
        "one command per host (the one behind its jump host too): its state read"


def test_the_controller_reaches_the_database_host_only_through_its_jump_host(
        environment: Environment) -> None:
    with pytest.raises(OSError):
        socket.create_connection((environment.database["address"], 22), timeout=3).close()
    socket.create_connection((environment.web[0]["address"], 22), timeout=3).close()
    assert environment.ssh(environment.database, "hostname").strip() == \
        environment.database["name"], "the tests reach it as the deploy does: through production1"


@pytest.mark.parametrize("hop", ["production-db1", "production1"])
def test_a_changed_host_key_on_either_hop_stops_the_host_behind_with_one_line(
        environment: Environment, hop: str) -> None:
    changed = environment.sandbox.host(hop)
    known_hosts = Path(environment.sandbox.manifest["known_hosts"])
    kept = known_hosts.read_text()
    other = {line.split()[1]: line.split(None, 1)[1] for line in kept.splitlines()
             if line.startswith(environment.web[1]["address"] + ",")}
    known_hosts.write_text("".join(
        (f"{line.split()[0]} {other[line.split()[1]]}"
         if line.startswith(changed["address"] + ",") else line) + "\n"
        for line in kept.splitlines()))
    try:
        run = environment.deploy("--limit", "production", "-y")
    finally:
        known_hosts.write_text(kept)
    assert run.returncode != 0
    assert "Traceback" not in run.output, "one line, not pyinfra's crash"
    assert re.search(rf"\[{NAME}-production-db1\] +SSH host key error \(Host key for"
                     rf" {re.escape(changed['address'])} does not match\.\)", run.output)
    assert f"{NAME}-production-db1: UNREACHABLE: not deployed" in run.output
    assert f"{NAME}-production2: https://" in run.output, "the other hosts go on"
    assert environment.deploy("--limit", "production", "-y").succeeded().changed_ops() == []


def test_an_item_added_through_one_web_host_is_listed_through_the_other(
        environment: Environment) -> None:
    one, two = environment.web
    status, _headers, body = http(one["address"], "/flasktodo/api/items", "flasktodo.test",
                                  method="POST", data=b'{"title": "added through one"}',
                                  headers={"Content-Type": "application/json"})
    assert status == 201, body
    status, _headers, body = http(two["address"], "/flasktodo/api/items", "flasktodo.test")
    assert "added through one" in [item["title"] for item in json.loads(body)["items"]]
    assert environment.sql("SELECT title FROM items") == "added through one"


def test_only_the_environments_web_hosts_reach_postgresql(environment: Environment) -> None:
    """The firewall answers the web hosts only; pg_hba.conf takes TLS and the password."""
    one, _two = environment.web
    address = environment.database["address"]
    right = environment.ssh(one, f"PGPASSWORD={PASSWORD} " + PSQL.format(
        host=address, sslmode="verify-full") + " -c 'SELECT 1'")
    assert right.strip() == "1", "the app's role, over TLS to the pinned certificate"
    wrong = environment.ssh(one, "PGPASSWORD=not-the-password " + PSQL.format(
        host=address, sslmode="verify-full") + " -c 'SELECT 1'", check=False)
    assert "password authentication failed" in wrong
    plain = environment.ssh(one, f"PGPASSWORD={PASSWORD} " + PSQL.format(
        host=address, sslmode="disable") + " -c 'SELECT 1'", check=False)
    assert "no pg_hba.conf entry" in plain or "rejects connection" in plain, plain
    staging = environment.sandbox.hosts("staging")[0]
    assert not environment.reaches(staging, address, 5432), "staging is not production"
    assert not reachable(address, 5432), "the controller is no web host of production"


def test_secrets_stay_in_root_and_app_only_files(environment: Environment) -> None:
    database = environment.sandbox.testinfra(environment.database)
    for path, mode in (("/etc/wsgistack/postgresql/server.key", 0o640),
                       ("/etc/wsgistack/postgresql/apps.json", 0o640),
                       ("/etc/wsgistack/postgresql/pg_hba.conf", 0o640)):
        file = database.file(path)
        assert (file.user, file.group, file.mode) == ("root", "postgres", mode), path
    assert database.file("/etc/wsgistack/postgresql").mode == 0o750
    roles = database.file("/etc/wsgistack/postgresql/apps.json").content_string
    assert "SCRAM-SHA-256$4096:" in roles and PASSWORD not in roles
    assert database.service("wsgistack-firewall@postgresql").is_enabled
    assert database.service("wsgistack-database-backup.timer").is_enabled
    assert database.socket(f"tcp://{environment.database['address']}:5432").is_listening
    assert not database.socket("tcp://0.0.0.0:5432").is_listening, "its private address only"
    web = environment.sandbox.testinfra(environment.web[0])
    env = web.file("/etc/flasktodo/env")
    assert (env.user, env.group, env.mode) == ("root", "flasktodo", 0o640)
    assert "DATABASE_URL=" in env.content_string and PASSWORD in env.content_string
    assert PASSWORD not in web.file("/etc/supervisor/conf.d/flasktodo.conf").content_string
    assert web.file("/etc/ssl/wsgistack/database.crt").mode == 0o644


def test_root_never_acts_below_a_dir_postgres_can_write(environment: Environment) -> None:
    """Every path the deploy manages or golive touches on the database host: no dir above
    it is writable by another user than root, but for the one line in the cluster's conf.d
    that includes our settings, which golive writes and reads as postgres."""
    settings = parents.layout_settings()
    view = database.view_of(settings, database_environment(environment),
                            {"flasktodo": PASSWORD})
    listed = "\n".join(parents.database_host_paths(view))
    found = environment.ssh(environment.database, "python3 -c"
                            f" {shlex.quote(parents.UNSAFE_PARENTS)} <<'EOF'\n{listed}\nEOF")
    assert "/etc/postgresql/15/main/conf.d/wsgistack.conf" in found, "the check checks"
    assert parents.unsafe(found, parents.handled_by_their_owner(settings)) == []
    include = environment.ssh(environment.database, "stat -c '%U %a' /etc/postgresql/15/main/"
                              "conf.d/wsgistack.conf; ls /etc/postgresql/15/main/conf.d")
    assert include.split() == ["postgres", "644", "wsgistack.conf"], include


def test_root_never_acts_below_a_dir_another_user_can_write_on_the_backup_host(
        environment: Environment) -> None:
    """The store's account writes only its own `repository`, which root makes (in root's
    dir) and never looks into."""
    senders = backup.senders(replace(database_environment(environment), backup=Member(
        environment.backup["name"], environment.backup["address"])))
    assert [sender.member.name for sender in senders] == [
        environment.database["name"], *(host["name"] for host in environment.web)]
    listed = "\n".join(parents.backup_host_paths(senders))
    found = environment.ssh(environment.backup, "python3 -c"
                            f" {shlex.quote(parents.UNSAFE_PARENTS)} <<'EOF'\n{listed}\nEOF")
    assert parents.unsafe(found, {}) == []
    for sender in senders:
        store = f"/srv/wsgistack-backups/{sender.store}"
        owners = environment.ssh(environment.backup, f"stat -c '%U %a' {store} {store}/repository")
        assert owners.split() == ["root", "755", sender.account, "700"], owners


def database_environment(environment: Environment) -> WhereEnvironment:
    """The production environment as the inventory holds it: its web hosts and database."""
    return WhereEnvironment("production", tuple(Member(host["name"], host["address"])
                                                for host in environment.web),
                            Member(environment.database["name"],
                                   environment.database["address"]))


def test_staging_with_no_database_host_keeps_sqlite(environment: Environment) -> None:
    staging = environment.sandbox.hosts("staging")[0]
    host = environment.sandbox.testinfra(staging)
    assert "DATABASE_URL" not in host.file("/etc/flasktodo/env").content_string
    assert host.file("/var/lib/flasktodo/flasktodo.sqlite3").is_file
    status, _headers, _body = http(staging["address"], "/flasktodo/healthz",
                                   SERVER_NAME["staging"])
    assert status == 200


def test_a_schema_change_rolls_across_production_under_load_with_zero_failures(
        environment: Environment, tmp_path: Path) -> None:
    source = with_migration(tmp_path, "1.2.0", NOTE_COLUMN)
    one, two = environment.web
    with Load(one["address"], "/flasktodo/api/items", "flasktodo.test") as first_load, \
            Load(two["address"], "/flasktodo/api/items", "flasktodo.test") as second_load:
        run = environment.deploy("--limit", "production", "--data", apps_data(source), "-y")
    run.succeeded()
    for load in (first_load, second_load):
        assert load.result.requests > 50 and load.result.failures == 0, load.result
    assert [environment.live(host) for host in (one, two)] == ["releases/1.2.0"] * 2
    assert environment.sql("SELECT max(version) FROM schema_migrations") == "2"
    dumps = [environment.ssh(host, "ls /var/lib/flasktodo/backups/ | grep -c"
                                   " 'before-1.2.0.dump$' || true").strip() for host in (one, two)]
    assert dumps == ["1", "0"], "one pg_dump, by the host that migrated, before it did"
    assert "added through one" in environment.sql("SELECT title FROM items")


def test_a_failing_migration_switches_no_host(environment: Environment, tmp_path: Path) -> None:
    source = with_migration(tmp_path, "1.3.0", NOTE_COLUMN + "\n    " + BROKEN)
    run = environment.deploy("--limit", "production", "--data", apps_data(source), "-y")
    assert run.returncode != 0
    assert "flasktodo 1.3.0: the release command `flasktodo migrate` failed" in run.output
    one, two = environment.web
    assert [environment.live(host) for host in (one, two)] == ["releases/1.2.0"] * 2
    assert environment.sql("SELECT max(version) FROM schema_migrations") == "2"
    for host in (one, two):
        status, _headers, body = http(host["address"], "/flasktodo/healthz", "flasktodo.test")
        assert status == 200 and json.loads(body)["version"] == "1.2.0"


def test_rolling_the_code_back_keeps_the_migrated_schema_and_works_on_it(
        environment: Environment) -> None:
    """Expand/contract: a rollback does not undo a migration, and needs not, because each
    migration keeps the release before it working."""
    run = environment.deploy("--limit", "production", "--data",
                             f'rollback_to="{FLASKTODO_VERSION}"', "-y", entry="rollback.py")
    run.succeeded()
    assert "Migrate" not in run.output
    assert environment.sql("SELECT max(version) FROM schema_migrations") == "2"
    for host in environment.web:
        assert environment.live(host) == f"releases/{FLASKTODO_VERSION}"
        status, _headers, body = http(host["address"], "/flasktodo/api/items", "flasktodo.test")
        assert status == 200 and "added through one" in body


def test_the_daily_dump_restores_into_a_scratch_database(environment: Environment) -> None:
    database = environment.database
    environment.ssh(database, "systemctl start wsgistack-database-backup.service")
    [dump] = environment.ssh(database, "ls /var/lib/wsgistack/database-backups/").split()
    assert re.fullmatch(r"flasktodo-\d{8}T\d{6}Z\.dump", dump)
    # README, "Backups": the restore, into a scratch database first.
    environment.ssh(database, "cd / && runuser -u postgres -- createdb scratch"
                              " && runuser -u postgres -- pg_restore --no-owner -d scratch"
                              f" /var/lib/wsgistack/database-backups/{dump}")
    restored = environment.ssh(database, "cd / && runuser -u postgres -- psql -X -A -t -d scratch"
                                         " -c 'SELECT title FROM items'")
    assert "added through one" in restored
    # ...then over the app's own, its web hosts stopped meanwhile: an item added since the
    # dump is gone, the dumped one back.
    one, two = environment.web
    http(one["address"], "/flasktodo/api/items", "flasktodo.test", method="POST",
         data=b'{"title": "added after the dump"}', headers={"Content-Type": "application/json"})
    for host in (one, two):
        environment.ssh(host, "supervisorctl stop flasktodo")
    environment.ssh(database, "cd / && runuser -u postgres -- pg_restore --clean --if-exists"
                              " --no-owner --role=flasktodo -d flasktodo"
                              f" /var/lib/wsgistack/database-backups/{dump}")
    for host in (one, two):
        environment.ssh(host, "supervisorctl start flasktodo")
        wait_for_http_ok(host["address"], "/flasktodo/api/items", 30,
                         host_header="flasktodo.test")
    status, _headers, body = http(two["address"], "/flasktodo/api/items", "flasktodo.test")
    titles = [item["title"] for item in json.loads(body)["items"]]
    assert status == 200 and titles == ["added through one"], titles


def test_a_database_reboot_is_503_while_down_and_heals_by_itself(
        environment: Environment) -> None:
    sandbox_cli(NAME, "stop", "production-db1")
    try:
        for host in environment.web:
            status, _headers, body = http(host["address"], "/flasktodo/healthz",
                                          "flasktodo.test")
            assert status == 503 and json.loads(body)["status"] == "error", body
            assert "RUNNING" in environment.ssh(host, "supervisorctl status flasktodo")
    finally:
        sandbox_cli(NAME, "restart", "production-db1")
    for host in environment.web:
        deadline = time.monotonic() + 60
        while True:
            status, _headers, body = http(host["address"], "/flasktodo/healthz",
                                          "flasktodo.test")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == 200, body
        assert "RUNNING" in environment.ssh(host, "supervisorctl status flasktodo")


# --- the backup host ------------------------------------------------------------------------

REPOSITORY = "/srv/wsgistack-backups/database/repository"
PGBACKREST = ("cd / && runuser -u postgres -- pgbackrest"
              " --config=/etc/wsgistack/backup/pgbackrest.conf --stanza=production")


def add_item(environment: Environment, title: str) -> None:
    status, _headers, body = http(environment.web[0]["address"], "/flasktodo/api/items",
                                  "flasktodo.test", method="POST",
                                  data=json.dumps({"title": title}).encode(),
                                  headers={"Content-Type": "application/json"})
    assert status == 201, body


def test_the_database_is_archived_encrypted_to_the_backup_host(
        environment: Environment) -> None:
    add_item(environment, "needle-7f3a9c in the haystack")
    environment.archived()
    info = json.loads(environment.ssh(environment.database, f"{PGBACKREST} --output=json info"))
    [stanza] = info
    assert stanza["status"]["code"] == 0 and stanza["cipher"] == "aes-256-cbc"
    assert [backup["type"] for backup in stanza["backup"]] == ["full"], "the first, at deploy"
    backup = environment.backup
    files = environment.ssh(backup, f"find {REPOSITORY} -type f -name '*.gz'").split()
    assert len(files) >= 3, files
    assert environment.ssh(backup, f"grep -rl needle-7f3a9c {REPOSITORY} || true") == ""
    # Not merely compressed: encrypted (gzip cannot read what pgBackRest wrote).
    unreadable = environment.ssh(backup, "for f in " + " ".join(map(shlex.quote, files[:3]))
                                 + "; do gzip -t \"$f\" 2>/dev/null || echo unreadable; done")
    assert unreadable.split() == ["unreadable"] * 3
    assert BACKUP_PASSPHRASE not in environment.ssh(backup, f"grep -r {BACKUP_PASSPHRASE}"
                                                            " /etc /srv /var/log || true")
    summary = environment.deploy("--limit", "production", "-y").succeeded().output
    assert re.search(r"idb-production-db1: PostgreSQL 15 at \S+ for flasktodo; WAL archived"
                     r" \d+ s ago; newest backup: full at \S+ \S+ UTC  ok", summary), summary


def test_the_backup_store_answers_its_senders_alone_on_a_port_of_its_own(
        environment: Environment) -> None:
    """The senders' sshd: its port answers the environment's hosts alone; the host's own
    sshd refuses their accounts, whatever key they bring."""
    address = environment.backup["address"]
    assert environment.reaches(environment.web[1], address, BACKUP_PORT)
    staging = environment.sandbox.hosts("staging")[0]
    assert not environment.reaches(staging, address, BACKUP_PORT), "staging is not production"
    assert not reachable(address, BACKUP_PORT), "the controller sends no backup"
    assert reachable(address, 22), "the host's own sshd is the deploy's way in"
    store = environment.sandbox.testinfra(environment.backup)
    assert store.service("wsgistack-backup-sftp").is_running
    assert store.service("wsgistack-backup-sftp").is_enabled
    assert store.service("wsgistack-firewall@backups").is_enabled
    own_port = environment.ssh(environment.database, "cd / && echo ls | runuser -u postgres --"
                               " sftp -b - -P 22 -i /etc/wsgistack/backup/ssh_key -o"
                               " StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o"
                               f" BatchMode=yes wsgistack-db-backups@{address}", check=False)
    assert "Permission denied" in own_port and "archive" not in own_port, own_port


def test_the_repository_lets_in_the_database_host_alone(environment: Environment) -> None:
    """The database host's key is all its account takes, from the database host's address
    alone, for SFTP alone: the same key on a web host is refused."""
    sftp = (f"sftp -b - -P {BACKUP_PORT} -i {{key}} -o UserKnownHostsFile="
            "/etc/wsgistack/backup/known_hosts -o BatchMode=yes -o ConnectTimeout=5"
            " wsgistack-db-backups@{address}")
    address = environment.backup["address"]
    as_postgres = "cd / && echo ls | runuser -u postgres -- "  # the key is postgres's to read
    listed = environment.ssh(environment.database, as_postgres + sftp.format(
        key="/etc/wsgistack/backup/ssh_key", address=address))
    assert "archive" in listed and "backup" in listed
    shell = environment.ssh(environment.database, "cd / && runuser -u postgres -- ssh -p"
                            f" {BACKUP_PORT} -i"
                            " /etc/wsgistack/backup/ssh_key -o UserKnownHostsFile="
                            "/etc/wsgistack/backup/known_hosts -o BatchMode=yes"
                            f" wsgistack-db-backups@{address} id", check=False)
    assert "uid=" not in shell, "no shell: SFTP only"
    key = environment.ssh(environment.database, "cat /etc/wsgistack/backup/ssh_key")
    web = environment.web[0]
    environment.ssh(web, "umask 077; cat > /root/stolen_key <<'EOF'\n" + key + "EOF\n"
                         "cp /dev/null /root/known; ")
    try:
        refused = environment.ssh(web, "echo ls | " + sftp.format(
            key="/root/stolen_key", address=address).replace(
            "/etc/wsgistack/backup/known_hosts", "/root/known -o StrictHostKeyChecking=no"),
            check=False)
        assert "Permission denied" in refused and "archive" not in refused, refused
    finally:
        environment.ssh(web, "rm -f /root/stolen_key /root/known")


def test_a_wrong_backup_key_is_refused_in_one_line_and_archiving_goes_on(
        environment: Environment) -> None:
    wrong = "another-backup-passphrase-for-tests-0123456789"
    run = deploy(environment.sandbox, "--limit", "production", "-y", *ARCHIVE_TIMEOUT,
                 secrets_dir=environment.secrets_dir,
                 extra_env={"PRODUCTION_FLASKTODO_DATABASE_PASSWORD": DATABASE_PASSWORD,
                            "PRODUCTION_BACKUP_PASSPHRASE": wrong})
    assert run.returncode != 0
    assert ("pgBackRest refused production's repository on the backup host (the previous"
            " config is back): this key does not open it: is PRODUCTION_BACKUP_PASSPHRASE the"
            " one its backups were made with?") in run.output
    assert wrong not in run.output and "Traceback" not in run.output
    add_item(environment, "written after the wrong key")
    environment.archived()  # with the previous config, still live
    environment.deploy("--limit", "production", "-y").succeeded()
    assert environment.deploy("--limit", "production", "-y").succeeded().changed_ops() == []


def test_a_point_in_time_restore_brings_back_what_a_delete_took(
        environment: Environment) -> None:
    add_item(environment, "written before the delete")
    environment.archived()
    before = environment.sql("SELECT now()")
    time.sleep(1)
    environment.sql("DELETE FROM items")
    add_item(environment, "written after the delete")
    environment.archived()
    assert environment.titles(environment.web[1]) == ["written after the delete"]
    dry = environment.deploy("--limit", "production", "--dry", "--data",
                             f'restore_to="{before}"', entry="restore.py").succeeded()
    assert "Restore production's database to" in dry.output
    assert environment.titles(environment.web[1]) == ["written after the delete"], \
        "a dry run changes nothing"
    environment.deploy("--limit", "production", "-y", "--data", f'restore_to="{before}"',
                       entry="restore.py").succeeded()
    for host in environment.web:
        titles = environment.titles(host)
        assert "written before the delete" in titles, titles
        assert "written after the delete" not in titles, titles
    assert environment.deploy("--limit", "production", "-y").succeeded().changed_ops() == []


def test_a_lost_database_host_comes_back_from_the_backup_host(
        environment: Environment) -> None:
    """The database host lost with its disk, a bare one put at its address: a deploy sets it
    up and says to restore, the restore brings back every write archived (PostgreSQL closes
    a WAL segment within backup_archive_timeout, here 5 s), and the web hosts serve them."""
    committed = time.time()
    add_item(environment, "committed before the loss")
    assert environment.archived_since(committed) <= 5 + 2, "archive_timeout alone closed it"
    sandbox_cli(NAME, "replace", "production-db1")
    run = environment.deploy("--limit", "production", "-y")
    assert run.returncode != 0 and ("archiving is NOT on: the backup host holds production's"
                                    " backups of another PostgreSQL cluster") in run.output
    environment.deploy("--limit", "production", "-y", "--data", "restore_to=latest",
                       entry="restore.py").succeeded()
    for host in environment.web:
        assert "committed before the loss" in environment.titles(host)
    environment.deploy("--limit", "production", "-y").succeeded()
    assert environment.deploy("--limit", "production", "-y").succeeded().changed_ops() == []
