"""The catalog database: products, stock with its fence, reservations and the payment ledger.

Stock moves only under a SKU's scalekit lock, and only through the fence
on the SKU's ``stock`` row, kept by scalekit's
`scalekit.locking.fencing.SQLFencedStore` on that table (columns ``sku``,
``qty``, ``fence``, ``holder``, ``op``):

* ``claim`` records the lease's token as the row's fence if it is newer
  than the stored one, and reads stock and price in the same transaction;
  an older token is refused, and so is an equal one carried by another
  lease (two holders given one token by a lock server that lost its
  counter cannot both pass);
* the write that follows (take or give back units, change the price)
  applies only while the fence is still exactly that lease's claim, so any
  newer claim in between voids it, and so do fences lowered since
  (`adopt_fences`, which lowers them only while no other process uses the
  data directory). A price change writes only the price; giving units back
  also needs the order's payment intent voided first.
* units move by a fenced increment recording its op id (``take:<order>``,
  ``return:<order>``) in ``op``, and each change is idempotent per order:
  a retry after a lost reply moves nothing more. A catalog made before
  the ``op`` column existed gets it when first opened.

Every stock change writes a row of ``reservations`` in the same
transaction: units ``held`` for an unpaid order, ``sold`` once it is paid,
``returned`` when given back. So for every SKU, at every instant,
``initial = qty + held + sold``: the conservation audit reads it straight
from the tables.

The payment ledger (``charges``) and the cancelled payment intents
(``voided``) live here too, so "charged" and "voided" are decided in one
transaction: whichever comes first wins, the other is refused.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass

from scalekit.exceptions import StaleTokenError
from scalekit.locking import Lease
from scalekit.locking.fencing import SQLFencedStore

from . import datadir
from .db import Database

Token = Lease | int  # what the fenced store accepts: a lease (the shop's case) or a bare token

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK (qty >= 0),
    fence INTEGER NOT NULL DEFAULT 0, holder TEXT NOT NULL DEFAULT '',
    initial INTEGER NOT NULL, op TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS reservations (
    order_id TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL CHECK (qty > 0),
    price_cents INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'sold', 'returned')),
    PRIMARY KEY (order_id, sku));
CREATE TABLE IF NOT EXISTS charges (
    idempotency_key TEXT PRIMARY KEY, gateway TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    charged_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS voided (idempotency_key TEXT PRIMARY KEY, voided_at REAL NOT NULL);
"""
_TABLES = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", _SCHEMA))


@dataclass(frozen=True)
class StockClaim:
    """What a fenced claim read: stock left, the DB price and this order's reservation."""

    left: int
    price_cents: int
    held: int  # units this order holds of the SKU (0 if none)
    state: str | None  # this order's reservation state for the SKU, None if none


@dataclass(frozen=True)
class SkuAudit:
    initial: int
    left: int
    held: int
    sold: int

    @property
    def exact(self) -> bool:
        return self.initial == self.left + self.held + self.sold


def payment_key(order_id: str) -> str:
    """The idempotency key an order is charged (or voided) under."""
    return f"order:{order_id}"


