"""A holder process that samples ``lease.lost.is_set()`` every millisecond (run as a script).

Acquires the lock, prints ``in <token>``, then appends ``<monotonic> <0|1>``
lines to the sample file until it sees the lease lost for 0.5 s, trying
``release()`` once it sees the loss (or after 5 s) and printing the outcome and
whether ``on_lost`` fired.
"""

from __future__ import annotations

import os
import sys
import threading
import time


def main() -> None:
    backend, target, name, lease_time, samples = sys.argv[1:6]
    from scalekit.exceptions import BackendUnavailableError, LockLostError

    told = threading.Event()
    if backend == "redis":
        import redis

        from scalekit.locking.redis_lock import RedisLock

        lock = RedisLock(
            redis.Redis.from_url(target), name, ttl=float(lease_time), on_lost=lambda _l: told.set()
        )
    else:
        from kazoo.client import KazooClient

        from scalekit.locking.zookeeper_lock import ZooKeeperLock

        client = KazooClient(hosts=target, timeout=float(lease_time))
        client.start(timeout=30)
        lock = ZooKeeperLock(client, "/" + name, on_lost=lambda _l: told.set())
    lease = lock.acquire(timeout=30)
    assert lease is not None
    fd = os.open(samples, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print(f"in {lease.token}", flush=True)
    lost_since = None
    started = time.monotonic()
    while True:
        at = time.monotonic()
        lost = lease.lost.is_set()
        os.write(fd, f"{at} {int(lost)}\n".encode())
        if lost and lost_since is None:
            lost_since = at
        if (lost_since is not None and at - lost_since > 0.5) or at - started > 30:
            break
        time.sleep(0.001)
    try:
        lease.release()
        outcome = "released"
    except LockLostError:
        outcome = "LockLostError"
    except BackendUnavailableError:
        outcome = "BackendUnavailableError"
    print(f"done {outcome} {int(told.wait(5))}", flush=True)


if __name__ == "__main__":
    main()
