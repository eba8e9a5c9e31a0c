"""SQL fenced stores give the documented errors, never a driver's (about 3 s with PostgreSQL).

`create_table()` adds the `op` column to a table made before it existed; a
store pointed at a table without it (and without `op_column=None`) raises a
`ConfigurationError` that says what to do; SQLite's busy timeout is a
`BackendUnavailableError`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, ConfigurationError
from scalekit.locking.fencing import SQLFencedStore

from .conftest import unique
from .test_fenced_store import lease, pg_connect

# The schema the store's first release created: no `op` column.
OLD = (
    "CREATE TABLE {table} (key TEXT PRIMARY KEY, value BIGINT, "
    "fence BIGINT NOT NULL DEFAULT 0, holder TEXT NOT NULL DEFAULT '')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, str, str]]:
    """A connection, its dialect and a table of the old schema holding one row."""
    if request.param == "sqlite":
        connection: Any = sqlite3.connect(tmp_path / "old.db")
    else:
        connection = pg_connect(request.getfixturevalue("postgres_server"))
    table = unique("old_t").replace("-", "_")
    cursor = connection.cursor()
    cursor.execute(OLD.format(table=table))
    cursor.execute(f"INSERT INTO {table} (key, value, fence, holder) VALUES ('k', 5, 3, 'a')")
    cursor.close()
    connection.commit()
    yield connection, request.param, table
    connection.close()


def test_create_table_adds_the_op_column_to_an_old_table(old_table: tuple[Any, str, str]) -> None:
    connection, dialect, table = old_table
    store = SQLFencedStore(connection, dialect=dialect, table=table)
    store.create_table()
    store.create_table()  # again: nothing to add
    assert store.read("k", lease(3)) == 5  # the old row is kept
    assert store.incr("k", 1, lease(3), op="x") == 6
    assert store.incr("k", 1, lease(3), op="x") == 6  # op ids work: a replay
    store.write("n", 1, lease(4), op="y")
    assert store.get("n") == 1


def test_a_table_without_the_op_column_is_a_configuration_error(
    old_table: tuple[Any, str, str],
) -> None:
    connection, dialect, table = old_table
    store = SQLFencedStore(connection, dialect=dialect, table=table)
    for call in (
        lambda: store.read("new", lease(3)),  # a new row names every column
        lambda: store.write("k", 1, lease(3)),
        lambda: store.incr("k", 1, lease(3), op="x"),
    ):
        with pytest.raises(
            ConfigurationError, match=r"column 'op' .* create_table\(\) .* op_column=None"
        ):
            call()
    assert store.get("k") == 5  # nothing changed
    plain = SQLFencedStore(connection, dialect=dialect, table=table, op_column=None)
    assert plain.incr("k", 1, lease(3)) == 6


def test_a_sqlite_busy_timeout_is_backend_unavailable(tmp_path: Path) -> None:
    """Another connection's write transaction outlasts `timeout=`: the documented error, in time."""
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, timeout=0.2)
    SQLFencedStore(holder).create_table()
    waiting = sqlite3.connect(path, timeout=0.2)
    store = SQLFencedStore(waiting)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO scalekit_fenced(key, value) VALUES ('x', 1)")
    started = time.monotonic()
    with pytest.raises(
        BackendUnavailableError, match=r"SQLite did not run the fenced incr .* locked"
    ):
        store.incr("k", 1, lease(7), op="o1")
    assert time.monotonic() - started < 0.2 + 0.3  # the connection's timeout, plus a margin
    holder.rollback()
    assert store.incr("k", 1, lease(7), op="o2") == 1  # the store works again
    holder.close()
    waiting.close()
