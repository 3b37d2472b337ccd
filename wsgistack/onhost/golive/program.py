"""The app's supervisor program: parsed by supervisor's own parser, then live; its state
from supervisor-query; and the removal of an app marked absent."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import PurePosixPath

from .files import Refused, Staged, parse_expect, record, remove_path, run, say, tail
from .layout import AppPaths, candidate, program_unit, supervisor_query
from .users import made_by_the_deploy


def process_info(program: str, root: PurePosixPath) -> dict[str, str]:
    """supervisor's state and pid of `program`, asked by supervisor-query (beside this
    program, the same the host read asks); {} if supervisor does not answer."""
    asked = run([sys.executable, "-I", "-S", str(supervisor_query(root)), program, "--conf",
                 str(root / "etc/supervisor/supervisord.conf")])
    fields = asked.stdout.split()
    return {"statename": fields[0], "pid": fields[1]} if len(fields) == 2 else {}


def supervisorctl(*arguments: str) -> subprocess.CompletedProcess[str]:
    return run(["supervisorctl", *arguments])


def parse_program(path: PurePosixPath, program: str) -> None:
    """Parse a program file as supervisord would at start-up, with this host's users."""
    from supervisor.options import ServerOptions  # Debian's python3-supervisor

    with tempfile.NamedTemporaryFile("w", suffix=".conf") as main:
        main.write(f"[supervisord]\n[include]\nfiles = {path}\n")
        main.flush()
        options = ServerOptions()
        try:
            options.realize(args=["-c", main.name])
        except (ValueError, SystemExit) as error:
            raise Refused(f"{path.with_name(path.name[:-4])}.next is not a valid supervisor"
                          f" program: {error}") from None
        names = [group.name for group in options.process_group_configs]
    if names != [program]:
        raise Refused(f"{path} defines {names}, expected [{program}]")


def program(root: PurePosixPath, app: str, expect: list[str]) -> None:
    paths = AppPaths(app, root)
    unit = program_unit(paths)
    staged = Staged.verified(unit, parse_expect(expect))
    try:
        parse_program(staged.new(paths.supervisor_program), paths.name)
        staged.make_live()
    finally:
        staged.clean_up()
    supervisorctl("reread")
    updated = supervisorctl("update", paths.name)
    if info_state(paths) not in ("RUNNING", "STARTING"):
        started = supervisorctl("start", paths.name)
        if info_state(paths) not in ("RUNNING", "STARTING"):
            raise Refused(f"supervisor could not start {paths.name}: "
                          + tail(updated.stdout + started.stdout + started.stderr, 5))
    record(unit)
    say(f"the {paths.name} supervisor program is live")


def info_state(paths: AppPaths) -> str:
    return process_info(paths.name, paths.root).get("statename", "")


def remove(root: PurePosixPath, app: str, purge: bool) -> None:
    paths = AppPaths(app, root)
    supervised = shutil.which("supervisorctl") is not None  # not after destroy took it
    if supervised:
        supervisorctl("stop", paths.name)
    for path in (paths.supervisor_program, candidate(paths.supervisor_program)):
        remove_path(path)
    if supervised:
        supervisorctl("reread")
        supervisorctl("update", paths.name)
    for path in paths.leftovers() + (paths.purged() if purge else []):
        remove_path(path)
    if purge and not supervised:  # supervisor's log dir, which its purge left for these logs
        with contextlib.suppress(OSError):
            os.rmdir(paths.stdout_log.parent)
    if purge and made_by_the_deploy(paths.name):
        for command, database in (("userdel", "passwd"), ("groupdel", "group")):
            if run(["getent", database, paths.name]).returncode == 0:
                removed = run([command, paths.name])
                if removed.returncode != 0:
                    raise Refused(f"{command} {paths.name}: {removed.stderr.strip()}")
    say(f"{paths.name} is removed" + (" with its data and user" if purge else ""))
