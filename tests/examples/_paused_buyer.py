"""A buyer process that the test freezes (SIGSTOP) while it holds a SKU's lock.

Usage: python -m tests.examples._paused_buyer DIR REDIS_URL MARKER SHARDS

It puts one unit of ``hot-0`` in a cart and checks out through a RedisLock
with a 1 s ttl. Right after claiming the stock row under the lock it writes
MARKER and dawdles, so the test can SIGSTOP it there, let the lease
expire, sell the unit elsewhere and SIGCONT it. It prints ``fenced`` if
its stale stock write was rejected, ``ordered`` if it sold the unit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from examples.shop.service import CheckoutRejected
from examples.shop.simulation import Settings, build_shop
from examples.shop.storage import ShopStorage


def main() -> int:
    directory, redis_url, marker, shards = sys.argv[1:5]
    settings = Settings(shards=int(shards), failing_gateway_rate=0.0, lock_ttl=1.0, redis=redis_url)
    namespace = ShopStorage(Path(directory), int(shards)).catalog.shop_id
    backends = settings.backends(namespace)

    def hold(sku: str) -> None:
        Path(marker).write_text(sku)
        time.sleep(0.5)  # frozen here by the test

    shop = build_shop(Path(directory), settings, backends, worker=99, hold_hook=hold)
    user = shop.register("paused@example.com")
    shop.add_to_cart(user, "hot-0", 1)
    try:
        order = shop.checkout(user, "paused-checkout")
    except CheckoutRejected as exc:
        print("fenced" if exc.reason == "fenced off" else f"rejected: {exc}")
    else:
        print("ordered" if order.status == "paid" else f"order {order.status}")
    backends.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
