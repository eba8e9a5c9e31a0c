"""The shop's order flow: register, browse, cart, checkout, pay, history, recovery.

Every step that the naive version gets wrong is built from a scalekit
primitive:

* product detail is read through a scalekit cache with single-flight loads
  and versioned write-back (``get_or_load``), invalidated after a price
  change commits;
* stock is taken under a per-SKU scalekit lock, and the stock row is
  claimed and written with the lease's fencing token, so a holder whose
  lease was lost (a long GC pause, a SIGSTOP) cannot write over a newer one;
* order totals use the price the database has under that lock, never a
  cached one;
* checkout is idempotent by key, and payment is charged once per order
  through whichever gateway the balancer picks;
* a crash anywhere leaves at worst an order ``reserved`` with its stock
  held; `Shop.recover` settles it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from scalekit import BackendError, LockError
from scalekit.locking import Lease
from scalekit.observability import Telemetry

from .catalog import StockClaim, payment_key
from .gateways import GatewayError, PaymentService
from .product_cache import ProductCache
from .storage import Order, ShopStorage


class Timings:
    """Seconds spent per phase (lock, database, cache, payment), summed over threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed


class CheckoutRejected(Exception):
    """The checkout cannot be completed; ``reason`` says why, in a word or two.

    Reasons: ``empty cart``, ``out of stock``, ``lock timeout``, ``fenced off``
    (a lock holder's lease was lost and the storage refused its write),
    ``released`` (the order was given up meanwhile, e.g. by the recovery
    sweep) and ``payment failed``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Recovery:
    """What one recovery sweep did."""

    completed: int = 0  # charged orders marked paid
    released: int = 0  # unpaid orders whose stock went back
    units_returned: int = 0
    left_reserved: int = 0  # could not be settled now (backend down); the next sweep retries

    def __str__(self) -> str:
        return (
            f"{self.released} stale orders released ({self.units_returned} units back in "
            f"stock), {self.completed} charged orders completed, {self.left_reserved} left"
        )


# The lock label of every stock lock's metrics: one series, not one per SKU.
LOCK_LABEL = "shop:stock"

# Errors a step after the stock write may raise without undoing it: they are
# counted, and the lease expires by itself. Any backend error, not only an
# outage: a Redis Cluster that lost a master answers "The cluster is down".
_AFTER_WRITE = (LockError, BackendError)
# Errors that leave an order reserved for the next sweep rather than end one:
# a lock backend down or failing, a database locked past its busy timeout,
# a disk full.
_RETRY_LATER = (BackendError, sqlite3.OperationalError)


class Shop:
    """The order flow over *storage*, a product cache, a lock factory and payments.

    Args:
        storage: the shop's databases.
        cache: the product cache (a [ProductCache][examples.shop.service.ProductCache]).
        lock_for: returns the lock object for a lock name, e.g.
            `lambda name: MemoryLock(name, ttl=5)`; the shop keeps one per SKU.
        payments: charges orders through the balanced gateways.
        lock_timeout: seconds a checkout waits for a SKU's lock.
        clock: wall clock (order timestamps, the recovery sweep's age).
        hold_hook: called with the SKU while its lock is held, after the claim
            (tests pause a holder there).

    Thread-safe: buyer threads share one Shop.
    """

    def __init__(
        self,
        storage: ShopStorage,
        cache: ProductCache,
        lock_for: Callable[[str], Any],
        payments: PaymentService,
        *,
        lock_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        hold_hook: Callable[[str], None] | None = None,
    ) -> None:
        self.storage = storage
        self.catalog = storage.catalog
        self.cache = cache
        self.payments = payments
        self.lock_timeout = lock_timeout
        self.clock = clock
        self._lock_for = lock_for
        self._locks: dict[str, Any] = {}
        self._hold_hook = hold_hook
        self._counts_lock = threading.Lock()
        self.lookups = 0
        self.loads = 0
        self.fence_rejections = 0
        # Claims refused before reading: the lock's token not above the stored
        # fence. Nearly all of them means the backend's tokens went back.
        self.stale_tokens = 0
        self.errors: Counter[str] = Counter()  # "ErrorClass (step)" -> count, for the report
        self.timings = Timings()
        # Set by examples.shop.metrics.ShopMetrics.watch to report lock waits.
        self.telemetry: Telemetry | None = None

    def _lock_waited(self, started: float, outcome: str) -> None:
        telemetry = self.telemetry
        if telemetry is None or not telemetry.active:
            return
        waited = time.monotonic() - started
        telemetry.observe("scalekit_lock_wait_seconds", waited, lock=LOCK_LABEL, outcome=outcome)
        if outcome == "acquired":
            telemetry.add("scalekit_lock_acquisitions", lock=LOCK_LABEL)
        else:
            telemetry.add("scalekit_lock_timeouts", lock=LOCK_LABEL)

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + 1)

    def note(self, exc: BaseException, step: str) -> None:
        """Count *exc* for the report, by class and *step*."""
        with self._counts_lock:
            self.errors[f"{type(exc).__name__} ({step})"] += 1

    # -- registration and catalog ------------------------------------------------
    def register(self, email: str) -> str:
        user_id = uuid.uuid4().hex
        with self.timings.measure("database"):
            self.storage.add_user(user_id, email, self.clock())
        return user_id

    def view_product(self, sku: str) -> dict[str, Any]:
        """Product detail through the cache, with the stock left; KeyError for an unknown SKU.

        The cached detail (name, price) may lag the database by the cache's
        bound after a price change (docs/shop.md); checkout never uses it.
        Stock changes with every sale, far too often to be worth caching
        (every view of a hot product would be a miss), so it is read from
        the database.
        """

        def load() -> dict[str, Any] | None:
            self._count("loads")
            with self.timings.measure("database"):
                return self.catalog.product_detail(sku)

        self._count("lookups")
        with self.timings.measure("cache"):
            product = self.cache.get_or_load(sku, load)
        if product is None:
            raise KeyError(sku)
        with self.timings.measure("database"):
            stock = self.catalog.stock(sku)
        return {**product, "stock": stock}

    def catalog_view(self) -> list[dict[str, Any]]:
        return [self.view_product(sku) for sku in self.storage.skus()]

    def set_price(self, sku: str, price_cents: int) -> None:
        """Change a price in the database under the SKU's lock, then invalidate the cache.

        Raises:
            CheckoutRejected: the lock was not acquired or the write was fenced off.
            BackendUnavailableError: the lock backend is down (nothing changed),
                or the invalidation failed after the change (the old price may
                then be served until the cache's ttl; call again to retry).
        """

        def write(claim: StockClaim, lease: Lease) -> bool:
            if not self.catalog.set_price(sku, lease, price_cents):
                self._count("fence_rejections")
                raise CheckoutRejected(f"price write for {sku} fenced off", "fenced off")
            return True

        self._under_fence(sku, None, write)
        with self.timings.measure("cache"):
            self.cache.invalidate(sku)

    # -- cart ------------------------------------------------------------------
    def set_cart(self, user_id: str, sku: str, qty: int) -> None:
        """Put *qty* of *sku* in the cart (0 removes it)."""
        if qty < 0:
            raise ValueError(f"qty must be >= 0, got {qty!r}")
        with self.timings.measure("database"):
            known = self.storage.user_exists(user_id)
        if not known:
            raise KeyError(f"unknown user {user_id!r}")
        self.view_product(sku)
        with self.timings.measure("database"):
            self.storage.set_cart_item(user_id, sku, qty)

    def add_to_cart(self, user_id: str, sku: str, qty: int = 1) -> None:
        with self.timings.measure("database"):
            have = self.storage.cart(user_id).get(sku, 0)
        self.set_cart(user_id, sku, have + qty)

    def cart(self, user_id: str) -> dict[str, int]:
        return self.storage.cart(user_id)

    # -- checkout and payment --------------------------------------------------------
    def checkout(self, user_id: str, idempotency_key: str) -> Order:
        """Create the order, reserve its stock and pay for it.

        The order is written first (``reserved``, the cart moved into it),
        then each SKU's units are taken under the SKU's lock and fence, at the
        price the database has under that lock, then it is charged. A call
        with an *idempotency_key* seen before returns that order if it is
        settled (``paid`` or ``released``) and otherwise carries it on:
        taking stock and charging are idempotent per order.

        Raises:
            CheckoutRejected: empty cart, not enough stock, a lock not acquired
                in time, a fenced-off write or a failed payment; the order's
                stock is given back and the order ``released``.
            BackendUnavailableError: the lock backend is down; what the order
                holds is given back when possible, else by `Shop.recover`.
        """
        with self.timings.measure("database"):
            order = self.storage.find_checkout(user_id, idempotency_key)
        if order is None:
            with self.timings.measure("database"):
                items = self.cart(user_id)
                # A concurrent call with this key may have just moved the cart
                # into its order (one transaction), so look for it once more.
                order = None if items else self.storage.find_checkout(user_id, idempotency_key)
        if order is None:
            if not items:
                raise CheckoutRejected("the cart is empty", "empty cart")
            order = Order(
                uuid.uuid4().hex,
                user_id,
                datetime.fromtimestamp(self.clock(), timezone.utc),
                "reserved",
                0,
                items,
                None,
            )
            with self.timings.measure("database"):
                order = self.storage.create_order(order, idempotency_key)
        if order.status != "reserved":
            return order
        try:
            for sku in sorted(order.items):
                self._take(order, sku, order.items[sku])
        except BaseException:
            settled = self._give_up(order)
            if settled is not None:  # another execution of this checkout charged it
                return settled
            raise
        return self._pay(order)

    def _pay(self, order: Order) -> Order:
        key = payment_key(order.order_id)
        charged_by = self.catalog.charged_by(key)
        if charged_by is not None:  # another execution of this checkout charged it
            return self._settle_charged(order, charged_by)
        held = self.catalog.held(order.order_id)
        if set(held) != set(order.items):  # given up meanwhile by another execution
            settled = self._give_up(order)
            if settled is not None:
                return settled
            raise CheckoutRejected(f"order {order.order_id} was released", "released")
        total = sum(qty * price for qty, price in held.values())
        try:
            with self.timings.measure("payment"):
                gateway = self.payments.charge(key, total)
        except GatewayError:
            settled = self._give_up(order)
            if settled is not None:  # a lost reply: it was charged after all
                return settled
            raise CheckoutRejected(
                f"payment failed for order {order.order_id}", "payment failed"
            ) from None
        return self._settle_charged(order, gateway)

    def _settle_charged(self, order: Order, gateway: str | None) -> Order:
        with self.timings.measure("database"):
            total = self.catalog.sell(order.order_id)
            self.storage.set_order_status(order, "paid", gateway, total)
        return Order(
            order.order_id, order.user_id, order.created_at, "paid", total, order.items, gateway
        )

    def _give_up(self, order: Order) -> Order | None:
        """Void the order's payment and give its stock back; the paid order if it was charged.

        Voiding first decides the race with a concurrent charge: once voided no
        charge can happen, so the stock may go back. If giving back fails
        (backend down), the order stays ``reserved`` for `Shop.recover`.
        """
        key = payment_key(order.order_id)
        if not self.catalog.void_unless_charged(key, self.clock()):
            return self._settle_charged(order, self.catalog.charged_by(key))
        for sku in sorted(self.catalog.held(order.order_id)):
            try:
                self._give_back(order, sku)
            except (CheckoutRejected, *_RETRY_LATER) as exc:
                self.note(exc, "give back")
                return None
        self.storage.set_order_status(order, "released", None)
        return None

    def _status(self, order: Order) -> str | None:
        """*order*'s status on its user's shard; None if no row is there."""
        with self.timings.measure("database"):
            found = self.storage.order(
                order.user_id, order.order_id, self.storage.months.route(order.created_at)
            )
        return None if found is None else found.status

    def history(self, user_id: str, start: datetime, end: datetime) -> list[Order]:
        return self.storage.orders(user_id, start, end)

    # -- the stock lock and fence ------------------------------------------------------
    def _lock(self, sku: str) -> Any:
        lock = self._locks.get(sku)
        if lock is None:
            lock = self._locks.setdefault(sku, self._lock_for(f"shop:stock:{sku}"))
        return lock

    def _under_fence(
        self,
        sku: str,
        order_id: str | None,
        body: Callable[[StockClaim, Lease], bool],
    ) -> bool:
        """Run *body* holding *sku*'s lock with the row claimed for the lease's token.

        Returns what *body* returns: whether it wrote.
        """
        started = time.monotonic()
        try:
            with self.timings.measure("lock"):
                lease = self._lock(sku).acquire(timeout=self.lock_timeout)
        except LockError as exc:
            self._lock_waited(started, "timeout")
            raise CheckoutRejected(f"stock of {sku} is busy: {exc}", "lock timeout") from None
        self._lock_waited(started, "acquired")
        try:
            with self.timings.measure("database"):
                claim = self.catalog.claim(sku, lease, order_id)
            if claim is None:
                self._count("fence_rejections")
                self._count("stale_tokens")
                raise CheckoutRejected(
                    f"stock of {sku} fenced off before reading (token {lease.token} is not "
                    "newer than the stored fence)",
                    "fenced off",
                )
            if self._hold_hook is not None:
                self._hold_hook(sku)
            with self.timings.measure("database"):
                wrote = body(claim, lease)
        finally:
            # The fence already decided whether the write counted; a lease lost
            # meanwhile or a backend gone now changes nothing: the lease expires.
            try:
                with self.timings.measure("lock"):
                    lease.release()
            except _AFTER_WRITE as exc:
                self.note(exc, "lease release")
        return wrote

    def _take(self, order: Order, sku: str, qty: int) -> None:
        def take(claim: StockClaim, lease: Lease) -> bool:
            if claim.state == "returned":
                raise CheckoutRejected(f"order {order.order_id} was released", "released")
            if claim.state is not None:  # held or sold already: this is a retry
                return False
            if claim.left < qty:
                raise CheckoutRejected(
                    f"only {claim.left} of {sku} left, {qty} wanted", "out of stock"
                )
            outcome = self.catalog.take(sku, lease, order.order_id, qty, claim.price_cents)
            if outcome == "fenced":
                self._count("fence_rejections")
                raise CheckoutRejected(
                    f"stock write for {sku} fenced off (lease lost)", "fenced off"
                )
            if outcome == "voided":
                raise CheckoutRejected(f"order {order.order_id} was released", "released")
            if outcome == "out of stock":  # the claim said otherwise: never under the fence
                raise CheckoutRejected(f"{qty} of {sku} wanted, fewer left", "out of stock")
            return True

        self._under_fence(sku, order.order_id, take)

    def _give_back(self, order: Order, sku: str) -> None:
        def give(claim: StockClaim, lease: Lease) -> bool:
            if not claim.held:
                return False
            outcome = self.catalog.give_back(sku, lease, order.order_id)
            if outcome == "fenced":
                self._count("fence_rejections")
                raise CheckoutRejected(f"stock return for {sku} fenced off", "fenced off")
            if outcome == "not voided":
                raise CheckoutRejected(
                    f"order {order.order_id}'s payment was not voided: its stock stays held",
                    "not voided",
                )
            return True

        self._under_fence(sku, order.order_id, give)

    # -- recovery ----------------------------------------------------------------------
    def recover(self, older_than: float = 0.0) -> Recovery:
        """Settle orders left ``reserved`` for more than *older_than* seconds.

        A charged order is completed (marked paid); any other has its payment
        intent voided and its held stock given back under the SKU locks, then
        is released. An order counts as released only when its row, on the
        shard its user is routed to, says so; any other is counted in
        `Recovery.left_reserved`. Idempotent, and safe while checkouts run:
        a checkout still working on a swept order finds its payment voided and gives up.
        With *older_than* = 0 run it only when no checkout is in flight, or
        it gives up live checkouts.
        """
        done = Recovery()
        for order in self.storage.reserved_orders(self.clock() - older_than):
            try:
                held = self.catalog.held(order.order_id)
                settled = self._give_up(order)
                still = self.catalog.held(order.order_id)
                status = None if settled is not None else self._status(order)
            except _RETRY_LATER as exc:  # a lock backend, a shard or the catalog itself
                self.note(exc, "recovery")
                done.left_reserved += 1
                continue
            if settled is not None:
                done.completed += 1
            elif still or status != "released":
                # Stock still held, or no row was released where the user is
                # routed (the row lies elsewhere: a shard move left half done).
                done.left_reserved += 1
            else:
                done.released += 1
                done.units_returned += sum(qty for qty, _ in held.values())
        return done
