"""The app's supervisor program: parsed by supervisor's own parser, then live; its state
from supervisor-query; and the removal of an app marked absent.

supervisord is driven over its socket, by XML-RPC, as supervisorctl drives it, without
starting supervisorctl (about 0.14 s of CPU each time: a program's first apply ran it
twice)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import xmlrpc.client
from pathlib import PurePosixPath

from .files import Refused, Staged, parse_expect, record, remove_path, run, say
from .layout import AppPaths, candidate, program_unit, supervisor_query
from .users import made_by_the_deploy


def process_info(program: str, root: PurePosixPath) -> dict[str, str]:
    """supervisor's state and pid of `program`, asked by supervisor-query (beside this
    program, the same the host read asks); {} if supervisor does not answer."""
    asked = run([sys.executable, "-I", "-S", str(supervisor_query(root)), program, "--conf",
                 str(root / "etc/supervisor/supervisord.conf")])
    fields = asked.stdout.split()
    return {"statename": fields[0], "pid": fields[1]} if len(fields) == 2 else {}


def supervisord(root: PurePosixPath) -> xmlrpc.client.ServerProxy | None:
    """supervisord's XML-RPC interface, at the socket supervisorctl uses (its serverurl in
    supervisord.conf), through supervisor's own transport; None where supervisor is not
    installed (destroy took it)."""
    conf = root / "etc/supervisor/supervisord.conf"
    try:
        from supervisor.options import ClientOptions  # Debian's python3-supervisor
    except ImportError:
        return None
    if not os.path.exists(conf):
        return None
    options = ClientOptions()
    options.realize(args=["-c", str(conf)])
    return options.getServerProxy()


def update(supervisor: xmlrpc.client.ServerProxy, program: str) -> None:
    """`supervisorctl reread` then `update PROGRAM`: supervisord reads its config again, and
    the program's group is added, replaced (stopped first) or removed as it now says."""
    added, changed, removed = supervisor.supervisor.reloadConfig()[0]
    if program in changed or program in removed:
        supervisor.supervisor.stopProcessGroup(program)
        supervisor.supervisor.removeProcessGroup(program)
    if program in changed or program in added:
        supervisor.supervisor.addProcessGroup(program)


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
    supervisor = supervisord(root)
    assert supervisor is not None, "parse_program imported supervisor"
    try:
        update(supervisor, paths.name)
        if info_state(paths) not in ("RUNNING", "STARTING"):
            supervisor.supervisor.startProcess(paths.name)
    except xmlrpc.client.Fault as fault:
        raise Refused(f"supervisor could not start {paths.name}: {fault.faultString}"
                      f" (its output: {paths.stdout_log})") from None
    if info_state(paths) not in ("RUNNING", "STARTING"):
        raise Refused(f"supervisor could not start {paths.name} (its output:"
                      f" {paths.stdout_log})")
    record(unit)
    say(f"the {paths.name} supervisor program is live")


def info_state(paths: AppPaths) -> str:
    return process_info(paths.name, paths.root).get("statename", "")


def remove(root: PurePosixPath, app: str, purge: bool) -> None:
    paths = AppPaths(app, root)
    supervisor = supervisord(root)
    # BAD_NAME: supervisor knows no such program; OSError: supervisord is not running
    if supervisor is not None:
        with contextlib.suppress(xmlrpc.client.Fault, OSError):
            supervisor.supervisor.stopProcessGroup(paths.name)
    for path in (paths.supervisor_program, candidate(paths.supervisor_program)):
        remove_path(path)
    if supervisor is not None:
        with contextlib.suppress(OSError):
            update(supervisor, paths.name)
    for path in paths.leftovers() + (paths.purged() if purge else []):
        remove_path(path)
    if purge and supervisor is None:  # supervisor's log dir, which its purge left for these logs
        with contextlib.suppress(OSError):
            os.rmdir(paths.stdout_log.parent)
    if purge and made_by_the_deploy(paths.name):
        for command, database in (("userdel", "passwd"), ("groupdel", "group")):
            if run(["getent", database, paths.name]).returncode == 0:
                removed = run([command, paths.name])
                if removed.returncode != 0:
                    raise Refused(f"{command} {paths.name}: {removed.stderr.strip()}")
    say(f"{paths.name} is removed" + (" with its data and user" if purge else ""))
