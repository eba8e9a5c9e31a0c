"""The shop's order flow: register, browse, cart, checkout, pay, history.

Every step that the naive version gets wrong is built from a scalekit
primitive:

* product detail is read through a scalekit cache and invalidated when the
  product's stock changes;
* stock is reserved under a per-SKU scalekit lock, and the stock UPDATE
  carries the lease's fencing token, so a holder whose lease was lost (a
  long GC pause, a SIGSTOP) cannot write over a newer holder;
* checkout is idempotent by key, and payment is charged once per order
  through whichever gateway the balancer picks.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

from scalekit import LockError

from .gateways import GatewayError, PaymentService
from .storage import Order, ShopStorage


class ProductCache(Protocol):
    """What the shop needs of a cache: scalekit's ``NearCache`` and ``RedisCache`` fit."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any, ttl: float | None = None) -> None: ...

    def invalidate(self, key: str) -> None: ...


class LocalCache:
    """A scalekit local cache (e.g. ``TinyLFUCache``) behind a lock, as a ProductCache.

    scalekit's local caches, like cachetools', leave locking to the caller.
    """

    def __init__(self, cache: MutableMapping[str, Any]) -> None:
        self.cache = cache
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return self.cache.get(key, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        with self._lock:
            self.cache[key] = value

    def invalidate(self, key: str) -> None:
        with self._lock:
            self.cache.pop(key, None)


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
    (a lock holder's lease was lost and the storage refused its write) and
    ``payment failed``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Shop:
    """The order flow over *storage*, a product cache, a lock factory and payments.

    :param lock_for: returns the lock object for a lock name, e.g.
        ``lambda name: MemoryLock(name, ttl=5)``; the shop keeps one per SKU.
    :param lock_timeout: seconds a checkout waits for a SKU's lock.
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
        self.cache = cache
        self.cache_hits = 0
        self.cache_misses = 0
        self.payments = payments
        self.lock_timeout = lock_timeout
        self.clock = clock
        self._lock_for = lock_for
        self._locks: dict[str, Any] = {}
        # Called while a stock lock is held; tests use it to pause a holder.
        self._hold_hook = hold_hook
        self.fence_rejections = 0
        self.timings = Timings()

    # -- registration and catalog ------------------------------------------------
    def register(self, email: str) -> str:
        user_id = uuid.uuid4().hex
        with self.timings.measure("database"):
            self.storage.add_user(user_id, email, self.clock())
        return user_id

    def view_product(self, sku: str) -> dict[str, Any]:
        """Product detail through the cache; KeyError for an unknown SKU."""
        with self.timings.measure("cache"):
            cached = self.cache.get(sku)
        if cached is not None:
            self.cache_hits += 1  # a lost increment under threads only blurs the report
            return dict(cached)
        self.cache_misses += 1
        with self.timings.measure("database"):
            product = self.storage.product(sku)
        if product is None:
            raise KeyError(sku)
        with self.timings.measure("cache"):
            self.cache.set(sku, product)
        return dict(product)

    def catalog(self) -> list[dict[str, Any]]:
        return [self.view_product(sku) for sku in self.storage.skus()]

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
        """Reserve the cart's stock, create the order and pay for it.

        The same *idempotency_key* returns the order the first call created.
        :raises CheckoutRejected: empty cart, not enough stock, or a lock
            not acquired in time; nothing is reserved then.
        """
        with self.timings.measure("database"):
            existing = self.storage.find_checkout(user_id, idempotency_key)
            items = self.cart(user_id)
        if existing is not None:
            return existing
        if not items:
            raise CheckoutRejected("the cart is empty", "empty cart")
        prices = {sku: self.view_product(sku)["price_cents"] for sku in items}
        reserved: dict[str, int] = {}
        try:
            for sku in sorted(items):
                self._reserve(sku, items[sku])
                reserved[sku] = items[sku]
        except BaseException:
            for sku, qty in reserved.items():
                self._reserve(sku, -qty)
            raise
        order = Order(
            uuid.uuid4().hex,
            user_id,
            datetime.fromtimestamp(self.clock(), timezone.utc),
            "reserved",
            sum(prices[s] * q for s, q in items.items()),
            items,
            None,
        )
        with self.timings.measure("database"):
            created = self.storage.create_order(order, idempotency_key)
        if created.order_id != order.order_id:  # a concurrent retry of this checkout won
            for sku, qty in reserved.items():
                self._reserve(sku, -qty)
            return created
        return self.pay(created)

    def pay(self, order: Order) -> Order:
        """Charge *order* once; on failure release its stock and mark it ``released``."""
        try:
            with self.timings.measure("payment"):
                gateway = self.payments.charge(f"order:{order.order_id}", order.total_cents)
        except GatewayError:
            for sku, qty in order.items.items():
                self._reserve(sku, -qty)
            self.storage.set_order_status(order, "released", None)
            raise CheckoutRejected(
                f"payment failed for order {order.order_id}", "payment failed"
            ) from None
        with self.timings.measure("database"):
            self.storage.set_order_status(order, "paid", gateway)
        return Order(
            order.order_id,
            order.user_id,
            order.created_at,
            "paid",
            order.total_cents,
            order.items,
            gateway,
        )

    def history(self, user_id: str, start: datetime, end: datetime) -> list[Order]:
        return self.storage.orders(user_id, start, end)

    def _lock(self, sku: str) -> Any:
        lock = self._locks.get(sku)
        if lock is None:
            lock = self._locks.setdefault(sku, self._lock_for(f"shop:stock:{sku}"))
        return lock

    def _reserve(self, sku: str, qty: int) -> None:
        """Take *qty* of *sku* (negative gives it back) under the SKU's lock and fence."""
        lock = self._lock(sku)
        try:
            with self.timings.measure("lock"):
                lease = lock.acquire(timeout=self.lock_timeout)
        except LockError as exc:
            raise CheckoutRejected(f"stock of {sku} is busy: {exc}", "lock timeout") from None
        try:
            with self.timings.measure("database"):
                left = self.storage.claim_stock(sku, lease.token)
            if left is None:
                self.fence_rejections += 1
                raise CheckoutRejected(
                    f"stock of {sku} fenced off before reading (lease lost)", "fenced off"
                )
            if left < qty:
                raise CheckoutRejected(f"only {left} of {sku} left, {qty} wanted", "out of stock")
            if self._hold_hook is not None:
                self._hold_hook(sku)
            with self.timings.measure("database"):
                written = self.storage.write_stock(sku, left - qty, lease.token)
            if not written:
                self.fence_rejections += 1
                raise CheckoutRejected(
                    f"stock write for {sku} fenced off (lease lost)", "fenced off"
                )
        finally:
            # A lease lost meanwhile raises LockError here; the fence already
            # decided whether the write counted.
            with self.timings.measure("lock"), contextlib.suppress(LockError):
                lease.release()
        with self.timings.measure("cache"):
            self.cache.invalidate(sku)
