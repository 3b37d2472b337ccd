"""What the deploy summary says of a database host's archiving, from golive's report; the
backup host's keys its senders pin, and its port's firewall."""

from pathlib import Path

import pytest

from wsgistack.components import backup
from wsgistack.components.archiving import archive_report
from wsgistack.components.firewall import Firewall
from wsgistack.config.environment import Member
from wsgistack.config.settings import SettingsError


def test_the_summary_names_the_wal_age_and_the_newest_backup() -> None:
    assert archive_report({
        "wal_age": 12, "wal_failing": False,
        "full": {"result": "success", "at": "2026-12-06 02:30:04 UTC"},
        "diff": {"result": "success", "at": "2026-12-07 02:30:09 UTC"}}) == (
        "WAL archived 12 s ago; newest backup: diff at 2026-12-07 02:30:09 UTC")


def test_a_failed_backup_or_archiving_is_said_with_where_to_look() -> None:
    report = archive_report({
        "wal_age": 4000, "wal_failing": True,
        "full": {"result": "success", "at": "2026-12-06 02:30:04 UTC"},
        "diff": {"result": "failed", "at": "2026-12-07 02:30:09 UTC"}})
    assert report.startswith("WAL archiving FAILING")
    assert "diff backup FAILED (2026-12-07 02:30:09 UTC): journalctl -u" \
           " wsgistack-pgbackrest@diff" in report
    assert "newest backup: full at 2026-12-06 02:30:04 UTC" in report


def test_before_golive_reports_the_summary_says_archiving_starts() -> None:
    assert archive_report({}) == "archiving to the backup host from this run on"


def test_senders_pin_the_backup_hosts_keys_that_its_sshd_serves(tmp_path: Path) -> None:
    """What the controller knows the backup host by, as sshd host keys: another host's line,
    a marker line and a key type sshd makes no file of are left out."""
    known = tmp_path / "known_hosts"
    known.write_text("10.9.0.9,backup1 ssh-ed25519 AAAAed\n"
                     "10.9.0.9 ecdsa-sha2-nistp256 AAAAec\n"
                     "@revoked 10.9.0.9 ssh-rsa AAAArevoked\n"
                     "10.9.0.9 sk-ssh-ed25519@openssh.com AAAAsk\n"
                     "10.9.0.8 ssh-rsa AAAAother\n")
    keys = backup.host_keys("backup1", "10.9.0.9", known)
    assert keys == (("ssh-ed25519", "AAAAed"), ("ecdsa-sha2-nistp256", "AAAAec"))
    assert [backup.host_key_file(kind) for kind, _ in keys] == [
        "/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ecdsa_key"]
    with pytest.raises(SettingsError, match="backup9: the backup host's key is not in"):
        backup.host_keys("backup9", "10.9.0.99", known)


def test_the_backup_port_answers_the_senders_alone() -> None:
    senders = (Member("db1", "10.9.0.5"), Member("web1", "fd00::2"))
    rules = Firewall("backups", 2222, "the backup store's SFTP", senders).rules()
    text = rules.content.decode()
    assert rules.path == "/etc/wsgistack/firewall/backups.nft"
    assert 'tcp dport 2222 ip saddr 10.9.0.5/32 accept comment "db1"' in text
    assert 'tcp dport 2222 ip6 saddr fd00::2/128 accept comment "web1"' in text
    assert text.rstrip().splitlines()[-3].strip() == "tcp dport 2222 reject with tcp reset"
    assert "table inet wsgistack_backups {" in text
