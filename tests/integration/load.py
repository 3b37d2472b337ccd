"""A bounded, continuous HTTP load on one sandbox host, recording every request's outcome."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.client import HTTPException

from tests.integration.helpers import UNVERIFIED, connect


@dataclass
class LoadResult:
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    errors: Counter = field(default_factory=Counter)  # connection failures by kind
    versions: list[tuple[float, str]] = field(default_factory=list)  # (time, app version)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failures(self) -> int:
        """Failed connections plus non-2xx responses."""
        return sum(self.errors.values()) + sum(
            count for status, count in self.statuses.items() if not 200 <= status < 300)

    def versions_in_order(self) -> list[str]:
        """The versions served, each once, in the order they were first seen."""
        seen: list[str] = []
        for _when, version in sorted(self.versions):
            if not seen or seen[-1] != version:
                seen.append(version)
        return seen


def version_in(body: bytes) -> str:
    """The version a health answer reports; "?" from a page that is not JSON."""
    try:
        return str(json.loads(body).get("version", "?"))
    except (ValueError, AttributeError):
        return "?"


class Load:
    """`clients` threads each asking `path` on `address` (Host `host_header`) on a new
    connection every `pace` seconds (or as soon as the last answer came, if later), for at
    least `minimum` seconds and until stopped. Used as a context manager around a change.
    Six clients at 20 ms keep a request starting every few milliseconds (any gap in service
    meets one) without spending the CPUs that tests running beside it need."""

    def __init__(self, address: str, path: str, host_header: str, clients: int = 6,
                 minimum: float = 15, tls: ssl.SSLContext = UNVERIFIED,
                 pace: float = 0.02) -> None:
        self.address, self.path, self.host_header, self.tls = address, path, host_header, tls
        self.clients, self.minimum, self.pace = clients, minimum, pace
        self.result = LoadResult()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True)
                        for _ in range(clients)]

    def client(self) -> None:
        while not self.stopping.wait(self.pace):
            try:
                connection = connect(self.address, self.host_header, timeout=30,
                                     tls=self.tls)
                connection.request("GET", self.path, headers={"Host": self.host_header})
                response = connection.getresponse()
                body = response.read()
                connection.close()
                with self.lock:
                    self.result.statuses[response.status] += 1
                    if response.status == 200:
                        self.result.versions.append((time.monotonic(), version_in(body)))
            except (OSError, HTTPException) as error:
                with self.lock:
                    self.result.errors[type(error).__name__] += 1

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        remaining = self.minimum - (time.monotonic() - self.started)
        if remaining > 0:
            time.sleep(remaining)
        time.sleep(1)  # and a little past the change
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=40)
