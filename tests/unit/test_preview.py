"""The preview's words, offline: the counts as pulumi says them, done or to do."""

from collections import Counter

from wsgistack.engine.preview import CREATE, DELETE, UPDATE, counted


def test_the_counts_say_what_changes_and_what_stays() -> None:
    assert counted(Counter(), 41, done=False) == "no changes, 41 resources unchanged"
    assert counted(Counter({UPDATE: 2, CREATE: 3}), 41, done=False) == (
        "3 to create, 2 to update, 41 unchanged"), "pulumi's order: create, update, ..."
    assert counted(Counter({DELETE: 1, CREATE: 1}), 0, done=True) == (
        "1 created, 1 deleted, 0 unchanged")