class Catalog:
    """The catalog database (one SQLite file)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._local = threading.local()
        if self._made(db):
            if not self._has_op(db):
                self._add_op(db)
            return  # reads only: a worker starting while another writes does not wait for it
        db.connection().executescript(_SCHEMA)
        with db.transaction("Catalog()") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('shop_id', ?)", (uuid.uuid4().hex[:12],)
            )

    @staticmethod
    def _made(db: Database) -> bool:
        """True if the file already has every table of the schema and the shop id."""
        with db.read("Catalog()") as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {row[0] for row in rows}
            if not set(_TABLES) <= tables:
                return False
            return conn.execute("SELECT 1 FROM meta WHERE key = 'shop_id'").fetchone() is not None

    @staticmethod
    def _has_op(db: Database) -> bool:
        """Whether the ``stock`` table has its ``op`` column (a catalog made before had not)."""
        with db.read("Catalog()") as conn:
            return any(row[1] == "op" for row in conn.execute("PRAGMA table_info(stock)"))

    @classmethod
    def _add_op(cls, db: Database) -> None:
        """Add the ``op`` column to an older catalog's ``stock`` table, its rows kept.

        Run once, by the first process of the new code that opens the file;
        another one opening it at the same time finds the column inside its
        own transaction and adds nothing.
        """
        with db.transaction("Catalog() adding stock.op") as conn:
            if not any(row[1] == "op" for row in conn.execute("PRAGMA table_info(stock)")):
                conn.execute("ALTER TABLE stock ADD COLUMN op TEXT NOT NULL DEFAULT ''")

    @property
    def shop_id(self) -> str:
        """A random id made when the catalog was created; names the shop's locks and keys."""
        with self.db.read("Catalog.shop_id") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'shop_id'").fetchone()
        return str(row[0])

    # -- products ------------------------------------------------------------
    def add_product(self, sku: str, name: str, price_cents: int, qty: int) -> bool:
        """Add a product with *qty* units; False (and nothing changed) if *sku* exists."""
        with self.db.transaction("Catalog.add_product") as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO products VALUES (?, ?, ?)", (sku, name, price_cents)
            )
            if cur.rowcount != 1:
                return False
            conn.execute("INSERT INTO stock (sku, qty, initial) VALUES (?, ?, ?)", (sku, qty, qty))
            return True

    def product(self, sku: str) -> dict[str, object] | None:
        with self.db.read("Catalog.product") as conn:
            row = conn.execute(
                "SELECT p.sku, p.name, p.price_cents, s.qty "
                "FROM products p JOIN stock s USING (sku) WHERE p.sku = ?",
                (sku,),
            ).fetchone()
        if row is None:
            return None
        return {"sku": row[0], "name": row[1], "price_cents": row[2], "stock": row[3]}

    def product_detail(self, sku: str) -> dict[str, object] | None:
        """What the product cache holds: sku, name and price (not the stock)."""
        with self.db.read("Catalog.product_detail") as conn:
            row = conn.execute(
                "SELECT sku, name, price_cents FROM products WHERE sku = ?", (sku,)
            ).fetchone()
        return None if row is None else {"sku": row[0], "name": row[1], "price_cents": row[2]}

    def skus(self) -> list[str]:
        with self.db.read("Catalog.skus") as conn:
            rows = conn.execute("SELECT sku FROM products ORDER BY sku").fetchall()
        return [r[0] for r in rows]

    def stock(self, sku: str) -> int:
        with self.db.read("Catalog.stock") as conn:
            row = conn.execute("SELECT qty FROM stock WHERE sku = ?", (sku,)).fetchone()
        return int(row[0])

    def fence(self, sku: str) -> int:
        with self.db.read("Catalog.fence") as conn:
            row = conn.execute("SELECT fence FROM stock WHERE sku = ?", (sku,)).fetchone()
        return int(row[0])

    def fence_source(self) -> str | None:
        """The lock backend whose tokens the stored fences are (None before the first run)."""
        with self.db.read("Catalog.fence_source") as conn:
            found = conn.execute("SELECT value FROM meta WHERE key = 'fence_source'").fetchone()
        return None if found is None else str(found[0])

    def adopt_fences(self, source: str) -> bool:
        """Make the stored fences *source*'s: lowered to 0 if they were another backend's.

        Tokens of two backends are not comparable (Redis issues server
        microseconds, ZooKeeper a zxid, memory locks count from 1 in each
        process), so a run on another backend than the last one starts the
        fences anew. Lowering a fence would let an older lease of the old
        backend write, so it is done only while no other process uses the
        data directory (`datadir.alone`). Returns whether the fences were reset.

        Raises:
            ConfigurationError: another process uses the directory.
        """
        if self.fence_source() == source:
            return False
        with self.db.transaction("Catalog.adopt_fences") as conn:
            (highest,) = conn.execute("SELECT COALESCE(MAX(fence), 0) FROM stock").fetchone()
            if not highest:  # nothing to lower: recording the source is safe at any time
                self._set_fence_source(conn, source)
                return False
        with (
            datadir.alone(self.db.path.parent, "a run on another lock backend"),
            self.db.transaction("Catalog.adopt_fences") as conn,
        ):
            conn.execute("UPDATE stock SET fence = 0, holder = ''")
            self._set_fence_source(conn, source)
        return True

    @staticmethod
    def _set_fence_source(conn: sqlite3.Connection, source: str) -> None:
        conn.execute(
            "INSERT INTO meta VALUES ('fence_source', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (source,),
        )

    # -- the fence -----------------------------------------------------------
    def _store(self, conn: sqlite3.Connection) -> SQLFencedStore:
        """This thread's fenced store on the ``stock`` table, inside our own transactions."""
        store: SQLFencedStore | None = getattr(self._local, "store", None)
        if store is None or store.connection is not conn:
            store = SQLFencedStore(
                conn,
                dialect="sqlite",
                table="stock",
                key_column="sku",
                value_column="qty",
                fence_column="fence",
                holder_column="holder",
                op_column="op",
                commit=False,
            )
            self._local.store = store
        return store

    def claim(self, sku: str, token: Token, order_id: str | None = None) -> StockClaim | None:
        """Claim *sku*'s row for *token* and read it; None if the token is not newer.

        Strict: a token equal to the stored fence is refused unless it is
        the same lease's, so two holders that were given the same token (a
        lock server that lost its counter) cannot both pass. Claiming on
        read, not only on write, is what makes the read-modify-write safe:
        a holder whose lease ran out cannot write after the next holder has
        read.
        """
        with self.db.transaction("Catalog.claim") as conn:
            try:
                left = self._store(conn).read(sku, token)
            except StaleTokenError:
                return None
            (price,) = conn.execute(
                "SELECT price_cents FROM products WHERE sku = ?", (sku,)
            ).fetchone()
            row = None
            if order_id is not None:
                row = conn.execute(
                    "SELECT qty, state FROM reservations WHERE order_id = ? AND sku = ?",
                    (order_id, sku),
                ).fetchone()
        held = row[0] if row is not None and row[1] == "held" else 0
        return StockClaim(int(left), int(price), held, None if row is None else row[1])

    @staticmethod
    def _still_claimed(conn: sqlite3.Connection, sku: str, token: Token) -> bool:
        """Whether *sku*'s fence is exactly *token*'s claim (checked in the write's transaction).

        Stricter than the fenced store's write, which also passes a token
        newer than the fence: a write always follows its own claim, so a
        fence that is not that claim (a newer holder, or fences lowered
        since) voids it.
        """
        number, owner = (
            (int(token.token), str(token.owner)) if isinstance(token, Lease) else (int(token), "")
        )
        row = conn.execute("SELECT fence, holder FROM stock WHERE sku = ?", (sku,)).fetchone()
        return row is not None and int(row[0]) == number and str(row[1]) == owner

    def take(self, sku: str, token: Token, order_id: str, qty: int, price: int) -> str:
        """Take *qty* units of *sku* and hold them for *order_id*, if the fence is still *token*.

        Idempotent per order: once the order holds (or sold) units of *sku*,
        a retry (its first try committed but the reply was lost) changes
        nothing and answers ``"taken"`` again. The units leave the row by a
        fenced increment under the op id ``take:<order_id>``, so a replay of
        that very change with the same lease is not applied twice either.

        Returns ``"taken"``, ``"fenced"`` (a newer claim came first),
        ``"out of stock"`` (fewer than *qty* left: nothing changed) or
        ``"voided"`` (the order's payment intent was voided: it is being
        given up, so it must not hold anything new).
        """
        with self.db.transaction("Catalog.take") as conn:
            if conn.execute(
                "SELECT 1 FROM voided WHERE idempotency_key = ?", (payment_key(order_id),)
            ).fetchone():
                return "voided"
            if not self._still_claimed(conn, sku, token):
                return "fenced"
            if self._reservation(conn, order_id, sku) in ("held", "sold"):
                return "taken"  # a retry of a take that committed
            left = conn.execute("SELECT qty FROM stock WHERE sku = ?", (sku,)).fetchone()
            if int(left[0]) < qty:
                return "out of stock"
            try:
                self._store(conn).incr(sku, -qty, token, op=f"take:{order_id}")
            except StaleTokenError:
                return "fenced"
            conn.execute(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, 'held')", (order_id, sku, qty, price)
            )
            return "taken"

    def give_back(self, sku: str, token: Token, order_id: str) -> str:
        """Give the units *order_id* holds of *sku* back to the row, if the fence is still *token*.

        Idempotent per order: the units returned are the ones its
        reservation holds, by a fenced increment under the op id
        ``return:<order_id>``, and the reservation is then marked returned,
        so a retry finds nothing held and changes nothing.

        Returns ``"returned"`` (also when nothing was held), ``"fenced"``
        (the fence is no longer *token*'s claim) or ``"not voided"`` (the
        order's payment intent was not voided first, so a charge could still
        follow: nothing changed).
        """
        with self.db.transaction("Catalog.give_back") as conn:
            if not conn.execute(
                "SELECT 1 FROM voided WHERE idempotency_key = ?", (payment_key(order_id),)
            ).fetchone():
                return "not voided"
            if not self._still_claimed(conn, sku, token):
                return "fenced"
            row = conn.execute(
                "SELECT qty FROM reservations WHERE order_id = ? AND sku = ? AND state = 'held'",
                (order_id, sku),
            ).fetchone()
            if row is None:
                return "returned"  # nothing held: given back already, or never taken
            try:
                self._store(conn).incr(sku, int(row[0]), token, op=f"return:{order_id}")
            except StaleTokenError:
                return "fenced"
            conn.execute(
                "UPDATE reservations SET state = 'returned' "
                "WHERE order_id = ? AND sku = ? AND state = 'held'",
                (order_id, sku),
            )
            return "returned"

    @staticmethod
    def _reservation(conn: sqlite3.Connection, order_id: str, sku: str) -> str | None:
        row = conn.execute(
            "SELECT state FROM reservations WHERE order_id = ? AND sku = ?", (order_id, sku)
        ).fetchone()
        return None if row is None else str(row[0])

    def set_price(self, sku: str, token: Token, price_cents: int) -> bool:
        """Change the price of *sku* if the fence is still *token*'s claim (stock untouched)."""
        with self.db.transaction("Catalog.set_price") as conn:
            if not self._still_claimed(conn, sku, token):
                return False
            conn.execute("UPDATE products SET price_cents = ? WHERE sku = ?", (price_cents, sku))
            return True

    # -- reservations ----------------------------------------------------------
    def held(self, order_id: str) -> dict[str, tuple[int, int]]:
        """sku -> (qty, unit price) the order holds."""
        with self.db.read("Catalog.held") as conn:
            rows = conn.execute(
                "SELECT sku, qty, price_cents FROM reservations "
                "WHERE order_id = ? AND state = 'held'",
                (order_id,),
            ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def sell(self, order_id: str) -> int:
        """Turn the order's held units into sold ones; return its total in cents.

        Only called once the order is charged; units charged for are never
        given back (giving back needs a voided payment intent first).
        """
        with self.db.transaction("Catalog.sell") as conn:
            conn.execute(
                "UPDATE reservations SET state = 'sold' WHERE order_id = ? AND state = 'held'",
                (order_id,),
            )
            (total,) = conn.execute(
                "SELECT COALESCE(SUM(qty * price_cents), 0) FROM reservations "
                "WHERE order_id = ? AND state = 'sold'",
                (order_id,),
            ).fetchone()
            return int(total)

    def holds(self) -> dict[str, dict[str, int]]:
        """order id -> sku -> units held for it (read in one transaction)."""
        found: dict[str, dict[str, int]] = {}
        with self.db.read("Catalog.holds") as conn:
            rows = conn.execute(
                "SELECT order_id, sku, qty FROM reservations WHERE state = 'held'"
            ).fetchall()
        for order_id, sku, qty in rows:
            found.setdefault(str(order_id), {})[str(sku)] = int(qty)
        return found

    def audit(self) -> dict[str, SkuAudit]:
        """sku -> initial, left, held and sold units, read in one transaction."""
        with self.db.transaction("Catalog.audit") as conn:
            stock = conn.execute("SELECT sku, initial, qty FROM stock").fetchall()
            moved = conn.execute(
                "SELECT sku, state, SUM(qty) FROM reservations "
                "WHERE state != 'returned' GROUP BY sku, state"
            ).fetchall()
        per: dict[tuple[str, str], int] = {(s, st): int(n) for s, st, n in moved}
        return {
            sku: SkuAudit(initial, left, per.get((sku, "held"), 0), per.get((sku, "sold"), 0))
            for sku, initial, left in stock
        }

    # -- payments ledger -------------------------------------------------------
    def record_charge(self, key: str, gateway: str, amount_cents: int, now: float) -> str:
        """Record a charge once per key: ``"charged"``, ``"duplicate"`` or ``"voided"``."""
        with self.db.transaction("Catalog.record_charge") as conn:
            if conn.execute("SELECT 1 FROM voided WHERE idempotency_key = ?", (key,)).fetchone():
                return "voided"
            cur = conn.execute(
                "INSERT OR IGNORE INTO charges VALUES (?, ?, ?, ?)",
                (key, gateway, amount_cents, now),
            )
            return "charged" if cur.rowcount == 1 else "duplicate"

    def void_unless_charged(self, key: str, now: float) -> bool:
        """Cancel the intent *key*: True if voided (no charge can follow), False if charged."""
        with self.db.transaction("Catalog.void_unless_charged") as conn:
            if conn.execute("SELECT 1 FROM charges WHERE idempotency_key = ?", (key,)).fetchone():
                return False
            conn.execute("INSERT OR IGNORE INTO voided VALUES (?, ?)", (key, now))
            return True

    def charged_by(self, key: str) -> str | None:
        """The gateway that charged under *key*, or None if nothing was charged."""
        with self.db.read("Catalog.charged_by") as conn:
            row = conn.execute(
                "SELECT gateway FROM charges WHERE idempotency_key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def charge_count(self) -> int:
        with self.db.read("Catalog.charge_count") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM charges").fetchone()[0])
