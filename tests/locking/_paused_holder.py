"""The holder process of the SIGSTOP test (run as a script, driven over stdin/stdout).

Each round: wait for ``go``; acquire with auto-renewal; begin a fenced
section and read; print ``in <token>``; wait for ``resume`` (the parent
SIGSTOPs this process in between, past the ttl, then SIGCONTs it); try to
commit; print ``done <accepted> <lost> <release outcome> <on_lost fired>``.
"""

from __future__ import annotations

import sys
import threading
import time


def main() -> None:
    backend, lock_target, store_url, name, ttl = sys.argv[1:6]
    sys.path.insert(0, sys.argv[6])
    from fencing import FencedStore

    from scalekit.exceptions import BackendUnavailableError, LockLostError

    store = FencedStore(store_url, prefix=name)
    fired = threading.Event()
    if backend == "redis":
        import redis

        from scalekit.locking import RedisLock

        lock = RedisLock(
            redis.Redis.from_url(lock_target),
            name,
            ttl=float(ttl),
            auto_renew=True,
            on_lost=lambda _lease: fired.set(),
        )
    else:
        from kazoo.client import KazooClient

        from scalekit.locking import ZooKeeperLock

        client = KazooClient(hosts=lock_target, timeout=float(ttl))
        client.start(timeout=15)
        lock = ZooKeeperLock(client, "/" + name, on_lost=lambda _lease: fired.set())
    for line in sys.stdin:
        if line.strip() != "go":
            break
        fired.clear()
        for _attempt in range(300):
            try:
                lease = lock.acquire(timeout=30)
                break
            except BackendUnavailableError:  # a new session is on its way after expiry
                time.sleep(0.05)
        assert lease is not None
        start = store.begin(lease.token)
        assert start is not None
        value = store.read()
        print(f"in {lease.token}", flush=True)
        if sys.stdin.readline().strip() != "resume":
            break
        accepted = store.commit(lease.token, start, value + 1)
        told = lease.lost.wait(5)
        try:
            lease.release()
            outcome = "released"
        except LockLostError:
            outcome = "LockLostError"
        print(f"done {int(accepted)} {int(told)} {outcome} {int(fired.wait(5))}", flush=True)


if __name__ == "__main__":
    main()
