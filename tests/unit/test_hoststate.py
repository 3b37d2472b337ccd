"""The one-command host read and the gates built on it, checked offline: the batch's real
shell command runs here, against a scratch directory, as it runs on a host."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from wsgistack.build.wheelhouse import Target
from wsgistack.engine.facts import (
    FileText,
    InstalledPackages,
    LinkTarget,
    PythonTarget,
    ServiceStates,
    SystemAccount,
)
from wsgistack.engine.hoststate import Batch, HostState, PathState, PathStates, Read
from wsgistack.engine.managed import Absent, Directory, File

USER = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True,
                                                check=True).stdout.strip()
GROUP = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()


def run_batch(reads: tuple[Read, ...]) -> dict[Read, object]:
    """Run the batch's command in a local shell and process it, as pyinfra would."""
    result = subprocess.run(["sh", "-c", Batch().command(reads=reads)], capture_output=True,
                            text=True, check=True)
    sections = Batch().process(result.stdout.splitlines())
    return {read: read.process(sections.get(index, [])) for index, read in enumerate(reads)}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "conf").write_text("listen 443;\n")
    (tmp_path / "conf").chmod(0o640)
    (tmp_path / "dir").mkdir(mode=0o750)
    (tmp_path / "dir").chmod(0o750)
    (tmp_path / "link").symlink_to("releases/1.0.0")
    return tmp_path


def test_one_batch_reads_paths_and_facts_each_in_its_own_section(tree: Path) -> None:
    paths = Read.of(PathStates, paths=tuple(str(tree / name)
                                             for name in ("conf", "dir", "link", "missing")),
                    hashed=(str(tree / "conf"),))
    text = Read.of(FileText, path=str(tree / "conf"))
    link = Read.of(LinkTarget, path=str(tree / "link"))
    absent = Read.of(FileText, path=str(tree / "missing"))
    found = run_batch((paths, text, link, absent))
    states = found[paths]
    assert states[str(tree / "conf")] == PathState(
        "regular file", 640, USER, GROUP, hashlib.sha1(b"listen 443;\n").hexdigest())
    assert states[str(tree / "dir")] == PathState("directory", 750, USER, GROUP)
    assert states[str(tree / "link")].kind == "symbolic link"
    assert str(tree / "missing") not in states
    assert found[text] == "listen 443;"
    assert found[link] == "releases/1.0.0"
    assert found[absent] == ""


def test_a_failing_read_leaves_the_others_whole(tree: Path) -> None:
    broken = Read.of(SystemAccount, user="no-such-user-here")
    text = Read.of(FileText, path=str(tree / "conf"))
    found = run_batch((broken, text))
    assert found[broken] == {}
    assert found[text] == "listen 443;"


def test_reads_with_equal_arguments_are_one_read() -> None:
    assert Read.of(FileText, path="/a") == Read.of(FileText, path="/a")
    assert len({Read.of(FileText, path="/a"), Read.of(FileText, path="/b")}) == 2


def test_services_packages_account_and_python_parse_what_hosts_print() -> None:
    services = ServiceStates().process([
        "Id=nginx.service", "SubState=running", "UnitFileState=enabled", "",
        "UnitFileState=disabled", "SubState=dead", "Id=supervisor.service"])
    assert services == {"nginx.service": ("running", "enabled"),
                        "supervisor.service": ("dead", "disabled")}
    assert InstalledPackages().process(["ii  nginx", "rc  supervisor", "hi  logrotate"]) == \
        ["nginx", "logrotate"]
    assert SystemAccount().process([
        "flasktodo:x:997:996:wsgistack app flasktodo:/var/lib/flasktodo:/usr/sbin/nologin",
        "flasktodo:x:996:"]) == {"gid": "996", "comment": "wsgistack app flasktodo",
                                 "home": "/var/lib/flasktodo", "shell": "/usr/sbin/nologin",
                                 "group_gid": "996"}
    assert PythonTarget().process(["Python 3.11.2", "x86_64", "glibc 2.36"]) == Target(
        "3.11", "x86_64", "2.36")


def test_account_and_python_read_from_a_real_shell() -> None:
    account, python = Read.of(SystemAccount, user="root"), Read.of(PythonTarget)
    found = run_batch((account, python))
    shell = found[account].pop("shell")
    assert found[account] == {"gid": "0", "comment": "root", "home": "/root", "group_gid": "0"}
    assert shell.startswith("/")
    assert found[python].machine == os.uname().machine


def test_a_file_is_in_place_only_with_its_content_owner_and_mode(tmp_path: Path) -> None:
    local = tmp_path / "herder"
    local.write_bytes(b"#!/usr/bin/python3\n")
    item = File("Install it", "/usr/local/lib/x", "root", "root", "755", local=local)
    digest = hashlib.sha1(b"#!/usr/bin/python3\n").hexdigest()
    assert item.in_place(PathState("regular file", 755, "root", "root", digest))
    assert not item.in_place(None)
    assert not item.in_place(PathState("regular file", 755, "root", "root", "0" * 40))
    assert not item.in_place(PathState("regular file", 775, "root", "root", digest))
    assert not item.in_place(PathState("regular file", 755, "app", "root", digest))
    assert not item.in_place(PathState("directory", 755, "root", "root", ""))


def test_a_template_is_compared_as_rendered(tmp_path: Path) -> None:
    template = tmp_path / "site.j2"
    template.write_text("server_name {{ name }};\n")
    item = File("Write it", "/etc/site", "root", "root", "644", template=template,
                context={"name": "flasktodo.test"})
    rendered = hashlib.sha1(b"server_name flasktodo.test;\n").hexdigest()
    assert item.in_place(PathState("regular file", 644, "root", "root", rendered))


def test_directories_and_absent_links() -> None:
    directory = Directory("Create it", "/etc/app", "root", "app", "750")
    assert directory.in_place(PathState("directory", 750, "root", "app"))
    assert not directory.in_place(PathState("directory", 755, "root", "app"))
    assert not directory.in_place(PathState("regular file", 750, "root", "app", "x"))
    link = Absent("Disable it", "/etc/nginx/sites-enabled/default", link=True)
    assert link.in_place(None)
    assert not link.in_place(PathState("symbolic link", 777, "root", "root"))


def test_a_read_not_declared_is_an_error_not_a_slow_path() -> None:
    state = HostState({}, {Read.of(FileText, path="/a"): "text"})
    assert state.get(FileText, path="/a") == "text"
    with pytest.raises(LookupError, match="declare it in its component's reads"):
        state.get(FileText, path="/b")
