"""The shop's `/metrics`: scalekit's own metrics plus the shop's, for Prometheus.

`python -m examples.shop --metrics-port 9100` serves them while the load
runs (and `--metrics-linger S` seconds after the report). What is there:

* from scalekit, through a `scalekit.observability.Telemetry` hub and its
  `PrometheusCollector`: the product cache's hits, misses, evictions and
  size (`cache="products"`, the process-local TinyLFU layer; with
  `--redis`, also its NearCache's local hits, remote reads, staleness and
  degraded state and its RedisCache's remote reads and fallback calls,
  under the same name), the payment balancer's picks, latencies,
  in-flight requests and ejections (`balancer="payments"`), the stock
  locks' waits, acquisitions, timeouts, hand-overs, release errors and
  lost leases (`lock="shop:stock"`: every SKU's lock in one series) and
  the user router's routes per shard (`router="users"`; while a shard is
  added, the placement the migration moves users to) and, with
  `--add-shard-at`, the migration's keys moved and progress
  (`migration="users"`), all reported by the primitives themselves;
* the shop's own: checkout latency by outcome
  (`shop_checkout_duration_seconds`) and paid orders per user shard
  (`shop_orders_total{shard=...}`: the shard that stores the user when the
  order is paid; a user moved later takes earlier orders along, which
  the counter does not re-label).

`examples/shop/grafana-dashboard.json` draws them.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from scalekit.observability import (
    PrometheusCollector,
    Telemetry,
    watch_balancer,
    watch_cache,
    watch_locks,
    watch_migration,
    watch_router,
)

from .service import LOCK_LABEL

__all__ = ["ShopMetrics"]


class ShopMetrics:
    """A registry with scalekit's collector and the shop's metrics, and its HTTP server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.telemetry = Telemetry()
        self.collector = PrometheusCollector(self.telemetry).register(self.registry)
        self.checkout = Histogram(
            "shop_checkout_duration_seconds",
            "Checkout latency, by outcome (paid or the rejection reason).",
            ["outcome"],
            registry=self.registry,
        )
        self.orders = Counter(
            "shop_orders",
            "Paid orders, by the shard that stores them.",
            ["shard"],
            registry=self.registry,
        )
        self._watched: list[Any] = []
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def watch(self, shop: Any, local_cache: Any, backends: Any = None) -> None:
        """Report *shop*'s payment balancer, stock locks, user router and product cache.

        With Redis *backends*, the product cache is the near cache over a
        `RedisCache`: both report as `cache="products"` too (local hits,
        remote reads, staleness, degraded state, fallback calls), so that
        a Redis outage shows on the same dashboard as the local layer.
        """
        hub = self.telemetry
        watch_balancer(shop.payments.balancer, "payments", telemetry=hub)
        watch_cache(local_cache, "products", telemetry=hub)
        if backends is not None:
            self.watch_caches(backends)
        # One series for every SKU's lock, whatever namespace the backend adds.
        watch_locks(LOCK_LABEL, match=lambda name: LOCK_LABEL + ":" in name, telemetry=hub)
        watch_router(shop.storage.router, "users", telemetry=hub)
        migration = getattr(shop.storage, "migration", None)
        if migration is not None:
            # While a shard is added, every command is routed by the migration: count
            # the placement it moves users to, where their data (and orders) end up.
            watch_router(migration.new, "users", telemetry=hub)
        # The hub holds them weakly; keep them so a scrape after the run
        # (--metrics-linger) still sees their final values.
        self._watched.extend((shop, local_cache))

    def watch_caches(self, backends: Any) -> None:
        """Report the Redis tier of *backends*' product cache as `cache="products"`.

        Every process-wide copy (the run's own and each worker's) reports
        under the one name: counters add up, the degraded state and the
        staleness are the worst of them. Nothing for in-memory backends.
        """
        remote = getattr(backends, "remote_cache", None)
        if remote is None:
            return
        watch_cache(remote, "products", telemetry=self.telemetry)
        if backends.cache is not remote:  # the NearCache over it
            watch_cache(backends.cache, "products", telemetry=self.telemetry)
        self._watched.append(backends)

    def watch_migration(self, migration: Any) -> None:
        """Report the migration that adds a shard as `migration="users"` (keys moved, progress).

        Watch the mover's own migration: that is the one whose `move()` runs.
        """
        watch_migration(migration, "users", telemetry=self.telemetry)
        self._watched.append(migration)

    @staticmethod
    def shard_of(storage: Any, user: str) -> str:
        """The shard that stores *user*'s orders now, for `shop_orders_total{shard=...}`.

        While a shard is being added, that is the placement the migration
        creates and moves the user's data on, not the old router's.
        """
        migration = getattr(storage, "migration", None)
        if migration is not None:
            return str(migration.owner(user))
        return str(storage.router.route(user))

    def record_checkout(self, outcome: str, seconds: float, shard: str | None = None) -> None:
        """One checkout's latency by outcome; a paid one also counts on its *shard*."""
        self.checkout.labels(outcome).observe(seconds)
        if outcome == "paid" and shard is not None:
            self.orders.labels(shard).inc()

    def serve(self, port: int) -> None:
        """Serve `/metrics` on 127.0.0.1:*port* from a daemon thread."""
        self._server, self._thread = start_http_server(
            port, addr="127.0.0.1", registry=self.registry
        )

    def close(self) -> None:
        """Stop the server and detach from the hub."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None
        self.collector.close()
