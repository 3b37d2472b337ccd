"""What destroy takes off of a component's managed items (wsgistack.engine.teardown)."""

from __future__ import annotations

from wsgistack.engine.managed import Absent, Directory, File, LogFile
from wsgistack.engine.teardown import removal_of


def test_a_candidate_goes_with_its_live_file_and_a_dir_as_a_whole() -> None:
    removals = removal_of([
        Directory("", "/etc/ssl/wsgistack", "root", "root", "755"),
        File("", "/etc/ssl/wsgistack/site.crt.next", "root", "root", "644", text="x"),
        File("", "/etc/nginx/sites-available/site.next", "root", "root", "644", text="x"),
        LogFile("", "/var/log/nginx/site.access.log", "www-data", "adm", "640"),
        "/etc/nginx/sites-enabled/site",
        Absent("Delete the certificate", "/etc/letsencrypt/renewal/site.conf",
               command="certbot delete --cert-name site"),
    ])
    assert [item.path for item in removals] == [
        "/etc/ssl/wsgistack", "/etc/nginx/sites-available/site",
        "/etc/nginx/sites-available/site.next", "/var/log/nginx/site.access.log",
        "/etc/nginx/sites-enabled/site", "/etc/letsencrypt/renewal/site.conf"]
    assert all("golive remove-paths --path" in item.command for item in removals[:-1])
    assert removals[-1].command == "certbot delete --cert-name site"


def test_a_unit_is_stopped_and_disabled_before_its_file_goes() -> None:
    [timer] = removal_of([File("", "/etc/systemd/system/backups.timer", "root", "root", "644",
                               text="x")])
    assert timer.command.startswith("systemctl disable --now backups.timer && ")
