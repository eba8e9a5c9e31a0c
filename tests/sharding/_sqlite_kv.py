"""Commands over a key-value table and a field table, for the SQLite shard store tests.

A key's value is its row in `kv`; its hash fields are rows of `fields`, so
a move carries rows of two tables. The mover script (`python
tests/sharding/_sqlite_kv.py A B SEED STEPS`) runs a migration's steps in
a process of its own, so that a test can kill or stop it.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fields (
    k TEXT NOT NULL, f TEXT NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (k, f));
"""
TABLES = {"kv": "k", "fields": "k"}


def get(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_(conn: sqlite3.Connection, key: str, value: Any) -> bool:
    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, str(value)))
    return True


def incr(conn: sqlite3.Connection, key: str) -> int:
    value = int(get(conn, key) or 0) + 1
    set_(conn, key, value)
    return value


def append(conn: sqlite3.Connection, key: str, text: str) -> int:
    value = (get(conn, key) or "") + text
    set_(conn, key, value)
    return len(value)


def delete(conn: sqlite3.Connection, key: str) -> int:
    gone = conn.execute("DELETE FROM kv WHERE k = ?", (key,)).rowcount
    gone += conn.execute("DELETE FROM fields WHERE k = ?", (key,)).rowcount
    return int(gone > 0)


def hset(conn: sqlite3.Connection, key: str, field: str, value: int) -> int:
    new = conn.execute("SELECT 1 FROM fields WHERE k = ? AND f = ?", (key, field)).fetchone()
    conn.execute("INSERT OR REPLACE INTO fields VALUES (?, ?, ?)", (key, field, value))
    return int(new is None)


def hgetall(conn: sqlite3.Connection, key: str) -> dict[str, int]:
    return dict(conn.execute("SELECT f, v FROM fields WHERE k = ?", (key,)).fetchall())


COMMANDS = {
    "GET": get,
    "SET": set_,
    "INCR": incr,
    "APPEND": append,
    "DEL": delete,
    "HSET": hset,
    "HGETALL": hgetall,
}


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


def mover_main(a: str, b: str, steps: str) -> None:
    """Run *steps* (start, rollback, resume, drain, complete) of the test migration."""
    from scalekit.sharding import HashRouter, MigratingRouter
    from scalekit.sharding.sqlite_store import SQLiteShardStore

    stores = {
        name: SQLiteShardStore(path, TABLES, move_timeout=0.2, busy_timeout=30)
        for name, path in (("A", a), ("B", b))
    }
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, timeout=10)
    for step in steps.split(","):
        if step == "drain":  # one key per call, reported, so a test can stop it mid-way
            while router.move(limit=1, batch=1):
                print("moved", flush=True)
        else:
            getattr(router, step)()
        print(step, flush=True)


if __name__ == "__main__":
    mover_main(sys.argv[1], sys.argv[2], sys.argv[3])
