"""Settings checked before pyinfra connects to any host.

inventory.py calls `check_before_connecting` once the hosts are known. It reads pyinfra's
own command line (--data, --limit, --group-data) with pyinfra's own parser, merges group
data as pyinfra will (all.py, then the group's file, then --data), and checks every group
this run aims at: that its files set no key that is no setting, each key, the production
secrets and TLS files, and that no host is in both groups. Any problem raises
SettingsError: pyinfra prints one line per problem and exits non-zero, and no host was
touched. deploy.py checks each host's data again, with any per-host data.
"""

from __future__ import annotations

import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pyinfra
from pyinfra_cli.cli import cli
from pyinfra_cli.inventory import _get_group_data
from pyinfra_cli.util import parse_cli_arg

from wsgistack.components.acme import lets_encrypt_limit_problems
from wsgistack.components.backup import PASSPHRASE
from wsgistack.components.database import PASSWORD
from wsgistack.config.secrets import Owner, check_secrets, secret_problems, vault_problems
from wsgistack.config.settings import GROUPS, SettingsError, load_settings, unknown_keys
from wsgistack.config.targets import BACKUPS, DATABASES
from wsgistack.paths import REPO_ROOT

HostEntry = tuple[str, dict[str, Any]]


def command_line() -> dict[str, Any]:
    """pyinfra's options for this run, parsed as pyinfra parses them."""
    context = cli.make_context("pyinfra", sys.argv[1:], resilient_parsing=True)
    return context.params


def group_files(group: str, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each group data file of a group sets, in the order pyinfra merges them: all.py,
    then the group's own, from our group_data/ and then any --group-data folder."""
    folders = [REPO_ROOT / "group_data", *map(Path, options.get("group_data") or ())]
    return {str(folder / f"{name}.py"): _get_group_data(str(folder)).get(name, {})
            for name in ("all", group) for folder in folders}


def group_data(group: str, options: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for values in group_files(group, options).values():
        merged.update(values)
    for argument in options.get("data") or ():
        key, value = argument.split("=", 1)
        merged[key] = parse_cli_arg(value)
    return merged


def targeted_groups(groups: dict[str, list[HostEntry]], limit: tuple[str, ...]) -> list[str]:
    """The groups with a host this run aims at (all of them without --limit)."""
    def aimed_at(group: str, name: str) -> bool:
        return not limit or any(pattern == group or fnmatch(name, pattern)
                                for pattern in limit)

    return [group for group in GROUPS
            if any(aimed_at(group, name) for name, _data in groups.get(group, []))]


def problems_of(group: str, data: dict[str, Any], has_database: bool = False,
                archives: bool = False) -> list[str]:
    """The group's settings problems, and its secrets': each app's own, where the group has
    a database host the password of each app that uses it, and where that database is
    archived to a backup host the key its backups are encrypted with."""
    try:
        settings = load_settings(data, group)
    except SettingsError as error:
        return error.problems
    # Provided keys are checked; none is generated before connecting.
    problems = vault_problems(settings)
    if problems:  # every secret below would say the same
        return problems
    problems += [problem for app in settings.apps for names in (
                    app.secret_env, (PASSWORD,) if has_database and app.database_env else ())
                for problem in check_secrets(settings, app, names=names)]
    if archives:
        problems += secret_problems(settings, Owner.environment(settings, "backups"),
                                    (PASSPHRASE,))
    return problems


def check_before_connecting(groups: dict[str, list[HostEntry]]) -> None:
    if not pyinfra.is_cli:
        return
    options = command_line()
    problems = []
    names = {group: {name for name, _data in groups.get(group, [])} for group in GROUPS}
    databases = {name for name, _data in groups.get(DATABASES, [])}
    backups = {name for name, _data in groups.get(BACKUPS, [])}
    for name in sorted(names["staging"] & names["production"]):
        problems.append(f"inventory: {name} is in both staging and production")
    for group in targeted_groups(groups, tuple(options.get("limit") or ())):
        for path, values in group_files(group, options).items():
            problems += [problem for problem in unknown_keys(values, path)
                         if problem not in problems]
        data = group_data(group, options)
        has_database = bool(names[group] & databases)
        problems += problems_of(group, data, has_database,
                                archives=has_database and bool(names[group] & backups))
        web = [entry for entry in groups[group] if entry[0] not in databases | backups]
        problems += lets_encrypt_limit_problems(group, data, web)
    if problems:
        raise SettingsError(problems)
