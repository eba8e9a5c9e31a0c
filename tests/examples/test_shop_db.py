"""The shop's SQLite catalog under a locked and a full database: scalekit errors that name
the operation, never a raw `sqlite3.OperationalError` (under a second)."""

from __future__ import annotations

import sqlite3
import time
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
