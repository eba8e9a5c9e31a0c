"""RedisLock on a real redis-server: key layout, FIFO queue, wake-ups, bounded failures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from scalekit.exceptions import (
    BackendUnavailableError,
    ConfigurationError,
    LockLostError,
)
from scalekit.locking import Lease
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique

redis = pytest.importorskip("redis")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

pytestmark = pytest.mark.redis


def _poll(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_keys_hold_owner_ttl_and_fence_counter(redis_client: Any) -> None:
    lock = RedisLock(redis_client, "stock:42", ttl=7.5)
    lease = lock.acquire()
    assert lease is not None
    assert redis_client.get("scalekit:lock:{stock:42}") == lease.owner.encode()
    assert 7000 < redis_client.pttl("scalekit:lock:{stock:42}") <= 7500
    # A new counter starts from the server's clock in microseconds.
    now_s, now_us = redis_client.time()
    assert 0 <= now_s * 1_000_000 + now_us - lease.token < 5_000_000
    assert redis_client.get("scalekit:lock:{stock:42}:fence") == str(lease.token).encode()
    assert redis_client.ttl("scalekit:lock:{stock:42}:fence") == -1  # never expires
    lease.release()
    assert redis_client.exists("scalekit:lock:{stock:42}") == 0
    # A counter ahead of the clock counts on by one; one behind it (a stale
    # snapshot loaded) jumps to the clock, so tokens never go back.
    ahead = 4 * 10**15  # ahead of the clock, exact in Lua's doubles
    redis_client.set("scalekit:lock:{stock:42}:fence", ahead)
    again = lock.acquire()
    assert again is not None and again.token == ahead + 1
    again.release()
    redis_client.set("scalekit:lock:{stock:42}:fence", 41)
    stale = lock.acquire()
    now_s, now_us = redis_client.time()
    assert stale is not None and 0 <= now_s * 1_000_000 + now_us - stale.token < 5_000_000
    stale.release()


def test_release_checks_the_owner(redis_client: Any) -> None:
    lock = RedisLock(redis_client, unique(), ttl=5)
    lease = lock.acquire()
    assert lease is not None
    key = f"scalekit:lock:{{{lock.name}}}"
    redis_client.set(key, "someone-else")
    with pytest.raises(LockLostError, match="was lost before release"):
        lease.release()
    assert redis_client.get(key) == b"someone-else"
    assert lease.lost.is_set()


def test_waiters_are_served_in_arrival_order(redis_client: Any) -> None:
    name = unique()
    holder = RedisLock(redis_client, name, ttl=30).acquire()
    assert holder is not None
    order: list[int] = []
    threads = []
    queue_key = f"scalekit:lock:{{{name}}}:queue"
    for i in range(5):
        lock = RedisLock(redis_client, name, ttl=30)
        thread = threading.Thread(target=lambda i=i, lock=lock: _take(lock, order, i))
        thread.start()
        threads.append(thread)
        _poll(lambda n=i + 1: redis_client.llen(queue_key) == n)
    holder.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert redis_client.llen(queue_key) == 0


def _take(lock: RedisLock, order: list[int], i: int) -> None:
    with lock:
        order.append(i)


def test_a_dead_waiter_is_dropped_after_waiter_ttl(redis_client: Any) -> None:
    name = unique()
    queue_key = f"scalekit:lock:{{{name}}}:queue"
    waiters_key = f"scalekit:lock:{{{name}}}:waiters"
    # A waiter that crashed: queued, its heartbeat 1 ms in the past.
    now_ms = int(redis_client.time()[0]) * 1000
    redis_client.rpush(queue_key, "crashed")
    redis_client.zadd(waiters_key, {"crashed": now_ms - 1})
    lease = RedisLock(redis_client, name).acquire(blocking=False)
    assert lease is not None
    assert redis_client.llen(queue_key) == 0
    assert redis_client.zcard(waiters_key) == 0
    lease.release()
    # A live waiter ahead of us keeps its place: the free lock is offered to
    # it for the claim window, with a nudge (not a token) on its wake list.
    redis_client.rpush(queue_key, "alive")
    redis_client.zadd(waiters_key, {"alive": now_ms + 60_000})
    redis_client.hset(f"scalekit:lock:{{{name}}}:ttls", "alive", 5000)
    assert RedisLock(redis_client, name, claim_window=0.4).acquire(blocking=False) is None
    assert redis_client.get(f"scalekit:lock:{{{name}}}") == b"alive"
    assert 0 < redis_client.pttl(f"scalekit:lock:{{{name}}}") <= 400
    assert redis_client.lrange(f"scalekit:lock:{{{name}}}:wake:alive", 0, -1) == [b"1"]
    assert int(redis_client.get(f"scalekit:lock:{{{name}}}:fence")) == lease.token  # no token


def test_expiry_without_release_wakes_the_waiter_within_its_ttl(redis_client: Any) -> None:
    name = unique()
    stale = RedisLock(redis_client, name, ttl=0.4).acquire()
    assert stale is not None
    started = time.monotonic()
    fresh = RedisLock(redis_client, name, ttl=5, waiter_ttl=30).acquire(timeout=5)
    waited = time.monotonic() - started
    assert fresh is not None and fresh.token > stale.token
    # Its ttl, plus Redis's timer granularity (1/hz) for the BLPOP timeout.
    assert waited <= 0.4 + 0.1 + BOUND_MARGIN
    fresh.release()


def test_scripts_are_reloaded_after_script_flush(redis_client: Any) -> None:
    lock = RedisLock(redis_client, unique())
    with lock as first:
        pass
    redis_client.script_flush()
    with lock as lease:
        assert lease.token > first.token


def test_eight_workers_share_one_lock_fairly(redis_client: Any) -> None:
    name = unique()
    counts: Counter[int] = Counter()
    tokens: list[int] = []
    stop = time.monotonic() + 1.5

    def work(i: int) -> None:
        lock = RedisLock(redis_client, name, ttl=5)
        while time.monotonic() < stop:
            with lock as lease:
                tokens.append(lease.token)
                counts[i] += 1
                time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(counts) == 8
    assert max(counts.values()) / min(counts.values()) <= 1.5
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


def test_stopped_server_is_backend_unavailable_at_once() -> None:
    server = RedisServer()
    server.start()
    client = redis.Redis.from_url(server.url)  # default retries: 3, exponential back-off
    lock = RedisLock(client, unique(), op_timeout=0.5)
    server.close()
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        lock.acquire(blocking=False)  # tried once; a blocking acquire retries until its deadline
    assert time.monotonic() - started <= 0.5 + BOUND_MARGIN
    assert isinstance(info.value, ConnectionError)


def test_blackholed_server_is_backend_unavailable_within_op_timeout(
    redis_server: RedisServer,
) -> None:
    with TCPProxy(*redis_server.address) as proxy:
        client = redis.Redis(host=proxy.host, port=proxy.port)  # no socket timeout at all
        lock = RedisLock(client, unique(), op_timeout=0.5)
        with lock as first:
            pass
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            lock.acquire(blocking=False)
        assert time.monotonic() - started <= 0.5 + BOUND_MARGIN
        proxy.pass_through()
        with lock as lease:
            assert lease.token > first.token  # a request held in the partition may use one


def test_bad_options_are_configuration_errors(redis_client: Any) -> None:
    with pytest.raises(ConfigurationError, match="op_timeout must be a positive"):
        RedisLock(redis_client, "x", op_timeout=0)
    with pytest.raises(ConfigurationError, match="waiter_ttl must be a positive"):
        RedisLock(redis_client, "x", waiter_ttl=-1)


class RedisLockMachine(RuleBasedStateMachine):
    """Three clients on one name against a model of owner and last token."""

    client: Any = None

    def __init__(self) -> None:
        super().__init__()
        name = unique("machine")
        self.locks = [RedisLock(self.client, name, ttl=60) for _ in range(3)]
        self.leases: list[Lease | None] = [None, None, None]
        self.owner: int | None = None
        self.last_token = 0

    @rule(i=st.integers(0, 2))
    def acquire(self, i: int) -> None:
        lease = self.locks[i].acquire(blocking=False)
        if self.owner is not None:
            assert lease is None
            return
        assert lease is not None and (
            lease.token > self.last_token if self.last_token else lease.token > 0
        )
        self.last_token, self.owner, self.leases[i] = lease.token, i, lease

    @rule(i=st.integers(0, 2))
    def release(self, i: int) -> None:
        lease = self.leases[i]
        if lease is None:
            with pytest.raises(Exception, match="not held by the caller"):
                self.locks[i].release()
            return
        lease.release()
        self.leases[i], self.owner = None, None

    @invariant()
    def locked_matches(self) -> None:
        assert self.locks[0].locked() == (self.owner is not None)


def test_redis_lock_state_machine(redis_client: Any) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    RedisLockMachine.client = redis_client
    run_state_machine_as_test(
        RedisLockMachine, settings=settings(max_examples=25, stateful_step_count=20, deadline=None)
    )


def test_works_on_a_redis_cluster(redis_cluster: Any) -> None:
    from redis.cluster import RedisCluster

    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    try:
        name = unique("cluster")
        holder = RedisLock(client, name, ttl=5).acquire()
        assert holder is not None
        got: list[Lease] = []
        waiter = threading.Thread(
            target=lambda: got.append(RedisLock(client, name, ttl=5).acquire(timeout=5))
        )
        waiter.start()
        _poll(lambda: client.llen(f"scalekit:lock:{{{name}}}:queue") == 1)
        holder.release()
        waiter.join(5)
        assert got and got[0].token > holder.token
        got[0].release()
    finally:
        client.close()


def test_a_grant_whose_reply_was_lost_is_given_back(redis_client: Any) -> None:
    """The acquire script ran but its reply was lost: the attempt's clean-up frees the lock."""
    name = unique()
    lock = RedisLock(redis_client, name, ttl=30)
    real_script = lock._calls.script
    calls: list[str] = []

    def reply_lost_once(script: Any, keys: Any, args: Any, timeout: Any = None, **kw: Any) -> Any:
        result = real_script(script, keys, args, timeout, **kw)
        calls.append(script.sha)
        if len(calls) == 1:
            raise BackendUnavailableError("reply lost (simulated)")
        return result

    lock._calls.script = reply_lost_once  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError, match="simulated"):
        lock.acquire(blocking=False)
    # The acquire, then the clean-up (in the background: Redis had just failed to answer).
    _poll(lambda: len(calls) == 2)
    assert redis_client.exists(f"scalekit:lock:{{{name}}}") == 0
    lease = RedisLock(redis_client, name).acquire(blocking=False)
    assert lease is not None
    lease.release()


