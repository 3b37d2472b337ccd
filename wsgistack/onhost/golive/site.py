"""The nginx site: `nginx -t` on a copy of nginx's config with the candidates, then live,
enabled, reloaded, and the new workers waited for."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import PurePosixPath

from .files import (
    Refused,
    Staged,
    content_of,
    link_atomically,
    parse_expect,
    record,
    run,
    say,
    tail,
)
from .layout import candidate, nginx_dir, site_unit, tls_paths


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


def site(root: PurePosixPath, site: str, expect: list[str], acme: bool = False) -> None:
    unit = site_unit(site, root, acme)
    staged = Staged.verified(unit, parse_expect(expect))
    if acme:
        make_placeholder_pair(site, root)
    go_live_through_nginx(staged, site, str(candidate(unit.files[0])))
    record(unit)
    say(f"the {site} nginx site is live")


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
