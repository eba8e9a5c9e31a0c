"""A holder process of the SIGSTOP lost-update test (run as a script).

Decrements the fenced key ``stock`` *n* times under a RedisLock; with
probability 3% it freezes itself with SIGSTOP between the read and the
write (the parent resumes it after 1.5 ttl). Prints ``accepted=N refused=M``.
With a PostgreSQL DSN as the seventh argument the key lives in an
``SQLFencedStore`` table named *namespace* on that server instead of Redis.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys


def main() -> None:
    url, name, namespace, ttl, count, seed = sys.argv[1:7]
    dsn = sys.argv[7] if len(sys.argv) > 7 else None
    import redis

    from scalekit.exceptions import LockLostError, StaleTokenError
    from scalekit.locking.fencing import RedisFencedStore, SQLFencedStore
    from scalekit.locking.redis_lock import RedisLock

    client = redis.Redis.from_url(url)
    lock = RedisLock(client, name, ttl=float(ttl))
    store: RedisFencedStore | SQLFencedStore
    if dsn is None:
        store = RedisFencedStore(client, namespace=namespace)
    else:
        import psycopg

        store = SQLFencedStore(psycopg.connect(dsn), dialect="postgresql", table=namespace)
    rng = random.Random(int(seed))
    accepted = refused = 0
    for _ in range(int(count)):
        lease = lock.acquire(timeout=30)
        assert lease is not None
        try:
            value = int(store.read("stock", lease) or 0)
            if rng.random() < 0.03:
                os.kill(os.getpid(), signal.SIGSTOP)
            store.write("stock", value - 1, lease)
            accepted += 1
        except StaleTokenError:
            refused += 1
        with contextlib.suppress(LockLostError):
            lease.release()
    print(f"accepted={accepted} refused={refused}", flush=True)


if __name__ == "__main__":
    main()
