"""The base image: a minimal Debian with systemd and sshd, built once per suite and cached.

Hosts never write to it: each one gets an overlay whose upper dir holds its own changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.spec import CACHE_ROOT
from sandbox.system import run

# What a cloud image has, and no more: the deploy installs everything else.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "ca-certificates",
    "iproute2",
    "sudo",  # cloud images log in as a sudo user (`up --login admin`)
)
# Bump when the customisation below changes, so cached images are rebuilt.
RECIPE_VERSION = "1"
# The controller's apt sources, whose mirrors the hosts use (overridable for another mirror).
SOURCES_VARIABLE = "WSGISTACK_SANDBOX_APT_SOURCES"
DEFAULT_SOURCES = "/etc/apt/sources.list.d/debian.sources"


@dataclass(frozen=True)
class Mirrors:
    """The Debian archive and security mirrors this machine is configured to use."""

    archive: str
    security: str | None


def controller_sources() -> Path:
    return Path(os.environ.get(SOURCES_VARIABLE) or DEFAULT_SOURCES)


def controller_mirrors() -> Mirrors:
    """Read the mirrors from the controller's deb822 sources file (never hard-coded)."""
    sources = controller_sources()
    if not sources.exists():
        raise SandboxError(f"{sources} is missing: the sandbox uses the mirror configured there")
    return parse_mirrors(sources.read_text())


def parse_mirrors(text: str) -> Mirrors:
    archive = security = None
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ")):
                key, value = line.split(":", 1)
                fields[key.strip()] = value.strip()
        uri = fields.get("URIs", "").split()
        suites = fields.get("Suites", "").split()
        if not uri or not suites:
            continue
        if any(suite.endswith("-security") for suite in suites):
            security = security or uri[0]
        else:
            archive = archive or uri[0]
    if archive is None:
        raise SandboxError("no Debian archive mirror found in the controller's apt sources")
    return Mirrors(archive.rstrip("/"), security.rstrip("/") if security else None)


def check_reachable(mirrors: Mirrors, suite: str) -> None:
    url = f"{mirrors.archive}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=15):
            pass
    except (urllib.error.URLError, TimeoutError) as error:
        raise SandboxError(
            f"the Debian mirror is unreachable ({url}: {error}): check the network or"
            f" the URIs in {controller_sources()}"
        ) from None


def host_sources(mirrors: Mirrors, suite: str) -> str:
    """The apt sources a host gets: the same mirrors as the controller, for its suite."""
    stanzas = [(mirrors.archive, f"{suite} {suite}-updates")]
    if mirrors.security:
        stanzas.append((mirrors.security, f"{suite}-security"))
    return "\n".join(
        f"Types: deb\nURIs: {uri}\nSuites: {suites}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        for uri, suites in stanzas
    )


def image_dir(suite: str, mirrors: Mirrors) -> Path:
    key = "\n".join([suite, mirrors.archive, str(mirrors.security), RECIPE_VERSION, *PACKAGES])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return CACHE_ROOT / "images" / f"{suite}-{digest}"


@contextmanager
def cache_lock() -> Iterator[None]:
    """Serialise image builds between concurrent `up` calls."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image(suite: str, mirrors: Mirrors) -> Path:
    """Return the cached base image for the suite, building it first if it is missing."""
    target = image_dir(suite, mirrors)
    with cache_lock():
        if not target.exists():
            build_image(suite, mirrors, target)
    return target


def build_image(suite: str, mirrors: Mirrors, target: Path) -> None:
    """debootstrap into a scratch dir and rename it into place, so no half image is cached."""
    check_reachable(mirrors, suite)
    scratch = target.with_name(target.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"Building the {suite} base image (once; about a minute)...", flush=True)
    try:
        run([
            "debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
            suite, str(scratch), mirrors.archive,
        ])
        customise(scratch, suite, mirrors)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    scratch.rename(target)


def customise(root: Path, suite: str, mirrors: Mirrors) -> None:
    """Make the tree look like a fresh cloud image that every host can share."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(host_sources(mirrors, suite))
    # Each host gets its own SSH host keys and machine id, so none may live in the image.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    # Like a cloud image: no package lists until the first `apt-get update`.
    lists = (root / "var/lib/apt/lists").glob("*_*")
    for cached in [*lists, *(root / "var/cache/apt").glob("*.bin")]:
        cached.unlink()
