"""Driving real sandbox hosts from tests: the sandbox CLI, SSH, pyinfra and HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import testinfra

from tests.unit.test_settings import group_data

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = Path("/var/lib/wsgistack-sandbox")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")


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
    def up(cls, name: str, subnet: str, hosts: str, suite: str = "bookworm") -> Sandbox:
        sandbox_cli(name, "down", check=False)  # a leftover from an interrupted run
        sandbox_cli(name, "up", "--suite", suite, "--subnet", subnet, "--hosts", hosts)
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

    def ssh(self, host: dict, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ssh", "-F", self.ssh_config, host["name"], command],
                                capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{host['name']}: `{command}` failed: {result.stderr}")
        return result

    def testinfra(self, host: dict):
        return testinfra.get_host(f"ssh://{host['name']}", ssh_config=self.ssh_config)


@dataclass
class Run:
    """One pyinfra run: its exit status and everything it printed."""

    returncode: int
    output: str

    def changed_ops(self) -> list[str]:
        """Per-host operation results that changed something ("Success" lines)."""
        return [line for line in self.output.splitlines()
                if re.match(r"^\s+\[[^\]]+\]\s+Success", line)]

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
           "PRODUCTION_FLASKTODO_SECRET_KEY": "production-secret-for-tests",
           **(extra_env or {})}
    command = [PYINFRA, "inventory.py", entry, "--data", f"secrets_dir={secrets_dir}", *args]
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


def http(address: str, path: str, host_header: str = "flasktodo.test", method: str = "GET",
         data: bytes | None = None, headers: dict | None = None,
         port: int = 80) -> tuple[int, dict, str]:
    """One HTTP request from the controller; redirects are returned, not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(f"http://{address}:{port}{path}", data=data, method=method,
                                     headers={"Host": host_header, **(headers or {})})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


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
        except OSError as error:
            last = error
        time.sleep(0.2)
    raise AssertionError(f"http://{address}{path} not 200 within {timeout}s (last: {last})")


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
