"""Driving real sandbox hosts from tests: the sandbox CLI, SSH, pyinfra and HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import testinfra

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


def deploy(sandbox: Sandbox, *args: str, secrets_dir: Path, extra_env: dict | None = None,
           timeout: float = 600) -> Run:
    """pyinfra inventory.py deploy.py ARGS against the sandbox, as an operator runs it."""
    env = {**os.environ, "WSGISTACK_SANDBOX": sandbox.name,
           "PRODUCTION_FLASKTODO_SECRET_KEY": "production-secret-for-tests",
           **(extra_env or {})}
    command = [PYINFRA, "inventory.py", "deploy.py", "--data", f"secrets_dir={secrets_dir}",
               *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)
    return Run(result.returncode, result.stdout + result.stderr)


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
