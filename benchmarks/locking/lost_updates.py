"""Lost updates under paused RedisLock holders: unfenced, fenced on write only, fenced store.

``python -m benchmarks.locking lost-updates [--threads 8] [--decrements 150]``:
threads decrement one counter under one RedisLock (ttl 80 ms); 3 % of the
holders pause 1.5x the ttl between their read and their write, as a GC
pause would. Three ways of storing the counter are measured under the same
seeded pauses: plain GET/SET, a token checked on the write only, and
`RedisFencedStore` (claim on read, check on write). A lost update is an
accepted decrement that the counter does not show.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import threading
import time
from typing import Any

from scalekit.exceptions import LockLostError, StaleTokenError
from scalekit.testing import RedisServer

from .._common import format_table

TTL = 0.08
PAUSE = 1.5 * TTL

# The write-only check: refuse a token below the highest one written so far.
_CHECKED_WRITE = """
local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < newest then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def _run(
    client: Any, name: str, mode: str, threads: int, decrements: int, seed: int
) -> dict[str, Any]:
    from scalekit.locking.fencing import RedisFencedStore
    from scalekit.locking.redis_lock import RedisLock

    key, fence = f"{name}:value", f"{name}:fence"
    total = threads * decrements
    client.set(key, total)
    store = RedisFencedStore(client, namespace=f"{name}:store:")
    store.write("stock", total, 1)
    checked_write = client.register_script(_CHECKED_WRITE)
    counts = [{"accepted": 0, "refused": 0} for _ in range(threads)]

    def step(lease: Any, pause: bool) -> bool:
        if mode == "store":
            try:
                value = int(store.read("stock", lease) or 0)
                if pause:
                    time.sleep(PAUSE)
                store.write("stock", value - 1, lease)
                return True
            except StaleTokenError:
                return False
        value = int(client.get(key))
        if pause:
            time.sleep(PAUSE)
        if mode == "unfenced":
            client.set(key, value - 1)
            return True
        return int(checked_write(keys=[key, fence], args=[lease.token, value - 1])) == 1

    def work(i: int) -> None:
        lock = RedisLock(client, f"{name}:lock", ttl=TTL)
        rng = random.Random(seed * 100 + i)
        for _ in range(decrements):
            lease = lock.acquire(timeout=30)
            assert lease is not None
            try:
                ok = step(lease, rng.random() < 0.03)
                counts[i]["accepted" if ok else "refused"] += 1
            finally:
                with contextlib.suppress(LockLostError):
                    lease.release()

    began = time.monotonic()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    final = int(store.get("stock") or 0) if mode == "store" else int(client.get(key))
    accepted = sum(c["accepted"] for c in counts)
    return {
        "accepted": accepted,
        "refused": sum(c["refused"] for c in counts),
        "lost": accepted - (total - final),
        "seconds": time.monotonic() - began,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.locking lost-updates",
        description="Lost updates under paused RedisLock holders: an unfenced counter, a "
        "token checked on the write only, and RedisFencedStore, under the same seeded "
        "pauses, on a redis-server started on loopback.",
    )
    parser.add_argument(
        "--threads", type=int, default=8, help="threads decrementing (default %(default)s)"
    )
    parser.add_argument(
        "--decrements",
        type=int,
        default=150,
        help="decrements per run, each under the lock (default %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per way of storing (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the pauses (default %(default)s)"
    )
    args = parser.parse_args(argv)
    import redis

    rows = []
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        for mode in ("unfenced", "write-only", "store"):
            results = [
                _run(client, f"lu:{mode}:{r}", mode, args.threads, args.decrements, args.seed + r)
                for r in range(args.runs)
            ]
            lost = sorted(r["lost"] for r in results)
            rows.append(
                (
                    mode,
                    args.threads * args.decrements,
                    " ".join(str(n) for n in lost),
                    lost[len(lost) // 2],
                    sum(r["refused"] for r in results) // args.runs,
                )
            )
        client.close()
    print(
        f"{args.threads} threads x {args.decrements} decrements under one RedisLock (ttl {TTL}s), "
        f"3% of holders pause {PAUSE}s between read and write; {args.runs} runs\n"
        + format_table(["store", "updates", "lost per run", "median lost", "refused"], rows)
    )
    return 0
