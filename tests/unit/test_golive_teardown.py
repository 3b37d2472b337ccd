"""golive's install-packages, remove-packages and remove-paths, offline: in a scratch root
whose dpkg status file a stand-in apt-get changes as apt would."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from wsgistack.onhost.golive import packages, teardown
from wsgistack.onhost.golive.files import Refused
from wsgistack.onhost.golive.layout import installed_accounts, installed_packages, packages_pending

# What each package brings along when apt installs it (its dependencies)
DEPENDENCIES = {"nginx": ["nginx", "nginx-common"], "postgresql": ["postgresql",
                                                                  "postgresql-15",
                                                                  "postgresql-common"]}


def status_of(packages: dict[str, str]) -> str:
    return "".join(f"Package: {name}\nStatus: {state}\nVersion: 1\n\n"
                   for name, state in packages.items())


class Apt:
    """apt-get as the steps call it, on the scratch root's dpkg status file; each call kept,
    and `depends` the packages outside the record that would go with a purge."""

    def __init__(self, root: Path) -> None:
        self.status = root / teardown.DPKG_STATUS
        self.status.parent.mkdir(parents=True)
        (root / "etc").mkdir()
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
        self.packages = {"python3": "install ok installed", "openssh-server":
                         "install ok installed"}
        self.calls: list[tuple[str, ...]] = []
        self.depends: list[str] = []
        self.write()

    def write(self) -> None:
        self.status.write_text(status_of(self.packages))

    def __call__(self, *arguments: str) -> str:
        self.calls.append(arguments)
        command, names = arguments[0], [word for word in arguments[1:] if word[0] != "-"]
        if command == "install":
            for name in names:
                for each in DEPENDENCIES.get(name, [name]):
                    self.packages[each] = "install ok installed"
                if name == "postgresql":  # postgresql-common's postinst makes its account
                    with open(self.status.parents[3] / "etc/passwd", "a") as users:
                        users.write("postgres:x:102:104:PostgreSQL administrator:/:/bin/sh\n")
        elif command == "-s":
            return "".join(f"Purg {name} [1]\n" for name in [*names[1:], *self.depends])
        elif command in ("remove", "purge"):
            for name in names:
                if command == "remove":
                    self.packages[name] = "deinstall ok config-files"
                    continue
                self.packages.pop(name, None)
                if name.startswith("postgresql-1"):  # its purge drops its clusters
                    shutil.rmtree(self.status.parents[3] / "var/lib/postgresql" / name[11:],
                                  ignore_errors=True)
        self.write()
        return ""


@pytest.fixture
def apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Apt:
    stand_in = Apt(tmp_path)
    monkeypatch.setattr(teardown, "apt_get", stand_in)

    def userdel(command: list[str]) -> subprocess.CompletedProcess[str]:
        stand_in.calls.append(tuple(command))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(teardown, "run", userdel)  # never this machine's accounts
    return stand_in


def test_an_install_records_what_dpkg_gained_and_nothing_the_host_had(tmp_path: Path,
                                                                         apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx", "python3"])
    teardown.install_packages(root, ["postgresql"])
    assert Path(installed_packages(root)).read_text().split() == [
        "nginx", "nginx-common", "postgresql", "postgresql-15", "postgresql-common"]
    assert apt.calls[0] == ("update",)
    assert apt.calls[1] == ("install", "--no-install-recommends", "nginx")
    calls = len(apt.calls)
    teardown.install_packages(root, ["nginx"])  # all there: apt is not asked
    assert len(apt.calls) == calls


def test_a_removal_takes_off_the_record_alone(tmp_path: Path, apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx"])
    teardown.remove_packages(root, purge=False)
    assert ("purge", "nginx", "nginx-common") in apt.calls
    assert set(apt.packages) == {"python3", "openssh-server"}
    assert not Path(installed_packages(root)).exists()
    assert not Path(teardown.installed_paths(root)).exists(), "nothing of the host's changed"


def test_postgresqls_server_keeps_its_clusters_unless_purged(tmp_path: Path, apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["postgresql"])
    cluster = tmp_path / "var/lib/postgresql/15/main"
    cluster.mkdir(parents=True)
    (cluster / "PG_VERSION").write_text("15\n")
    teardown.remove_packages(root, purge=False)
    assert (cluster / "PG_VERSION").exists()
    assert apt.packages["postgresql-15"] == "deinstall ok config-files"
    assert "postgresql-common" not in apt.packages
    assert Path(installed_packages(root)).read_text().split() == ["postgresql-15"]
    assert ("userdel", "postgres") not in apt.calls, "it owns the cluster"
    teardown.remove_packages(root, purge=True)  # what was left configured goes now
    assert "postgresql-15" not in apt.packages
    assert not Path(installed_packages(root)).exists()
    assert ("userdel", "postgres") in apt.calls, "made by the packages, gone with them"
    assert not (tmp_path / "var/lib/postgresql").exists(), "its dirs, once empty"


def test_a_removal_that_would_take_a_package_of_the_operators_is_refused(
        tmp_path: Path, apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx"])
    apt.depends = ["certbot-nginx-plugin"]  # installed since by the operator, needs nginx
    with pytest.raises(Refused, match="certbot-nginx-plugin too, which it did not install"):
        teardown.remove_packages(root, purge=True)
    assert "nginx" in apt.packages


def test_what_a_purged_package_left_goes_with_the_dirs_it_leaves_empty(tmp_path: Path,
                                                                        apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx"])
    page = tmp_path / "var/www/html/index.nginx-debian.html"
    page.parent.mkdir(parents=True)
    page.write_text("Welcome to nginx!")
    teardown.install_packages(root, ["postgresql"])
    cluster = tmp_path / "var/lib/postgresql/15/main"
    cluster.mkdir(parents=True)
    teardown.remove_packages(root, purge=False)
    assert not (tmp_path / "var/www").exists() and (tmp_path / "var").is_dir()
    assert cluster.is_dir(), "a dir a package left is removed only where empty"


def test_a_path_is_removed_only_where_every_dir_above_is_root_s_alone(tmp_path: Path) -> None:
    root = PurePosixPath(tmp_path)
    ours = tmp_path / "etc/ssl/wsgistack"
    ours.mkdir(parents=True)
    (ours / "wsgistack.crt").write_text("pair")
    open_dir = tmp_path / "var/lib/app"
    open_dir.mkdir(parents=True)
    open_dir.chmod(0o777)  # as an app's dir would be to its own user
    (open_dir / "file").write_text("the app's")
    kept = tmp_path / "var/lib/wsgistack/applied"
    kept.mkdir(parents=True)
    (kept / "app-backups").write_text("which backups the kept data belongs to")
    teardown.remove_paths(root, ["/etc/ssl/wsgistack", "/etc/gone/already"],
                          ["/var/lib/wsgistack/applied", "/var/lib/wsgistack", "/etc/ssl"])
    assert (kept / "app-backups").exists(), "a dir not empty stays"
    assert not (tmp_path / "etc/ssl").exists(), "an empty one goes"
    assert not ours.exists()
    with pytest.raises(Refused, match="not root's alone"):
        teardown.remove_paths(root, ["/var/lib/app/file"], [])
    assert (open_dir / "file").exists()


@pytest.mark.parametrize("before", ["../locale.conf", None])
def test_what_a_package_changed_is_as_before_its_first_install_once_purged(
        tmp_path: Path, apt: Apt, monkeypatch: pytest.MonkeyPatch, before: str | None) -> None:
    """trixie's images link /etc/default/locale; bookworm's have none. locales' postinst
    writes it (through the link), its purge deletes it."""
    root, locale = PurePosixPath(tmp_path), tmp_path / "etc/default/locale"
    locale.parent.mkdir(parents=True)
    if before:
        os.symlink(before, locale)
    install = apt.__call__

    def as_locales_scripts_do(*arguments: str) -> str:
        done = install(*arguments)
        if arguments[0] == "install" and "locales" in arguments:
            locale.write_text('LANG="C.UTF-8"\n')  # its postinst
        if arguments[0] == "purge" and "locales" in arguments:
            locale.unlink()  # its postrm
        return done

    monkeypatch.setattr(teardown, "apt_get", as_locales_scripts_do)
    teardown.install_packages(root, ["locales"])
    teardown.remove_packages(root, purge=True)
    if before:
        assert os.readlink(locale) == before
    else:
        assert not os.path.lexists(locale)
    assert not Path(teardown.installed_paths(root)).exists()


def test_a_mounted_file_system_is_never_reached_into(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mount = tmp_path / "var/lib/wsgistack/pgbackrest"
    mount.mkdir(parents=True)
    (mount / "backup.info").write_text("the backup host's")
    monkeypatch.setattr(teardown, "mount_points", lambda: [PurePosixPath(mount)])
    with pytest.raises(Refused, match="is mounted there"):
        teardown.remove_paths(PurePosixPath(tmp_path), ["/var/lib/wsgistack"], [])
    assert (mount / "backup.info").exists()


def test_a_link_on_the_way_is_never_followed(tmp_path: Path) -> None:
    root = PurePosixPath(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("keep")
    (tmp_path / "etc").mkdir()
    os.symlink(elsewhere, tmp_path / "etc/wsgistack")
    with pytest.raises(Refused):
        teardown.remove_paths(root, ["/etc/wsgistack/precious"], [])
    teardown.remove_paths(root, ["/etc/wsgistack"], [])  # the link itself goes, not its target
    assert (elsewhere / "precious").exists() and not (tmp_path / "etc/wsgistack").exists()


def test_a_background_install_is_recorded_once_waited_for(tmp_path: Path, apt: Apt) -> None:
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx", "python3"], background=True)
    packages.wait(root)  # until the install's own process has ended
    assert Path(installed_packages(root)).read_text().split() == ["nginx", "nginx-common"]
    assert "nginx" in teardown.installed(root), "installed by the background process"
    assert not Path(packages_pending(root)).exists()
    packages.wait(root)  # nothing under way: nothing to wait for


def test_a_failed_background_install_is_refused_with_apts_reason(
        tmp_path: Path, apt: Apt, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*arguments: str) -> str:
        if arguments[0] == "install":
            raise Refused("apt-get install failed: E: Unable to locate package nginx")
        return ""

    monkeypatch.setattr(teardown, "apt_get", failing)
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["nginx"], background=True)
    with pytest.raises(Refused, match="Unable to locate package nginx"):
        packages.wait(root)
    assert not Path(installed_packages(root)).exists()


def test_an_install_that_ended_without_an_outcome_is_refused_not_awaited(
        tmp_path: Path, apt: Apt) -> None:
    """A background install killed (or a host rebooted) before it said how it ended."""
    pending = Path(packages_pending(PurePosixPath(tmp_path)))
    pending.parent.mkdir(parents=True)
    pending.write_text('{"packages": ["nginx"], "before": [], "accounts": []}')
    with pytest.raises(Refused, match="ended without an outcome"):
        packages.wait(PurePosixPath(tmp_path))
    teardown.install_packages(PurePosixPath(tmp_path), ["python3"])  # goes on as before


def test_an_apps_account_made_while_apt_ran_is_not_recorded_as_the_packages(
        tmp_path: Path, apt: Apt) -> None:
    """The deploy makes the apps' accounts while apt runs in the background: destroy must
    keep them (with their data), not remove them with postgresql's."""
    root = PurePosixPath(tmp_path)
    teardown.install_packages(root, ["postgresql"], background=True)
    with open(tmp_path / "etc/passwd", "a") as users:
        users.write("flasktodo:x:997:996:wsgistack app flasktodo:/var/lib/flasktodo:"
                    "/usr/sbin/nologin\n")
    packages.wait(root)
    assert Path(installed_accounts(root)).read_text().split("\n")[:1] == ["user postgres"]
    assert "flasktodo" not in Path(installed_accounts(root)).read_text()
