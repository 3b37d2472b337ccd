"""Driving real sandbox hosts from tests: the sandbox CLI, SSH, pyinfra and HTTP."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from email import message as email_message
from http import cookiejar as http_cookiejar
from http.client import HTTPConnection, HTTPException
from pathlib import Path
from urllib import parse as urllib_parse
from urllib import request as urllib_request

import testinfra

from tests.unit.test_settings import group_data
from wsgistack.paths import REPO_ROOT

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = Path("/var/lib/wsgistack-sandbox")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# The production secret key the tests' deploys use (strong enough to be accepted).
PRODUCTION_SECRET_KEY = "production-secret-for-tests-0123456789-abcdefghij"

# The version of FlaskTODO in the tree, which a deploy of group_data as it is makes live.
FLASKTODO_VERSION = tomllib.loads((REPO_ROOT / "apps/flasktodo/pyproject.toml").read_text()
                               )["project"]["version"]


def sandbox_cli(name: str, *args: str, env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "sandbox", "--name", name, *args], cwd=REPO,
                            capture_output=True, text=True, env=env, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"sandbox {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


@dataclass
class Sandbox:
    """A sandbox the tests brought up, and ways to reach its hosts."""

    name: str

    @classmethod
    def up(cls, name: str, subnet: str, hosts: str, suite: str = "bookworm",
           options: tuple[str, ...] = ()) -> Sandbox:
        """`options`: more of `sandbox up`'s, e.g. ("--login", "admin")."""
        sandbox_cli(name, "down", check=False)  # a leftover from an interrupted run
        sandbox_cli(name, "up", "--suite", suite, "--subnet", subnet, "--hosts", hosts,
                    *options)
        return cls(name)

    def down(self) -> None:
        sandbox_cli(self.name, "down")

    @property
    def manifest(self) -> dict:
        return json.loads((STATE_ROOT / self.name / "sandbox.json").read_text())

    @property
    def ssh_config(self) -> str:
        return self.manifest["ssh_config"]

    def hosts(self, group: str | None = None) -> list[dict]:
        return [h for h in self.manifest["hosts"] if group in (None, h["group"])]

    def host(self, short_name: str) -> dict:
        return next(h for h in self.hosts() if h["name"] == f"{self.name}-{short_name}")

    @property
    def sudo(self) -> bool:
        """Whether its hosts are logged in to as a sudo user, as cloud images are."""
        return self.manifest.get("ssh_user", "root") != "root"

    def ssh(self, host: dict, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`command` as root on the host (through sudo where the login is a sudo user's)."""
        if self.sudo:
            command = f"sudo -n sh -c {shlex.quote(command)}"
        result = subprocess.run(["ssh", "-F", self.ssh_config, host["name"], command],
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{host['name']}: `{command}` failed: {result.stderr}")
        return result

    def testinfra(self, host: dict):
        return testinfra.get_host(f"ssh://{host['name']}", ssh_config=self.ssh_config,
                                  sudo=self.sudo)

    def controller_address(self, host: dict) -> str:
        """This machine's address on the host's link: where the tests' requests come from."""
        return str(ipaddress.ip_address(host["address"]) - 1)

    def controller_addresses(self) -> list[str]:
        return [self.controller_address(host) for host in self.hosts()]


@contextlib.contextmanager
def own_sandbox(name: str, subnet: str, hosts: str, options: tuple[str, ...] = ()
                ) -> Iterator[Sandbox]:
    """A sandbox of a test module's own: up for the module, down after it, failed or not."""
    sandbox = Sandbox.up(name, subnet, hosts, options=options)
    try:
        yield sandbox
    finally:
        sandbox.down()


# what a real run's changes say, as a dry run's preview says it
WORDS = {"created": "create", "updated": "update", "replaced": "replace", "deleted": "delete"}


@dataclass
class Run:
    """One pyinfra run: its exit status and everything it printed."""

    returncode: int
    output: str

    def changed_ops(self) -> list[str]:
        """Per-host operation results that changed something ("Success" lines)."""
        return [line for line in self.output.splitlines()
                if re.match(r"^\s+\[[^\]]+\]\s+Success", line)]

    def succeeded(self) -> Run:
        """This run, asserted to have succeeded (its output's end if not)."""
        assert self.returncode == 0, self.output[-5000:]
        return self

    def planned_operations(self) -> list[str]:
        """The names of the operations a dry run plans to change some host with."""
        return [re.split(r"\s{2,}", row.strip())[0] for row in self.planned_changes()]

    def changed_operations(self) -> list[str]:
        """The names of the operations that changed some host, from the results table."""
        table = self.output.split("--> Results:", 1)[-1].split("Grand total", 1)[0]
        rows = [re.split(r"\s{2,}", row.strip()) for row in table.strip().splitlines()[1:]]
        return [row[0] for row in rows if len(row) == 5 and row[2] != "-"]

    def preview(self) -> dict[str, tuple[dict[str, int], list[str]]]:
        """The run's preview (a dry run) or its changes (a real one), by host (and "in all"):
        the count of each kind ("create", ..., "unchanged") and a line per change, as
        wsgistack.engine.preview prints them."""
        section = re.split(r"\n--> (?:Preview: what a real run changes|Changes made)\n",
                           self.output)
        assert len(section) == 2, "no preview in the run's output"
        found: dict[str, tuple[dict[str, int], list[str]]] = {}
        name = ""
        for line in section[1].split("\n--> ", 1)[0].splitlines():
            if line.startswith("        "):
                found[name][1].append(line.strip())
            elif line.startswith("    "):
                name, _, said = line.strip().partition(": ")
                counts = {WORDS.get(word, word): int(number)
                          for number, word in re.findall(r"(\d+) (?:to )?(\w+)", said)}
                found[name] = ({kind: count for kind, count in counts.items()
                                if kind != "resources"}
                               | ({"unchanged": counts["resources"]} if "resources" in counts
                                  else {}), [])
        return found

    def planned_changes(self) -> list[str]:
        """Rows of the dry run's "Detected changes" table that name any host."""
        table = self.output.split("--> Detected changes:", 1)[-1]
        table = table.split("Detected changes may not include", 1)[0]
        rows = table.strip().splitlines()[1:]
        return [row for row in rows if not re.search(r"\s-\s+-\s*$", row)]


def deploy_command(sandbox: Sandbox, *args: str, secrets_dir: Path, extra_env: dict | None = None,
                   entry: str = "deploy.py") -> tuple[list[str], dict[str, str]]:
    """pyinfra inventory.py ENTRY ARGS against the sandbox, as an operator runs it."""
    env = {**os.environ, "WSGISTACK_SANDBOX": sandbox.name,
           "PRODUCTION_FLASKTODO_SECRET_KEY": PRODUCTION_SECRET_KEY,
           **(extra_env or {})}
    # The controller asks /healthz, as an operator's load balancer would: allowed by name.
    allowed = json.dumps(sandbox.controller_addresses())
    command = [PYINFRA, "inventory.py", entry, "--data", f"secrets_dir={secrets_dir}",
               "--data", f"health_check_from={allowed}", *args]
    return command, env


def deploy(sandbox: Sandbox, *args: str, secrets_dir: Path, extra_env: dict | None = None,
           timeout: float = 600, repo: Path = REPO, entry: str = "deploy.py") -> Run:
    """Run a deploy (or `entry`) from `repo` (this repo, or a changed copy) and wait for it."""
    command, env = deploy_command(sandbox, *args, secrets_dir=secrets_dir, extra_env=extra_env,
                                  entry=entry)
    # The repo's own package first, ahead of the venv's editable install of this repo.
    env["PYTHONPATH"] = str(repo)
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    return Run(result.returncode, result.stdout + result.stderr)


# Production's database password in the tests' deploys (strong enough to be accepted).
DATABASE_PASSWORD = "production-database-password-for-tests-0123456789"
# The key production's backups are encrypted with on its backup host.
BACKUP_PASSPHRASE = "production-backup-passphrase-for-tests-0123456789"


def deploy_environment(sandbox: Sandbox, secrets_dir: Path, *args: str,
                       entry: str = "deploy.py") -> Run:
    """A deploy (or `entry`) of a sandbox whose production may have a database host."""
    return deploy(sandbox, *args, secrets_dir=secrets_dir, entry=entry,
                  extra_env={"PRODUCTION_FLASKTODO_DATABASE_PASSWORD": DATABASE_PASSWORD,
                             "PRODUCTION_BACKUP_PASSPHRASE": BACKUP_PASSPHRASE})


@dataclass
class Deployed:
    """A test module's own sandbox, first deployed: further deploys, and root's shell."""

    sandbox: Sandbox
    secrets_dir: Path
    first: Run

    def deploy(self, *args: str, entry: str = "deploy.py") -> Run:
        return deploy_environment(self.sandbox, self.secrets_dir, *args, entry=entry)

    def ssh(self, host: dict, command: str, check: bool = True) -> str:
        """`command`'s output as root on the host (its stderr too)."""
        result = self.sandbox.ssh(host, command, check=False)
        assert not check or result.returncode == 0, f"{host['name']}: {result.stderr}"
        return result.stdout + result.stderr


def repo_copy(parent: Path) -> Path:
    """A copy of this repo's files (sharing its wheelhouse cache), to deploy a deliberately
    changed version of the deploy itself."""
    copy = parent / "repo"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
    (REPO / "build").mkdir(exist_ok=True)
    (copy / "build").symlink_to(REPO / "build")
    return copy


# The sandbox's certificates are self-signed (staging) or the tests' own (production):
# the tests check what nginx serves, not who signed it.
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname, UNVERIFIED.verify_mode = False, ssl.CERT_NONE


def connect(address: str, host_header: str, scheme: str = "https", port: int | None = None,
            timeout: float = 10, tls: ssl.SSLContext = UNVERIFIED) -> HTTPConnection:
    """A connection to a sandbox host; HTTPS sends `host_header` as SNI, as a browser does
    (checking the certificate against `tls`'s CA, where it has one)."""
    if scheme == "http":
        return HTTPConnection(address, port or 80, timeout=timeout)

    class Tls(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            self.sock = tls.wrap_socket(self.sock, server_hostname=host_header)

    return Tls(address, port or 443, timeout=timeout)


def http(address: str, path: str, host_header: str = "flasktodo.test", method: str = "GET",
         data: bytes | None = None, headers: dict | None = None, scheme: str = "https",
         port: int | None = None) -> tuple[int, email_message.Message, str]:
    """One request from the controller (HTTPS unless told); redirects are not followed.
    The headers as received: case-insensitive, each Set-Cookie kept (get_all)."""
    connection = connect(address, host_header, scheme, port)
    try:
        connection.request(method, path, body=data, headers={"Host": host_header,
                                                             **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        connection.close()


class Browser:
    """A browser's view of one site over HTTPS: its cookies (as a browser keeps them, by
    host, path and Secure), the page's CSRF token, and its own Origin on form posts."""

    def __init__(self, address: str, host_header: str) -> None:
        self.address, self.host_header = address, host_header
        self.jar = http_cookiejar.CookieJar()

    def request(self, method: str, path: str, data: bytes | None = None,
                headers: dict | None = None) -> tuple[int, email_message.Message, str]:
        url = f"https://{self.host_header}{path}"
        asked = urllib_request.Request(url, data=data, method=method, headers=headers or {})
        self.jar.add_cookie_header(asked)
        status, response_headers, body = http(self.address, path, self.host_header, method,
                                              data, dict(asked.header_items()))
        reply = HTTPResponseView(url, response_headers)
        self.jar.extract_cookies(reply, asked)  # type: ignore[arg-type]
        return status, response_headers, body

    def form_token(self, page_path: str, field: str = "csrf_token") -> str:
        _status, _headers, page = self.request("GET", page_path)
        return re.search(rf'name="{field}" value="([^"]+)"', page).group(1)

    def post_form(self, page_path: str, action: str, fields: dict[str, str],
                  origin: str | None = None, token_field: str = "csrf_token"
                  ) -> tuple[int, email_message.Message, str]:
        """Submit the page's form as a browser does: token (in the form's `token_field`),
        cookies, Origin."""
        token = self.form_token(page_path, token_field)
        body = urllib_parse.urlencode({token_field: token, **fields})
        return self.request("POST", action, body.encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": origin or f"https://{self.host_header}"})


class HTTPResponseView:
    """What http.cookiejar reads of a response: its URL and its Set-Cookie headers."""

    def __init__(self, url: str, headers: email_message.Message) -> None:
        self.url = url
        self.message = email_message.Message()
        for name, value in headers.items():
            self.message[name] = value

    def info(self) -> email_message.Message:
        return self.message


def wait_for_http_ok(address: str, path: str, timeout: float, **kwargs) -> float:
    """Seconds until the URL answers 200; fails after `timeout`."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        try:
            status, _headers, _body = http(address, path, **kwargs)
            if status == 200:
                return time.monotonic() - start
            last = status
        except (OSError, HTTPException) as error:
            last = error
        time.sleep(0.2)
    raise AssertionError(f"{address}{path} not 200 within {timeout}s (last: {last})")


def app_release(parent: Path, version: str, broken: bool = False) -> Path:
    """A copy of the example app as version `version`; `broken` raises on import."""
    source = parent / f"flasktodo-{version}"
    if not source.exists():
        shutil.copytree(REPO / "apps/flasktodo", source,
                        ignore=shutil.ignore_patterns("tests", "__pycache__", "*.egg-info",
                                                      "build"))
        project = source / "pyproject.toml"
        project.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"',
                                  project.read_text()))
        if broken:
            wsgi = source / "src/flasktodo/wsgi.py"
            wsgi.write_text(wsgi.read_text() + "\nraise RuntimeError('a broken release')\n")
    return source


def apps_data(source: Path) -> str:
    """`--data` that deploys the example app, as group data declares it, from `source`."""
    entry = group_data("staging")["apps"][0]
    return "apps=" + json.dumps([{**entry, "source": str(source)}])


# What a run that must change nothing leaves untouched: the installed packages and every
# file under /etc.
SNAPSHOT = ("dpkg-query -W -f '${Package} ${Version}\\n' | sort;"
            " find /etc -xdev -printf '%p %y %m %u %g %l\\n' | sort;"
            " find /etc -xdev -type f -exec sha256sum {} + | sort")


def snapshot(sandbox: Sandbox) -> dict[str, str]:
    return {host["name"]: sandbox.ssh(host, SNAPSHOT).stdout for host in sandbox.hosts()}


# Everything a deploy could leave on a host, a line each: the packages dpkg knows (and their
# state), every path (type, owner, mode) where a deploy or a package puts files but for
# dpkg's, apt's and systemd's own state, the accounts and groups, and the unit files.
FOOTPRINT = (
    "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n'"
    " | awk '$1 != \"un\" {print \"package\", $1, $2}';"
    " find /etc /opt /srv /usr/local /var/lib /var/log /var/www /var/backups /home /root"
    " /var/spool -xdev \\( -path /var/lib/apt -o -path /var/lib/dpkg -o -path"
    " /var/log/journal -o -path /var/lib/systemd -o -path /var/lib/ucf -o -path /var/log/apt"
    " \\) -prune -o -printf 'path %p %y %u %g %m\n' 2>/dev/null;"
    " getent passwd | cut -d: -f1,3,5 | sed 's/^/user /';"
    " getent group | cut -d: -f1,3 | sed 's/^/group /';"
    " systemctl list-unit-files --no-legend --no-pager | awk '{print \"unit\", $1, $2}'")


def footprint(sandbox: Sandbox, host: dict) -> set[str]:
    return set(sandbox.ssh(host, FOOTPRINT).stdout.splitlines())


def kept_by_destroy(apps: list[str]) -> re.Pattern[str]:
    """What destroy without purge keeps (README "Stacks"), as footprint lines: each app's
    data dir and account, the supervisor logs, root's stamps, records and the deploy's
    history, PostgreSQL's cluster (its server removed, not purged) with its account and
    dumps, the backup host's stores and their accounts."""
    names = "|".join(map(re.escape, apps))
    return re.compile(
        rf"^path /var/lib/({names})[ /]"
        r"|^path /var/log/(supervisor|wsgistack)[ /]"
        r"|^path /var/lib/wsgistack( |/(applied|database-backups|installed-packages"
        r"|installed-accounts|installed-paths\.json)[ /])"
        r"|^path /(var/lib|etc|var/log)/postgresql[ /]"
        r"|^path /srv/wsgistack-backups[ /]"
        r"|^package rc postgresql-[0-9]+$"
        rf"|^(user|group) ({names}|postgres|ssl-cert|wsgistack-(web|db)-[a-z0-9-]+):")


def left_by_destroy(bare: set[str], now: set[str], apps: list[str]) -> set[str]:
    """What the host has now and had not before its first deploy, but what destroy keeps; and
    what it had and has no more (each line "-" first)."""
    kept = kept_by_destroy(apps)
    return {line for line in now - bare if not kept.search(line)} | {
        f"- {line}" for line in bare - now}


@dataclass
class Deployment:
    """The stack sandbox taken from bare hosts to converged, as an operator does it."""

    sandbox: Sandbox
    secrets_dir: Path
    bare_dry_run: Run
    bare_before: dict[str, str]
    bare_after: dict[str, str]
    bare_staging: set[str]  # its footprint, which destroy with purge gives back
    first: Run
    second: Run
    converged_dry_run: Run

    def run(self, *args: str, **kwargs) -> Run:
        return deploy(self.sandbox, *args, "-y", secrets_dir=self.secrets_dir, **kwargs)


def provide_production_tls(secrets_dir: Path) -> None:
    """Put a certificate and key where production looks for its operator's pair."""
    tls = secrets_dir / "production" / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=flasktodo.test", "-addext",
                    "subjectAltName=DNS:flasktodo.test,DNS:www.flasktodo.test",
                    "-keyout", str(tls / "wsgistack.key"), "-out", str(tls / "wsgistack.crt")],
                   check=True, capture_output=True)
