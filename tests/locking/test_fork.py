"""Fork safety: a forked child never inherits a lease, and its lost-lease notices arrive.

Each test forks once and reads the child's verdict through a pipe (under a
second each).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.exceptions import LockNotOwnedError, LockTimeoutError
from scalekit.locking import Lease, MemoryLock
from scalekit.testing import RedisServer

from .conftest import unique


def _in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *body* in a forked child and return what it reported."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, use of fork()"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            out = body()
        except BaseException as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


@pytest.mark.redis
def test_a_forked_child_does_not_inherit_a_reentrant_lease(redis_server: RedisServer) -> None:
    redis = pytest.importorskip("redis")
    from scalekit.locking import RedisLock

    client = redis.Redis.from_url(redis_server.url)
    name = unique("fork")
    lock = RedisLock(client, name, ttl=30, reentrant=True)
    lease = lock.acquire()
    assert lease is not None

    def child() -> dict[str, Any]:
        out: dict[str, Any] = {"parent_lease_lost": lease.lost.is_set()}
        try:
            lease.release()
            out["release"] = "released"
        except LockNotOwnedError:
            out["release"] = "refused"
        started = time.monotonic()
        try:
            lock.acquire(timeout=0.3)
            out["acquire"] = "acquired"
        except LockTimeoutError:
            out["acquire"] = "timed out"
        out["took"] = time.monotonic() - started
        return out

    seen = _in_child(child)
    assert seen == {
        "parent_lease_lost": True,
        "release": "refused",
        "acquire": "timed out",
        "took": pytest.approx(0.3, abs=0.1),
    }
    # The parent still holds it, on the server too.
    assert client.get(f"scalekit:lock:{{{name}}}") == lease.owner.encode()
    assert not lease.lost.is_set()
    lease.release()


def test_a_forked_child_gets_its_lost_lease_notices() -> None:
    """The parent had a notice delivered (watchdog and notifier threads exist), then forks."""
    got: list[Lease] = []
    parent = MemoryLock(unique("fork-parent"), ttl=0.05, on_lost=got.append)
    parent.acquire()
    deadline = time.monotonic() + 2
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got

    def child() -> dict[str, Any]:
        seen: list[float] = []
        lock = MemoryLock(unique("fork-child"), ttl=0.2, on_lost=lambda _: seen.append(1.0))
        started = time.monotonic()
        lock.acquire()
        while not seen and time.monotonic() < started + 1.0:
            time.sleep(0.005)
        return {"notice_after": time.monotonic() - started if seen else None}

    seen = _in_child(child)
    # The documented notice bound: the ttl, plus the documented slack.
    assert seen["notice_after"] is not None and seen["notice_after"] <= 0.2 + 0.1, seen


@pytest.mark.redis
def test_a_forked_child_cannot_write_to_a_fenced_store_with_its_parents_lease(
    redis_server: RedisServer, tmp_path: Any
) -> None:
    """Two writers with one token would be indistinguishable to the store."""
    redis = pytest.importorskip("redis")
    import sqlite3

    from scalekit.locking import RedisLock
    from scalekit.locking.fencing import RedisFencedStore, SQLFencedStore

    client = redis.Redis.from_url(redis_server.url)
    store = RedisFencedStore(client, namespace=unique("ns") + ":")
    lock = RedisLock(client, unique("fork"), ttl=30)
    lease = lock.acquire()
    assert lease is not None
    path = tmp_path / "fenced.db"
    SQLFencedStore(sqlite3.connect(path), dialect="sqlite").create_table()

    def child() -> dict[str, Any]:
        out: dict[str, Any] = {}
        sql = SQLFencedStore(sqlite3.connect(path), dialect="sqlite")
        for kind, target in (("redis", store), ("sql", sql)):
            for op, call in (
                ("read", lambda t=target: t.read("k", lease)),
                ("write", lambda t=target: t.write("k", 1, lease)),
                ("incr", lambda t=target: t.incr("k", 1, lease)),
            ):
                try:
                    call()
                    out[f"{kind} {op}"] = "accepted"
                except LockNotOwnedError:
                    out[f"{kind} {op}"] = "refused"
        return out

    seen = _in_child(child)
    assert set(seen.values()) == {"refused"}, seen
    assert store.get("k") is None
    store.write("k", 7, lease)  # the parent's own writes go on
    assert store.get("k") == b"7"
    lease.release()
