"""Destroy (destroy.py): what the deploy put on a host, taken back off, read first in one
command so that `--dry` lists exactly what a real run removes and a second run removes
nothing.

What each component takes off is what it manages (`Component.teardown`: its files, the live
file beside each candidate, its dirs), removed by golive remove-paths only where every dir
above is root's alone. In this order:

0. golive, as this version has it, where anything is due (a destroy after one without
   purge finds none; an older one lacks the steps below);
1. each app: its program stopped and removed, its code and config (golive remove); its
   data, logs and account too with purge;
2. every component's paths, the last component's first; a systemd unit stopped and disabled
   before its file goes;
3. the accounts the deploy made (their comment says so), never one it did not;
4. the packages the deploy installed, by its record (golive remove-packages);
5. last, /etc/wsgistack, root's scratch dirs in /var/lib/wsgistack (all of it, and the
   deploy's history, with purge; else the dir where empty), and golive itself, in one
   golive step.

Without purge the data stays: each app's data dir and account, its supervisor logs, the
app backups' stamp (which backups the kept data belongs to), the history, PostgreSQL's
cluster (its server removed, not purged) and dumps, the backup host's stores and their
accounts.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from pathlib import PurePosixPath

from pyinfra import host, state
from pyinfra.api import FactBase
from pyinfra.operations import server, systemd

from wsgistack.components import base
from wsgistack.components.removal import Removal
from wsgistack.config.settings import RemovedApp, Settings
from wsgistack.config.targets import UPLOADS
from wsgistack.engine.component import Account, Component
from wsgistack.engine.facts import SystemAccount
from wsgistack.engine.hoststate import HostState, Read
from wsgistack.engine.managed import Absent, Directory, File, LogFile, Managed, ensure_all
from wsgistack.engine.preview import DELETE
from wsgistack.engine.programs import GOLIVE
from wsgistack.engine.staged import golive
from wsgistack.engine.summary import Summary, declare, in_place
from wsgistack.onhost.golive.layout import (
    CANDIDATE,
    ROOT,
    build_dir,
    history_log,
    installed_packages,
    packages_pending,
    restic_cache,
    stamps_dir,
)
from wsgistack.onhost.golive.protocol import HOLDS_DATA

UNIT_SUFFIXES = (".service", ".timer", ".mount", ".socket")
# Root's own dir of the deploy: its record of packages, stamps, builds, sudo users' uploads
STATE_DIR = installed_packages(ROOT).parent
# What of it goes without purge: not the record (of what remains installed), nor the app
# backups' stamps (which backups the kept data belongs to: each part takes its own stamps),
# nor the daily database dumps
STATE_PARTS = (build_dir(ROOT), UPLOADS, restic_cache(ROOT), packages_pending(ROOT).parent)
ETC_DIR = PurePosixPath("/etc/wsgistack")  # the deploy's config dirs, ours alone
HISTORY = history_log(ROOT).parent  # the deploy's history: kept unless purge

class RecordedPackages(FactBase[list[tuple[str, str]]]):
    """The packages in the deploy's record, with dpkg's status of each (e.g. "ii", "rc")."""

    default = list

    def command(self) -> str:
        record = shlex.quote(str(installed_packages(ROOT)))
        return (f"! test -s {record} || dpkg-query -W -f '${{db:Status-Abbrev}} ${{Package}}\\n'"
                f" | awk 'NR == FNR {{ recorded[$1]; next }} $NF in recorded' {record} -")

    def process(self, output: list[str]) -> list[tuple[str, str]]:
        return [(line.split()[0], line.split()[-1]) for line in output if len(line.split()) > 1]


def removed(path: str) -> Absent:
    """`path` taken off by golive (a unit stopped and disabled first)."""
    remove = golive("remove-paths", paths=[path])
    place = PurePosixPath(path)
    if place.parent == base.UNIT_DIR and place.suffix in UNIT_SUFFIXES and "@" not in place.name:
        return Absent(f"Stop, disable and remove {path}", path,
                      command=f"systemctl disable --now {shlex.quote(place.name)} && {remove}")
    return Absent(f"Remove {path}", path, command=remove)


def removal_of(items: Iterable[Managed | str]) -> list[Absent]:
    """What destroy takes off of a part's `items`: each file (and the live file beside a
    candidate), log, dir and path, once (nothing inside a dir that goes as a whole); an
    Absent as it is."""
    items = list(items)
    trees = {item.path for item in items if isinstance(item, Directory)}
    done = {item.path for item in items if isinstance(item, Absent)}
    removals: list[Absent] = []
    for item in items:
        if isinstance(item, Absent):
            removals.append(item)
            continue
        for path in paths_of(item):
            if path not in done and not any(PurePosixPath(path).is_relative_to(tree)
                                            and path != tree for tree in trees):
                removals.append(removed(path))
                done.add(path)
    return removals


def paths_of(item: Managed | str) -> list[str]:
    """A path's, a file's (the live file first, beside a candidate), a log's or a dir's."""
    if isinstance(item, str):
        return [item]
    if isinstance(item, File) and item.path.endswith(CANDIDATE):
        return [item.path.removesuffix(CANDIDATE), item.path]
    return [item.path] if isinstance(item, File | LogFile | Directory) else []


def plan(parts: list[Component], settings: Settings, purge: bool
         ) -> tuple[list[Removal], list[Absent], list[Account], list[Managed]]:
    """What destroy takes off this host: each app (as an app marked absent), each part's
    removals (the last part's first), the accounts the deploy made, and golive's tools."""
    apps = [Removal(RemovedApp(name=name, purge=purge)) for name in dict.fromkeys(
        [*(app.name for app in settings.apps), *(gone.name for gone in settings.removed_apps)])]
    items = [item for part in reversed(parts) for item in removal_of(part.teardown(purge))]
    accounts = [account for part in parts for account in part.accounts(purge)]
    return apps, items, accounts, base.tools()


def host_read(apps: list[Removal], items: list[Absent], accounts: list[Account],
              tools: list[Managed]) -> tuple[Read, ...]:
    """The reads of the one command that reads the host for destroy."""
    return HostState.batch(
        [*(item.path for item in (*tools, *items)),
         *dict.fromkeys([*last(purge=True), *last(purge=False)])],
        [item.path for item in tools if isinstance(item, File)],
        [*(read for app in apps for read in app.reads()),
         *(Read.of(SystemAccount, user=account.user) for account in accounts),
         Read.of(RecordedPackages)])


def destroy(parts: list[Component], settings: Settings, purge: bool) -> None:
    """Take the deploy's parts back off this host (module docstring), as read in one
    command. golive runs the removals: where any is due it is installed first, as this
    version has it (a destroy after one without purge finds none; an older one lacks steps)."""
    apps, items, accounts, tools = plan(parts, settings, purge)
    seen = HostState.read(host_read(apps, items, accounts, tools))
    steps = [step for app in apps for step in app.prepare(seen) if step.command]
    packages = taken_off(seen.get(RecordedPackages), purge)
    due = bool(steps or packages or any(not item.in_place(seen.path(item.path))
                                       for item in items))
    installing = due or any(seen.path(path) for path in last(purge))
    final = [path for path in last(purge) if seen.path(path) or (installing and any(
        PurePosixPath(item.path).is_relative_to(path) for item in tools))]
    if installing:
        ensure_all(tools, seen)
    for step in steps:
        declare(server.shell(name=step.name, commands=[step.command]), DELETE)
    done = ensure_all(items, seen)
    if any(operation and PurePosixPath(item.path).is_relative_to(base.UNIT_DIR)
           for item, operation in zip(items, done, strict=True)):
        systemd.daemon_reload(name="Reload systemd: the deploy's units are gone")
    for account in accounts:
        if seen.get(SystemAccount, user=account.user).get("comment") == account.comment:
            declare(server.user(name=f"Remove the account {account.user}", user=account.user,
                                present=False), DELETE)
    remove_packages(packages, purge)
    remove_last(final, purge)
    Summary.of(state).role(host.name, "destroyed, its data purged" if purge else
                           "destroyed, its data kept (purge=true takes it)")


def last(purge: bool) -> list[str]:
    """What goes once every step has run: /etc/wsgistack, root's state dir (with purge; else
    its scratch parts), the deploy's history (with purge), and golive itself, which removes
    them."""
    return [str(path) for path in (ETC_DIR, *((STATE_DIR, HISTORY) if purge else STATE_PARTS),
                                   GOLIVE.parent)]


def remove_last(paths: list[str], purge: bool) -> None:
    """One golive step, removing its own dir last: nothing runs golive after it. Without
    purge, root's state dir and its stamps go too where nothing is kept in them."""
    if not paths:
        in_place()
        return
    empty = [] if purge else [str(stamps_dir(ROOT)), str(STATE_DIR)]
    declare(server.shell(name=f"Remove {', '.join(paths)}",
                         commands=[golive("remove-paths", paths=paths, empty_dirs=empty)]),
            DELETE)


def taken_off(recorded: list[tuple[str, str]], purge: bool) -> list[str]:
    """The recorded packages still installed (and, with purge, those left configured)."""
    return [name for status, name in recorded if status[1:2] == "i"
            or (purge and status[1:2] == "c")]


def remove_packages(names: list[str], purge: bool) -> None:
    """golive remove-packages, named after what it takes off."""
    if not names:
        return
    kept = [] if purge else [name for name in names if HOLDS_DATA.match(name)]
    purged = [name for name in names if name not in kept]
    declare(server.shell(
        name=f"Purge the packages the deploy installed: {', '.join(purged)}"
             + (f"; remove {', '.join(kept)}, keeping its clusters" if kept else ""),
        commands=[golive("remove-packages", purge=purge)]), DELETE)
