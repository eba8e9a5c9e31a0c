"""A waiter in BLPOP when its master is demoted to a replica: found by the seeded soak.

`REPLICAOF` makes Redis unblock every client waiting in a blocking
command with the error reply `UNBLOCKED force unblock from blocking
operation, instance state changed (master -> replica?)`. It is the same
event as the `READONLY` replies that follow, an outage of that server
until an operator acts, which docs/locking.md promises as
`BackendUnavailableError` (or the caller's `LockTimeoutError`). The
waiter's `acquire()` raised `BackendError` instead, an outcome it does not
document (`python -m benchmarks.locking soak --backend async-redis --seed 3
--chunk 5`: the worker died in BLPOP); `UNBLOCKED` is now one of the Redis
call layer's transient replies. About 1 s per case.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockTimeoutError
from scalekit.testing import RedisServer, find_free_port

redis = pytest.importorskip("redis")
from scalekit.locking import AsyncRedisLock, RedisLock  # noqa: E402

pytestmark = pytest.mark.redis

DOCUMENTED = (BackendUnavailableError, LockTimeoutError)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as own:
        yield own


def _demote_when_waiting(server: RedisServer, waiting: threading.Event) -> None:
    """Once the waiter is blocked in BLPOP, make the server a replica of a dead port."""
    deadline = time.monotonic() + 5
    while b"blocked_clients:1" not in server.execute("INFO", "clients"):
        assert time.monotonic() < deadline, "the waiter never blocked in BLPOP"
        time.sleep(0.01)
    waiting.set()
    server.execute("REPLICAOF", server.host, str(find_free_port()))


def test_a_sync_waiter_unblocked_by_replicaof_gets_a_documented_error(
    server: RedisServer,
) -> None:
    client = redis.Redis.from_url(server.url, socket_timeout=5)
    name = "unblocked-sync"
    holder = RedisLock(client, name, ttl=10).acquire(timeout=1)
    assert holder is not None
    waiting = threading.Event()
    demoter = threading.Thread(target=_demote_when_waiting, args=(server, waiting))
    demoter.start()
    outcome: Any = None
    try:
        RedisLock(client, name, ttl=10, op_timeout=0.5).acquire(timeout=3)
    except Exception as exc:
        outcome = exc
    finally:
        demoter.join()
        server.execute("REPLICAOF", "NO", "ONE")
        client.close()
    assert waiting.is_set()
    assert isinstance(outcome, DOCUMENTED), repr(outcome)


def test_an_async_waiter_unblocked_by_replicaof_gets_a_documented_error(
    server: RedisServer,
) -> None:
    async def scenario() -> Any:
        client = redis.asyncio.Redis.from_url(server.url, socket_timeout=5)
        name = "unblocked-async"
        holder = await AsyncRedisLock(client, name, ttl=10).acquire(timeout=1)
        assert holder is not None
        waiting = threading.Event()
        demoter = threading.Thread(target=_demote_when_waiting, args=(server, waiting))
        demoter.start()
        try:
            await AsyncRedisLock(client, name, ttl=10, op_timeout=0.5).acquire(timeout=3)
        except Exception as exc:
            return exc
        finally:
            await asyncio.to_thread(demoter.join)
            server.execute("REPLICAOF", "NO", "ONE")
            await client.aclose()
        return None

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, DOCUMENTED), repr(outcome)