_BUSY_SCRIPT = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) + tonumber(t0[2]) / 1e6
while true do
  local t = redis.call('TIME')
  if tonumber(t[1]) + tonumber(t[2]) / 1e6 - start > tonumber(ARGV[1]) then return 1 end
end
"""


def _busy_for(server: RedisServer, seconds: float) -> threading.Thread:
    """Run a script that keeps *server* busy (``-BUSY`` to everyone else) for *seconds*."""
    client = redis.Redis.from_url(server.url)
    client.config_set("busy-reply-threshold", 50)
    thread = threading.Thread(target=lambda: client.eval(_BUSY_SCRIPT, 0, seconds))
    thread.start()
    return thread


def test_renewal_outlasts_busy_replies(fresh_redis_server: RedisServer) -> None:
    """A script keeps Redis busy for 0.6 s: renewal retries and the lease is never lost."""
    client = redis.Redis.from_url(fresh_redis_server.url)
    seen: list[Lease] = []
    lock = RedisLock(client, unique(), ttl=1.5, auto_renew=True, on_lost=seen.append)
    lease = lock.acquire()
    assert lease is not None
    busy = _busy_for(fresh_redis_server, 0.6)  # over the renewal due at 0.5 s
    busy.join(5)
    time.sleep(2.5 - 0.6)  # past the ttl the failed renewal would have left
    assert not lease.lost.is_set() and not seen
    assert client.pttl(f"scalekit:lock:{{{lock.name}}}") > 1000  # renewed on the server
    lease.release()


def test_an_unreferenced_auto_renewed_lease_ends_at_its_ttl(redis_client: Any) -> None:
    import gc

    name = unique()
    key = f"scalekit:lock:{{{name}}}"
    RedisLock(redis_client, name, ttl=0.5, auto_renew=True).acquire()  # lease and lock dropped
    gc.collect()
    started = time.monotonic()
    _poll(lambda: redis_client.exists(key) == 0, timeout=3)
    assert time.monotonic() - started <= 0.5 + 0.1


def test_the_lock_keeps_the_client_pool_size(redis_server: RedisServer) -> None:
    """120 waiters blocked in BLPOP hold 120 connections; release still gets one."""
    client = redis.Redis.from_url(redis_server.url, max_connections=1000)
    name = unique()
    holder = RedisLock(client, name, ttl=30).acquire()
    assert holder is not None
    got: list[int] = []
    waiters = [
        threading.Thread(target=lambda: got.append(_acquire_release(client, name)))
        for _ in range(120)
    ]
    for waiter in waiters:
        waiter.start()
    _poll(lambda: client.llen(f"scalekit:lock:{{{name}}}:queue") == 120, timeout=20)
    holder.release()
    for waiter in waiters:
        waiter.join(30)
    assert len(got) == 120


def _acquire_release(client: Any, name: str) -> int:
    with RedisLock(client, name, ttl=30).acquire(timeout=30) as lease:  # type: ignore[union-attr]
        return lease.token


def test_fence_tokens_never_go_back_when_the_counter_is_evicted(
    fresh_redis_server: RedisServer,
) -> None:
    """Under allkeys-lru the counter may be evicted (or lost in a restart): tokens still grow."""
    client = redis.Redis.from_url(fresh_redis_server.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    name = unique()
    lock = RedisLock(client, name, ttl=5)
    tokens = []
    for _ in range(3):
        with lock as lease:
            tokens.append(lease.token)
        client.delete(f"scalekit:lock:{{{name}}}:fence")  # what eviction does
    with lock as lease:
        tokens.append(lease.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_a_fresh_lease_ends_locally_no_later_than_on_the_server(
    kind: str, redis_client: Any
) -> None:
    """deadline = clock before the granting request + the PTTL it reported: never later."""
    from scalekit.locking import RedisSemaphore

    name = unique(kind)
    if kind == "lock":
        lock: Any = RedisLock(redis_client, name, ttl=2.0)
        key = f"scalekit:lock:{{{name}}}"
    else:
        lock = RedisSemaphore(redis_client, name, 1, ttl=2.0)
        key = f"scalekit:semaphore:{{{name}}}"
    for _ in range(20):
        lease = lock.acquire()
        assert lease is not None
        if kind == "lock":
            server_left = redis_client.pttl(key) / 1000
        else:
            now_s, now_us = redis_client.time()
            server_left = redis_client.zscore(key, lease.owner) / 1000 - (now_s + now_us / 1e6)
        local_left = lease.remaining()
        assert local_left is not None
        assert local_left <= server_left + 0.001  # PTTL's millisecond resolution
        assert local_left > 2.0 - 0.2  # and not needlessly short
        lease.release()


def test_tokens_never_go_back_across_a_restart_from_an_rdb_snapshot() -> None:
    """Redis's default persistence: a snapshot, more grants, kill -9, start from the snapshot."""
    from scalekit.locking import RedisLock

    server = RedisServer(extra_args=["--save", "3600 1", "--appendonly", "no"])
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        name = unique("rdb")
        lock = RedisLock(client, name, ttl=5)
        issued = []
        for _ in range(3):
            with lock.acquire() as lease:
                issued.append(lease.token)
        client.save()
        for _ in range(5):
            with lock.acquire() as lease:
                issued.append(lease.token)
        server.kill()
        server.start()
        # The snapshot was loaded: the counter is back to what it was at the save.
        client = redis.Redis.from_url(server.url)
        assert int(client.get(f"scalekit:lock:{{{name}}}:fence")) == issued[2]
        lease = RedisLock(client, name, ttl=5).acquire()
        assert lease is not None
        assert lease.token > max(issued)
        lease.release()
    finally:
        server.close()
