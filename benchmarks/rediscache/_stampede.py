"""The stampede contenders, in an importable module so spawned processes can run them."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from scalekit.caching.redis_cache import RedisCache

RECORD = {
    "id": 42,
    "name": "Wasserkocher 1.7 l",
    "price_cents": 2999,
    "stock": 17,
    "tags": ["kitchen", "electric", "steel"],
    "rating": 4.6,
}


def naive_get_or_load(client: redis.Redis, key: str, loader: Any) -> Any:
    """The article's cache-aside: GET, on a miss load and SET (no lease, no version)."""
    import json

    data = client.get(key)
    if data is not None:
        return json.loads(data)
    value = loader()
    client.set(key, json.dumps(value), ex=300)
    return value


def worker(
    url: str,
    contender: str,
    namespace: str,
    threads: int,
    db_delay: float,
    ready: Any,
    go: Any,
    done: Any,
) -> None:
    """*threads* threads miss the same key at once; every DB call is counted in Redis."""
    client = redis.Redis.from_url(url, socket_timeout=30, max_connections=threads + 8)
    cache = RedisCache(client, namespace=namespace, ttl=300, lease_ttl=30)
    counter = f"{namespace}-db-calls"

    def db_load() -> dict[str, Any]:
        client.incr(counter)
        time.sleep(db_delay)  # the database query
        return RECORD

    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        go.wait()
        try:
            if contender == "scalekit":
                value = cache.get_or_load("hot", db_load)
            else:
                value = naive_get_or_load(client, f"{namespace}:naive", db_load)
            assert value == RECORD
        except BaseException as exc:  # reported to the parent
            errors.append(exc)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    ready.put(True)
    for t in pool:
        t.join()
    done.put(repr(errors[0]) if errors else "")
    client.close()
