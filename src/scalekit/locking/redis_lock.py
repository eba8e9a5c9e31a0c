"""A fair Redis lock: one Lua round trip acquires and issues the fencing token.

Keys, all under one hash tag so a Redis Cluster keeps them in one slot::

    scalekit:lock:{name}            owner token, PX ttl      (the lock)
    scalekit:lock:{name}:fence      INCR counter, no expiry  (fencing tokens)
    scalekit:lock:{name}:queue      list of waiting owner tokens, FIFO
    scalekit:lock:{name}:waiters    zset owner token -> heartbeat deadline (ms)
    scalekit:lock:{name}:wake:<owner>   signal list a waiter BLPOPs

A free lock goes to the head of the queue only, so waiters are served in
arrival order. Release wakes the head by pushing onto its signal list
(a push cannot be missed the way a pub/sub message sent before SUBSCRIBE
can); a lease that expires without release is noticed by the head when
its BLPOP times out at the lock's remaining ttl. A waiter that dies stops
its heartbeat and is dropped from the queue after ``waiter_ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._validation import positive_number
from ._redis_calls import RedisCalls, Script
from .base import BaseLock, Lease, OnLost

__all__ = ["RedisLock"]

# Drop dead heads, then grant the lock to a free-and-first caller with a new
# fencing token; otherwise queue the caller (if blocking) and return the pttl.
_ACQUIRE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local dropped = false
while true do
  local head = redis.call('LINDEX', KEYS[3], 0)
  if (not head) or head == me then break end
  local hb = redis.call('ZSCORE', KEYS[4], head)
  if hb and tonumber(hb) >= now then break end
  redis.call('LPOP', KEYS[3])
  redis.call('ZREM', KEYS[4], head)
  dropped = true
end
local head = redis.call('LINDEX', KEYS[3], 0)
local free = redis.call('EXISTS', KEYS[1]) == 0
if free and ((not head) or head == me) then
  redis.call('SET', KEYS[1], me, 'PX', ARGV[2])
  if head then
    redis.call('LPOP', KEYS[3])
    redis.call('ZREM', KEYS[4], me)
  end
  redis.call('DEL', ARGV[5] .. me)
  return {1, redis.call('INCR', KEYS[2])}
end
if dropped and free and head then
  redis.call('LPUSH', ARGV[5] .. head, 1)
  redis.call('PEXPIRE', ARGV[5] .. head, ARGV[4])
end
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), me) == 1 then
    redis.call('RPUSH', KEYS[3], me)
  end
end
return {0, redis.call('PTTL', KEYS[1])}
""")

# Wake the first live waiter, dropping dead ones on the way.
_WAKE_HEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
while true do
  local head = redis.call('LINDEX', KEYS[3], 0)
  if not head then break end
  local hb = redis.call('ZSCORE', KEYS[4], head)
  if hb and tonumber(hb) >= now then
    redis.call('LPUSH', ARGV[2] .. head, 1)
    redis.call('PEXPIRE', ARGV[2] .. head, ARGV[3])
    break
  end
  redis.call('LPOP', KEYS[3])
  redis.call('ZREM', KEYS[4], head)
end
"""

_RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
"""
    + _WAKE_HEAD
    + """
return 1
"""
)

_ABANDON = Script(
    """
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('DEL', ARGV[2] .. ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
"""
    + _WAKE_HEAD
    + """
return 1
"""
)

_EXTEND = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""")


class _Attempt:
    __slots__ = ("owner", "pttl", "queued")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.pttl = -2
        self.queued = False


class RedisLock(BaseLock):
    """A distributed lock on one Redis server (or a Redis Cluster slot) with fencing.

    :param client: a ``redis.Redis`` you configured (TLS, ACL, database);
        the lock copies its settings into a private pool with retries off.
    :param name: the lock's name.
    :param ttl: seconds a lease lasts unless extended or renewed.
    :param op_timeout: the most any single Redis call may take before
        :class:`BackendUnavailableError`.
    :param waiter_ttl: a waiter that stops refreshing its place for this
        long is dropped from the queue; it refreshes every ``waiter_ttl / 3``.
    :param reentrant, auto_renew, on_lost, clock: see :class:`BaseLock`.
    :raises ConfigurationError: empty *name*, *ttl*, *op_timeout* or
        *waiter_ttl* <= 0.

    Guarantees: mutual exclusion while the server keeps its data (a
    restart without persistence forgets the lock *and* the fence counter);
    tokens strictly increase per name; FIFO service of blocking waiters.

    Thread-safe. Cost: acquire and release are one round trip each when
    uncontended; a waiter spends one BLPOP per wake-up.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        *,
        ttl: float = 10.0,
        op_timeout: float = 2.0,
        waiter_ttl: float = 3.0,
        reentrant: bool = False,
        auto_renew: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            name, ttl=ttl, reentrant=reentrant, auto_renew=auto_renew, on_lost=on_lost, clock=clock
        )
        self.op_timeout = positive_number("op_timeout", op_timeout)
        self.waiter_ttl = positive_number("waiter_ttl", waiter_ttl)
        self._calls = RedisCalls(client, self.op_timeout)
        base = f"scalekit:lock:{{{self.name}}}"
        self._keys = [base, base + ":fence", base + ":queue", base + ":waiters"]
        self._wake_prefix = base + ":wake:"
        self._waiter_ms = max(int(self.waiter_ttl * 1000), 1)

    def _new_attempt(self, owner: str) -> Any:
        return _Attempt(owner)

    def _do_acquire(self, attempt: Any, blocking: bool) -> int | None:
        assert self.ttl is not None
        granted, value = self._calls.script(
            _ACQUIRE,
            self._keys,
            [
                attempt.owner,
                max(int(self.ttl * 1000), 1),
                "1" if blocking else "0",
                self._waiter_ms,
                self._wake_prefix,
            ],
        )
        if granted == 1:
            return int(value)
        attempt.pttl = int(value)
        attempt.queued = blocking
        return None

    def _wait(self, attempt: Any, timeout: float | None) -> None:
        wait = self.waiter_ttl / 3
        if attempt.pttl > 0:
            # Wake up when the holder's lease would run out, in case it never releases.
            wait = min(wait, attempt.pttl / 1000 + 0.002)
        if timeout is not None:
            wait = min(wait, timeout)
        wait = max(wait, 0.001)
        self._calls.call(
            "BLPOP",
            self._wake_prefix + attempt.owner,
            f"{wait:.3f}",
            timeout=wait + self.op_timeout,
        )

    def _abandon(self, attempt: Any) -> None:
        if not attempt.queued:
            return
        self._calls.script(
            _ABANDON, self._keys, [attempt.owner, self._wake_prefix, self._waiter_ms]
        )

    def _do_release(self, lease: Lease) -> bool:
        return (
            int(
                self._calls.script(
                    _RELEASE, self._keys, [lease.owner, self._wake_prefix, self._waiter_ms]
                )
            )
            == 1
        )

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        assert ttl is not None
        return (
            int(self._calls.script(_EXTEND, self._keys[:1], [lease.owner, max(int(ttl * 1000), 1)]))
            == 1
        )

    def locked(self) -> bool:
        """True while some owner holds the lock. One round trip."""
        return int(self._calls.call("EXISTS", self._keys[0])) == 1
