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
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scalekit.sharding import HashRouter, TimeRouter

from .catalog import Catalog
from .db import Database

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
    """The catalog database and the user shards, in one directory."""

    def __init__(self, directory: Path, shards: int = 4) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.catalog = Catalog(Database(directory / "catalog.sqlite3"))
        self.shard_names = [f"shard{i}" for i in range(shards)]
        self.shards = {name: Database(directory / f"{name}.sqlite3") for name in self.shard_names}
        self.router = HashRouter(self.shard_names, strategy="jump")
        self.months = TimeRouter("month", "orders_{:%Y_%m}")
        self._tables: set[tuple[str, str]] = set()
        self._tables_lock = threading.Lock()
        for db in self.shards.values():
            db.connection().executescript(_SHARD_SCHEMA)

    def shard_for(self, user_id: str) -> Database:
        return self.shards[self.router.route(user_id)]

    def orders_table(self, shard: str, when: datetime) -> str:
        """The month table for *when* in *shard*, created on first use."""
        table: str = self.months.route(when)
        with self._tables_lock:
            if (shard, table) not in self._tables:
                self.shards[shard].connection().execute(_ORDERS_SCHEMA.format(table=table))
                self._tables.add((shard, table))
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
        with self.shard_for(user_id).transaction() as conn:
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (user_id, email, now))

    def user_exists(self, user_id: str) -> bool:
        row = (
            self.shard_for(user_id)
            .connection()
            .execute("SELECT 1 FROM users WHERE user_id = ?", (user_id,))
            .fetchone()
        )
        return row is not None

    def set_cart_item(self, user_id: str, sku: str, qty: int) -> None:
        with self.shard_for(user_id).transaction() as conn:
            if qty == 0:
                conn.execute("DELETE FROM carts WHERE user_id = ? AND sku = ?", (user_id, sku))
            else:
                conn.execute(
                    "INSERT INTO carts VALUES (?, ?, ?) ON CONFLICT (user_id, sku) "
                    "DO UPDATE SET qty = excluded.qty",
                    (user_id, sku, qty),
                )

    def cart(self, user_id: str) -> dict[str, int]:
        rows = (
            self.shard_for(user_id)
            .connection()
            .execute("SELECT sku, qty FROM carts WHERE user_id = ? ORDER BY sku", (user_id,))
        )
        return {r[0]: r[1] for r in rows}

    def clear_cart(self, conn: sqlite3.Connection, user_id: str) -> None:
        conn.execute("DELETE FROM carts WHERE user_id = ?", (user_id,))

    # -- orders ----------------------------------------------------------------
    def find_checkout(self, user_id: str, key: str) -> Order | None:
        db = self.shard_for(user_id)
        row = (
            db.connection()
            .execute("SELECT order_id, partition FROM checkouts WHERE idempotency_key = ?", (key,))
            .fetchone()
        )
        return None if row is None else self.order(user_id, row[0], row[1])

    def create_order(self, order: Order, checkout_key: str) -> Order:
        """Insert *order* and its checkout key; return the existing order if the key is known."""
        shard = self.router.route(order.user_id)
        table = self.orders_table(shard, order.created_at)
        with self.shards[shard].transaction() as conn:
            row = conn.execute(
                "SELECT order_id, partition FROM checkouts WHERE idempotency_key = ?",
                (checkout_key,),
            ).fetchone()
            if row is not None:
                existing = self.order(order.user_id, row[0], row[1])
                assert existing is not None
                return existing
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

    def set_order_status(
        self, order: Order, status: str, gateway: str | None, total_cents: int | None = None
    ) -> bool:
        """Move *order* from ``reserved`` to *status*; False if it had left ``reserved``."""
        shard = self.router.route(order.user_id)
        table = self.orders_table(shard, order.created_at)
        with self.shards[shard].transaction() as conn:
            cur = conn.execute(
                f"UPDATE {table} SET status = ?, gateway = ?, "
                "total_cents = COALESCE(?, total_cents) WHERE order_id = ? AND status = 'reserved'",
                (status, gateway, total_cents, order.order_id),
            )
            return cur.rowcount == 1

    def order(self, user_id: str, order_id: str, table: str) -> Order | None:
        row = (
            self.shard_for(user_id)
            .connection()
            .execute(f"SELECT * FROM {table} WHERE order_id = ?", (order_id,))
            .fetchone()
        )
        return None if row is None else _order(row)

    def orders(self, user_id: str, start: datetime, end: datetime) -> list[Order]:
        """The user's orders created in [start, end), reading only those months' tables."""
        shard = self.router.route(user_id)
        db = self.shards[shard]
        existing = {
            r[0]
            for r in db.connection().execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'orders_%'"
            )
        }
        found: list[Order] = []
        for table in self.months.route_range(start, end):
            if table not in existing:
                continue
            rows = db.connection().execute(
                f"SELECT * FROM {table} WHERE user_id = ? AND created_at >= ? AND created_at < ?",
                (user_id, start.timestamp(), end.timestamp()),
            )
            found.extend(_order(r) for r in rows)
        return sorted(found, key=lambda o: o.created_at)

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
