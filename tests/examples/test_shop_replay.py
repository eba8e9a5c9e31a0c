"""A stock change retried after its commit is applied once (the fence row's op record).

A caller that lost the reply of a committed stock write (a timeout, a
backend error after the commit) tries it again with the same lease and the
same order: the retry must answer as the first try did and move no more
units. And a catalog made before the stock table had its op column still
opens and sells. Each test ends with the catalog's per-SKU conservation
audit (initial = left + held + sold).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from examples.shop.catalog import Catalog, SkuAudit
from examples.shop.db import Database
from examples.shop.simulation import Settings, build_shop, prepare
from scalekit import BackendUnavailableError
from scalekit.locking import MemoryLock

from .test_shop import assert_conserved


def test_a_take_retried_after_its_commit_takes_the_units_once(tmp_path: Path) -> None:
    storage = prepare(tmp_path, Settings(hot_skus=1, hot_stock=5, cold_skus=0))
    catalog = storage.catalog
    lease = MemoryLock("replay-take").acquire()
    claim = catalog.claim("hot-0", lease, "o1")
    assert claim is not None and claim.left == 5
    assert catalog.take("hot-0", lease, "o1", 2, 1999) == "taken"
    # The reply was lost: the same change again, and again from a fresh claim.
    assert catalog.take("hot-0", lease, "o1", 2, 1999) == "taken"
    again = catalog.claim("hot-0", lease, "o1")
    assert again is not None and again.left == 3
    assert catalog.take("hot-0", lease, "o1", 2, 1999) == "taken"
    assert catalog.stock("hot-0") == 3
    assert catalog.held("o1") == {"hot-0": (2, 1999)}
    assert catalog.audit() == {"hot-0": SkuAudit(initial=5, left=3, held=2, sold=0)}
    lease.release()


def test_a_give_back_retried_after_its_commit_returns_the_units_once(tmp_path: Path) -> None:
    storage = prepare(tmp_path, Settings(hot_skus=1, hot_stock=5, cold_skus=0))
    catalog = storage.catalog
    lease = MemoryLock("replay-give-back").acquire()
    assert catalog.claim("hot-0", lease, "o1") is not None
    assert catalog.take("hot-0", lease, "o1", 2, 1999) == "taken"
    assert catalog.void_unless_charged("order:o1", 0.0)
    assert catalog.give_back("hot-0", lease, "o1") == "returned"
    assert catalog.give_back("hot-0", lease, "o1") == "returned"  # the lost reply's retry
    assert catalog.stock("hot-0") == 5
    assert catalog.held("o1") == {}
    assert catalog.audit() == {"hot-0": SkuAudit(initial=5, left=5, held=0, sold=0)}
    lease.release()


def test_a_catalog_made_without_the_op_column_opens_and_sells(tmp_path: Path) -> None:
    storage = prepare(tmp_path, Settings(hot_skus=1, hot_stock=5, cold_skus=0))
    path = storage.catalog.db.path
    old = sqlite3.connect(path)
    old.execute("ALTER TABLE stock DROP COLUMN op")  # the stock table as it was made before
    old.commit()
    old.close()
    catalog = Catalog(Database(path))
    columns = [row[1] for row in catalog.db.connection().execute("PRAGMA table_info(stock)")]
    assert "op" in columns
    lease = MemoryLock("replay-migrated").acquire()
    assert catalog.claim("hot-0", lease, "o1") is not None
    assert catalog.take("hot-0", lease, "o1", 1, 1999) == "taken"
    assert catalog.take("hot-0", lease, "o1", 1, 1999) == "taken"
    assert catalog.stock("hot-0") == 4
    Catalog(Database(path))  # opened again: nothing left to add
    assert catalog.audit() == {"hot-0": SkuAudit(initial=5, left=4, held=1, sold=0)}
    lease.release()


def test_a_backend_error_after_the_take_committed_moves_no_unit_twice(tmp_path: Path) -> None:
    settings = Settings(failing_gateway_rate=0.0)
    storage = prepare(tmp_path, settings)
    shop = build_shop(tmp_path, settings, settings.backends(storage.catalog.shop_id))
    real = shop.catalog.take
    tries: list[str] = []

    def committed_then_lost(*args: object, **kwargs: object) -> str:
        tries.append(real(*args, **kwargs))  # type: ignore[arg-type]
        if len(tries) == 1:
            raise BackendUnavailableError("the reply of the committed take was lost")
        return tries[-1]

    shop.catalog.take = committed_then_lost  # type: ignore[method-assign]
    user = shop.register("replay@example.com")
    shop.add_to_cart(user, "hot-0", 2)
    before = shop.storage.stock("hot-0")
    with pytest.raises(BackendUnavailableError):
        shop.checkout(user, "k")
    assert tries == ["taken"]
    # Given up: the units it held went back once; a retry with the key changes nothing.
    assert shop.storage.stock("hot-0") == before
    assert shop.checkout(user, "k").status == "released"
    assert shop.storage.stock("hot-0") == before
    assert shop.storage.charge_count() == 0
    assert_conserved(storage)
