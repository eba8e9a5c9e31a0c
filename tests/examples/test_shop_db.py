"""The shop's SQLite catalog under a locked and a full database: scalekit errors that name
the operation, never a raw `sqlite3.OperationalError` (under a second)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.shop.catalog import Catalog
from examples.shop.db import Database
from scalekit import BackendError, BackendUnavailableError


def test_a_locked_catalog_is_unavailable_within_the_busy_timeout(tmp_path: Path) -> None:
    catalog = Catalog(Database(tmp_path / "catalog.sqlite3", busy_timeout=0.2))
    holder = sqlite3.connect(tmp_path / "catalog.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process's writer, holding the lock
    try:
        started = time.monotonic()
        with pytest.raises(
            BackendUnavailableError, match=r"Catalog\.add_product failed: database is locked"
        ) as info:
            catalog.add_product("sku-1", "a lamp", 2_499, 3)
        assert time.monotonic() - started <= 0.2 + 0.5  # the busy timeout and a margin
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert catalog.add_product("sku-1", "a lamp", 2_499, 3) is True  # nothing was half done


def test_a_worker_opens_an_existing_catalog_while_another_holds_its_write_lock(
    tmp_path: Path,
) -> None:
    # A worker starting while another is frozen inside a write transaction
    # (SIGSTOP, a long GC) must not die: opening a catalog that exists reads only.
    first = Catalog(Database(tmp_path / "catalog.sqlite3", busy_timeout=0.2))
    holder = sqlite3.connect(tmp_path / "catalog.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker's write transaction
    try:
        second = Catalog(Database(tmp_path / "catalog.sqlite3", busy_timeout=0.2))
        assert second.shop_id == first.shop_id
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_full_catalog_is_a_backend_error_and_rolls_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "catalog.sqlite3")
    catalog = Catalog(db)
    conn = db.connection()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own limit: SQLITE_FULL
    with pytest.raises(
        BackendError, match=r"Catalog\.add_product failed: database or disk is full"
    ):
        catalog.add_product("sku-1", "x" * 1_000_000, 2_499, 3)
    assert not conn.in_transaction
    assert catalog.product("sku-1") is None
    assert catalog.add_product("sku-2", "a lamp", 2_499, 3) is True


def _corrupt_catalog(tmp_path: Path) -> Catalog:
    """A catalog whose file was overwritten, as a new worker process opens it."""
    path = tmp_path / "catalog.sqlite3"
    db = Database(path, busy_timeout=0.3)
    Catalog(db).add_product("sku-1", "a lamp", 2_499, 3)
    db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.connection().close()
    with open(path, "r+b") as f:
        f.write(b"\0garbage" * 16)  # over the header
    catalog = Catalog.__new__(Catalog)  # Catalog() would fail on its schema first
    catalog.db = Database(path, busy_timeout=0.3)
    return catalog


@pytest.mark.parametrize(
    ("operation", "read"),
    [
        ("Catalog.product", lambda c: c.product("sku-1")),
        ("Catalog.stock", lambda c: c.stock("sku-1")),
        ("Catalog.skus", lambda c: c.skus()),
        ("Catalog.shop_id", lambda c: c.shop_id),
        ("Catalog.held", lambda c: c.held("order-1")),
        ("Catalog.charged_by", lambda c: c.charged_by("key-1")),
    ],
)
def test_reads_of_a_corrupt_catalog_are_backend_errors_naming_the_operation(
    tmp_path: Path, operation: str, read: Callable[[Catalog], object]
) -> None:
    # A buyer retries on BackendError; a raw sqlite3.DatabaseError ended it.
    catalog = _corrupt_catalog(tmp_path)
    with pytest.raises(
        BackendError, match=rf"sqlite catalog\.sqlite3: {operation} failed: file is not a database"
    ) as info:
        read(catalog)
    assert not isinstance(info.value, BackendUnavailableError)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
