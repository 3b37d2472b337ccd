"""SQLite storage: one connection per request, the schema created on first use."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Flask, current_app, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created_from TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
)
"""


def connection() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(current_app.config["DATABASE"], timeout=10)
        g.db.row_factory = sqlite3.Row
        g.db.execute("PRAGMA journal_mode=WAL")
        g.db.execute(SCHEMA)
    return g.db


def close(_error: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close)


def all_items() -> list[dict[str, Any]]:
    rows = connection().execute("SELECT * FROM items ORDER BY id").fetchall()
    return [as_dict(row) for row in rows]


def get_item(item_id: int) -> dict[str, Any] | None:
    row = connection().execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
    return as_dict(row) if row else None


def add_item(title: str, created_from: str) -> dict[str, Any]:
    with connection() as conn:
        cursor = conn.execute(
            "INSERT INTO items (title, created_from) VALUES (?, ?)", (title, created_from)
        )
    item = get_item(cursor.lastrowid or 0)
    assert item is not None
    return item


def set_done(item_id: int, done: bool) -> bool:
    with connection() as conn:
        cursor = conn.execute("UPDATE items SET done = ? WHERE id = ?", (int(done), item_id))
        return cursor.rowcount > 0


def delete_item(item_id: int) -> bool:
    with connection() as conn:
        return conn.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount > 0


def ping() -> None:
    connection().execute("SELECT 1").fetchone()


def as_dict(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["done"] = bool(item["done"])
    return item
