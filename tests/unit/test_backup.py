"""What the deploy summary says of a database host's archiving, from golive's report."""

from wsgistack.components.archiving import archive_report


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
