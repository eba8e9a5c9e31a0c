"""SQLite storage for the shop: user shards, month partitions and the catalog.

Users, carts and orders live in N shard databases chosen by a
`scalekit.sharding.HashRouter` on the user id; orders are further split
into one table per month chosen by a `scalekit.sharding.TimeRouter`, so an
order-history query reads only the months it covers. Products, stock, its
reservations and the payment ledger live in the catalog database
(`catalog.py`).

An order is written first, as ``reserved``, before any stock is taken for
it; it ends ``paid`` or ``released``. Every status change is a
compare-and-set from ``reserved``, so two executions of one checkout (a
retry, the recovery sweep) cannot both decide it.
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from scalekit.sharding import HashRouter, TimeRouter

from . import datadir
from .catalog import Catalog
from .db import Database

if TYPE_CHECKING:
    from scalekit.sharding import MigratingRouter

T = TypeVar("T")

_SHARD_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS carts (
    user_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty > 0),
    PRIMARY KEY (user_id, sku));
CREATE TABLE IF NOT EXISTS checkouts (
    idempotency_key TEXT PRIMARY KEY, user_id TEXT NOT NULL, order_id TEXT NOT NULL,
    partition TEXT NOT NULL);
"""

_ORDERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    order_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_at REAL NOT NULL,
    status TEXT NOT NULL, total_cents INTEGER NOT NULL, items TEXT NOT NULL,
    gateway TEXT)
