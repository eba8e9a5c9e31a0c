"""A waiter process for the hand-over tests (run as a script, driven by signals).

Arguments: kind (``lock``, ``async``, ``semaphore`` or ``rw-write``), the
Redis URL, the lock's name, ttl, waiter_ttl and claim_window. It blocks in
``acquire(timeout=30)``; once acquired it asks the server whether it is the
owner and what PTTL the lock has, and prints one line::

    got <token> <lost> <is owner on the server> <local remaining s> <server pttl s>
"""

from __future__ import annotations

import asyncio
import sys
import time


def main() -> None:
    kind, url, name = sys.argv[1:4]
    ttl, waiter_ttl, claim_window = (float(x) for x in sys.argv[4:7])
    import redis

    options = dict(ttl=ttl, waiter_ttl=waiter_ttl, claim_window=claim_window)
    client = redis.Redis.from_url(url)
    if kind == "async":
        import redis.asyncio

        from scalekit.locking import AsyncRedisLock

        async def acquire() -> tuple[int, bool, float, str]:
            aclient = redis.asyncio.Redis.from_url(url)
            lease = await AsyncRedisLock(aclient, name, **options).acquire(timeout=30)
            assert lease is not None
            return lease.token, lease.lost.is_set(), lease.deadline or 0.0, lease.owner

        token, lost, deadline, owner = asyncio.run(acquire())
        key = f"scalekit:lock:{{{name}}}"
    else:
        from scalekit.locking import RedisLock, RedisReadWriteLock, RedisSemaphore

        if kind == "lock":
            lock = RedisLock(client, name, **options)
            key = f"scalekit:lock:{{{name}}}"
        elif kind == "semaphore":
            lock = RedisSemaphore(client, name, 1, **options)
            key = f"scalekit:semaphore:{{{name}}}"
        else:
            lock = RedisReadWriteLock(client, name, **options).write
            key = f"scalekit:rwlock:{{{name}}}"
        lease = lock.acquire(timeout=30)
        assert lease is not None
        token, lost, deadline, owner = (
            lease.token,
            lease.lost.is_set(),
            lease.deadline or 0.0,
            lease.owner,
        )
    if kind == "semaphore":
        score = client.zscore(key, owner)
        now_s, now_us = client.time()
        pttl = -1.0 if score is None else score / 1000 - (now_s + now_us / 1e6)
        is_owner = score is not None
    else:
        pttl = client.pttl(key) / 1000  # read before the local clock: see the test
        is_owner = client.get(key) == owner.encode()
    remaining = deadline - time.monotonic()
    print(f"got {token} {int(lost)} {int(is_owner)} {remaining:.4f} {pttl:.4f}", flush=True)


if __name__ == "__main__":
    main()