"""


@dataclass(frozen=True)
class Order:
    order_id: str
    user_id: str
    created_at: datetime
    status: str
    total_cents: int
    items: dict[str, int]
    gateway: str | None


class ShopStorage:
    """The catalog database and the user shards, in one directory.

    While it lives, this process counts as a user of the directory
    (`datadir.share`): a memory-lock run elsewhere is refused meanwhile.

    Raises:
        ConfigurationError: a memory-lock run has the directory to itself.
    """

    def __init__(self, directory: Path, shards: int = 4, busy_timeout: float = 30.0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        # This process uses the directory while this object lives (datadir.py).
        datadir.share(directory)
        weakref.finalize(self, datadir.leave, directory)
        self.busy_timeout = busy_timeout
        self.catalog = Catalog(Database(directory / "catalog.sqlite3", busy_timeout))
        self.shard_names = [f"shard{i}" for i in range(shards)]
        self.shards = {
            name: Database(directory / f"{name}.sqlite3", busy_timeout) for name in self.shard_names
        }
        self.router = HashRouter(self.shard_names, strategy="jump")
        self.months = TimeRouter("month", "orders_{:%Y_%m}")
        # Set while a shard is being added (see resharding.py).
        self.migration: MigratingRouter[str] | None = None
        for db in self.shards.values():
            db.connection().executescript(_SHARD_SCHEMA)

    def shard_for(self, user_id: str) -> Database:
        return self.shards[self.router.route(user_id)]

    def on_user(self, user_id: str, work: Callable[..., T], *args: Any, write: bool = True) -> T:
        """Run ``work(conn, user_id, *args)`` on the user's shard, in one transaction if *write*.

        While a shard is being added (``resharding.py``), the migration's
        router runs it, in the transaction that checks the user is served there.
        """
        if self.migration is not None:
            return self.migration.execute(user_id, work, *args)  # type: ignore[no-any-return]
        db = self.shard_for(user_id)
        if not write:
            with db.read("ShopStorage.on_user") as conn:
                return work(conn, user_id, *args)
        with db.transaction("ShopStorage.on_user") as conn:
            return work(conn, user_id, *args)

    def _orders_table(self, conn: sqlite3.Connection, when: datetime) -> str:
        table: str = self.months.route(when)
        conn.execute(_ORDERS_SCHEMA.format(table=table))
        return table

    # -- catalog (see catalog.py) ---------------------------------------------
    def add_product(self, sku: str, name: str, price_cents: int, qty: int) -> bool:
        return self.catalog.add_product(sku, name, price_cents, qty)

    def product(self, sku: str) -> dict[str, Any] | None:
        return self.catalog.product(sku)

    def skus(self) -> list[str]:
        return self.catalog.skus()

    def stock(self, sku: str) -> int:
        return self.catalog.stock(sku)

    # -- users, carts ----------------------------------------------------------
    def add_user(self, user_id: str, email: str, now: float) -> None:
        def insert(conn: sqlite3.Connection, user_id: str) -> None:
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, email, now))

        self.on_user(user_id, insert)

    def user_exists(self, user_id: str) -> bool:
        def exists(conn: sqlite3.Connection, user_id: str) -> bool:
            sql = "SELECT 1 FROM users WHERE user_id = ?"
            return conn.execute(sql, (user_id,)).fetchone() is not None

        return self.on_user(user_id, exists, write=False)

    def set_cart_item(self, user_id: str, sku: str, qty: int) -> None:
        def put(conn: sqlite3.Connection, user_id: str) -> None:
            if qty == 0:
                conn.execute("DELETE FROM carts WHERE user_id = ? AND sku = ?", (user_id, sku))
            else:
                conn.execute(
                    "INSERT INTO carts VALUES (?, ?, ?) ON CONFLICT (user_id, sku) "
                    "DO UPDATE SET qty = excluded.qty",
                    (user_id, sku, qty),
                )

        self.on_user(user_id, put)

    def cart(self, user_id: str) -> dict[str, int]:
        def read(conn: sqlite3.Connection, user_id: str) -> dict[str, int]:
            sql = "SELECT sku, qty FROM carts WHERE user_id = ? ORDER BY sku"
            return {r[0]: r[1] for r in conn.execute(sql, (user_id,))}

        return self.on_user(user_id, read, write=False)

    def clear_cart(self, conn: sqlite3.Connection, user_id: str) -> None:
        conn.execute("DELETE FROM carts WHERE user_id = ?", (user_id,))

    # -- orders ----------------------------------------------------------------
    def find_checkout(self, user_id: str, key: str) -> Order | None:
        return self.on_user(user_id, self._find_checkout, key, write=False)

    def _find_checkout(self, conn: sqlite3.Connection, user_id: str, key: str) -> Order | None:
        row = conn.execute(
            "SELECT order_id, partition FROM checkouts WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return None if row is None else _read_order(conn, row[0], row[1])

    def create_order(self, order: Order, checkout_key: str) -> Order:
        """Insert *order* and its checkout key; return the existing order if the key is known."""

        def insert(conn: sqlite3.Connection, user_id: str) -> Order:
            existing = self._find_checkout(conn, user_id, checkout_key)
            if existing is not None:
                return existing
            table = self._orders_table(conn, order.created_at)
            conn.execute(
                f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    order.order_id,
                    order.user_id,
                    order.created_at.timestamp(),
                    order.status,
                    order.total_cents,
                    json.dumps(order.items, sort_keys=True),
                    order.gateway,
                ),
            )
            conn.execute(
                "INSERT INTO checkouts VALUES (?, ?, ?, ?)",
                (checkout_key, order.user_id, order.order_id, table),
            )
            self.clear_cart(conn, order.user_id)
            return order

        return self.on_user(order.user_id, insert)

    def set_order_status(
        self, order: Order, status: str, gateway: str | None, total_cents: int | None = None
    ) -> bool:
        """Move *order* from ``reserved`` to *status*; False if it had left ``reserved``."""

        def update(conn: sqlite3.Connection, user_id: str) -> bool:
            table = self._orders_table(conn, order.created_at)
            cur = conn.execute(
                f"UPDATE {table} SET status = ?, gateway = ?, "
                "total_cents = COALESCE(?, total_cents) WHERE order_id = ? AND status = 'reserved'",
                (status, gateway, total_cents, order.order_id),
            )
            return cur.rowcount == 1

        return self.on_user(order.user_id, update)

    def order(self, user_id: str, order_id: str, table: str) -> Order | None:
        def read(conn: sqlite3.Connection, user_id: str) -> Order | None:
            return _read_order(conn, order_id, table)

        return self.on_user(user_id, read, write=False)

    def orders(self, user_id: str, start: datetime, end: datetime) -> list[Order]:
        """The user's orders created in [start, end), reading only those months' tables."""

        def read(conn: sqlite3.Connection, user_id: str) -> list[Order]:
            existing = {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orders_%'"
                )
            }
            found: list[Order] = []
            for table in self.months.route_range(start, end):
                if table not in existing:
                    continue
                rows = conn.execute(
                    f"SELECT * FROM {table} WHERE user_id = ? AND created_at >= ? "
                    "AND created_at < ?",
                    (user_id, start.timestamp(), end.timestamp()),
                )
                found.extend(_order(r) for r in rows)
            return sorted(found, key=lambda o: o.created_at)

        return self.on_user(user_id, read, write=False)

    def order_counts(self) -> dict[str, dict[str, int]]:
        """shard -> status -> count, over every month table."""
        counts: dict[str, dict[str, int]] = {}
        for name, db in self.shards.items():
            per: dict[str, int] = {}
            for table in self._month_tables(db):
                for status, n in db.connection().execute(
                    f"SELECT status, COUNT(*) FROM {table} GROUP BY status"
                ):
                    per[status] = per.get(status, 0) + n
            counts[name] = per
        return counts

    def _month_tables(self, db: Database) -> list[str]:
        return [
            r[0]
            for r in db.connection().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orders_%'"
            )
        ]

    def units(self, status: str) -> dict[str, int]:
        """sku -> units in orders of *status* (``paid``: sold; ``reserved``: in flight)."""
        units: dict[str, int] = {}
        for db in self.shards.values():
            for table in self._month_tables(db):
                for (items,) in db.connection().execute(
                    f"SELECT items FROM {table} WHERE status = ?", (status,)
                ):
                    for sku, qty in json.loads(items).items():
                        units[sku] = units.get(sku, 0) + qty
        return units

    def order_states(self) -> dict[str, tuple[str, dict[str, int]]]:
        """order id -> (status, items), over every shard and month table."""
        states: dict[str, tuple[str, dict[str, int]]] = {}
        for db in self.shards.values():
            for table in self._month_tables(db):
                for order_id, status, items in db.connection().execute(
                    f"SELECT order_id, status, items FROM {table}"
                ):
                    states[str(order_id)] = (str(status), json.loads(items))
        return states

    def sold(self) -> dict[str, int]:
        """sku -> units in paid orders."""
        return self.units("paid")

    def reserved_orders(self, created_before: float) -> list[Order]:
        """Orders still ``reserved`` that were created before *created_before* (epoch seconds)."""
        found: list[Order] = []
        for db in self.shards.values():
            for table in self._month_tables(db):
                rows = db.connection().execute(
                    f"SELECT * FROM {table} WHERE status = 'reserved' AND created_at < ?",
                    (created_before,),
                )
                found.extend(_order(r) for r in rows)
        return sorted(found, key=lambda o: o.created_at)

    # -- payments ledger (in the catalog) ----------------------------------------
    def record_charge(self, key: str, gateway: str, amount_cents: int, now: float) -> str:
        return self.catalog.record_charge(key, gateway, amount_cents, now)

    def charged_by(self, key: str) -> str | None:
        return self.catalog.charged_by(key)

    def charge_count(self) -> int:
        return self.catalog.charge_count()


def _read_order(conn: sqlite3.Connection, order_id: str, table: str) -> Order | None:
    row = conn.execute(f"SELECT * FROM {table} WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else _order(row)


def _order(row: tuple[Any, ...]) -> Order:
    return Order(
        row[0],
        row[1],
        datetime.fromtimestamp(row[2], tz=timezone.utc),
        row[3],
        row[4],
        json.loads(row[5]),
        row[6],
    )
