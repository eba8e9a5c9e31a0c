"""A fair Redis lock: one Lua round trip acquires and issues the fencing token.

Keys, all under one hash tag so a Redis Cluster keeps them in one slot::

    scalekit:lock:{name}            owner token, PX ttl      (the lock)
    scalekit:lock:{name}:fence      INCR counter, no expiry  (fencing tokens)
    scalekit:lock:{name}:queue      list of waiting owner tokens, FIFO
    scalekit:lock:{name}:waiters    zset owner token -> heartbeat deadline (ms)
    scalekit:lock:{name}:ttls       hash owner token -> the ttl it asked for (ms)
    scalekit:lock:{name}:wake:<owner>   signal list a waiter BLPOPs

A free lock is taken at once only when nobody waits. Otherwise release
hands it over, in the same script, to the first live waiter: it becomes
the owner with a new fencing token, pushed onto the waiter's signal list,
so the waiter's BLPOP returns holding the lock (a list push cannot be
missed the way a pub/sub message sent before SUBSCRIBE can). Waiters are
thus served in arrival order. A lease that expires without release is
noticed when the head's BLPOP times out at the lock's remaining ttl and
its retry hands the lock over. A waiter that dies stops its heartbeat and
is dropped from the queue after ``waiter_ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._validation import positive_number
from ._redis_calls import LUA_NOW_MS, RedisCalls, Script
from .base import BaseLock, Lease, OnLost

__all__ = ["RedisLock"]

# Shared by the scripts. KEYS: lock, fence, queue, waiters (zset: heartbeat
# deadline), ttls (hash: the ttl each waiter asked for).
_PRELUDE = (
    LUA_NOW_MS
    + """
-- Give the free lock to the first live waiter: make it the owner with its
-- ttl, issue its fencing token and push the token onto its wake list.
local function hand_over(now, wake, waiter_ms)
  while true do
    local head = redis.call('LPOP', KEYS[3])
    if not head then return end
    local hb = redis.call('ZSCORE', KEYS[4], head)
    local ttl = redis.call('HGET', KEYS[5], head)
    redis.call('ZREM', KEYS[4], head)
    redis.call('HDEL', KEYS[5], head)
    if hb and ttl and tonumber(hb) >= now then
      redis.call('SET', KEYS[1], head, 'PX', ttl)
      local token = redis.call('INCR', KEYS[2])
      redis.call('LPUSH', wake .. head, token)
      redis.call('PEXPIRE', wake .. head, waiter_ms)
      return
    end
  end
end
"""
)

# ARGV: owner, ttl ms, blocking, waiter ttl ms, wake prefix.
# Returns {1, token} when the caller owns the lock, else {0, pttl of the lock}.
_ACQUIRE = Script(
    _PRELUDE
    + """
local me = ARGV[1]
local owner = redis.call('GET', KEYS[1])
if not owner and redis.call('LLEN', KEYS[3]) > 0 then
  -- Expired without release while others wait: the first of them comes first.
  hand_over(now_ms(), ARGV[5], ARGV[4])
  owner = redis.call('GET', KEYS[1])
end
if owner == me then
  -- Handed over to us (maybe while we were not listening).
  redis.call('DEL', ARGV[5] .. me)
  return {1, tonumber(redis.call('GET', KEYS[2]))}
end
if not owner then
  redis.call('SET', KEYS[1], me, 'PX', ARGV[2])
  return {1, redis.call('INCR', KEYS[2])}
end
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[4]), me) == 1 then
    redis.call('RPUSH', KEYS[3], me)
  end
  redis.call('HSET', KEYS[5], me, ARGV[2])
end
return {0, redis.call('PTTL', KEYS[1])}
"""
)

# ARGV: owner, wake prefix, waiter ttl ms.
_RELEASE = Script(
    _PRELUDE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
hand_over(now_ms(), ARGV[2], ARGV[3])
return 1
"""
)

# ARGV: owner, wake prefix, waiter ttl ms. Leave the queue; pass on a lock
# handed over to us as we gave up.
_ABANDON = Script(
    _PRELUDE
    + """
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('DEL', ARGV[2] .. ARGV[1])
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('DEL', KEYS[1])
  owner = false
end
if not owner then hand_over(now_ms(), ARGV[2], ARGV[3]) end
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
        # Whether the server may know this owner (queued, or a reply was lost).
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
    :param reentrant: let the owning thread acquire again, counted.
    :param auto_renew: extend the lease every ``ttl / 3`` while held.
    :param on_lost: called once with a lease when it is found lost.
    :param clock: monotonic seconds (inject a FakeClock in tests).
    :raises ConfigurationError: empty *name*, *ttl*, *op_timeout* or
        *waiter_ttl* <= 0.

    Guarantees: mutual exclusion while the server keeps its data (a
    restart without persistence forgets the lock *and* the fence counter);
    tokens strictly increase per name; FIFO service of blocking waiters.

    Thread-safe. Cost: acquire and release are one round trip each when
    uncontended; a waiter spends one BLPOP per wake-up.
    """

    _KEY_PREFIX = "scalekit:lock:"
    _KEY_SUFFIXES: tuple[str, ...] = ("", ":fence", ":queue", ":waiters", ":ttls")
    _SCRIPTS = {"acquire": _ACQUIRE, "release": _RELEASE, "abandon": _ABANDON, "extend": _EXTEND}

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
        base = f"{self._KEY_PREFIX}{{{self.name}}}"
        self._keys = [base + suffix for suffix in self._KEY_SUFFIXES]
        self._wake_prefix = base + ":wake:"
        self._extra: list[Any] = []
        self._waiter_ms = max(int(self.waiter_ttl * 1000), 1)

    def _new_attempt(self, owner: str) -> Any:
        return _Attempt(owner)

    def _do_acquire(self, attempt: Any, blocking: bool) -> int | None:
        assert self.ttl is not None
        attempt.queued = True  # until the reply says otherwise
        granted, value = self._calls.script(
            self._SCRIPTS["acquire"],
            self._keys,
            [
                attempt.owner,
                max(int(self.ttl * 1000), 1),
                "1" if blocking else "0",
                self._waiter_ms,
                self._wake_prefix,
                *self._extra,
            ],
        )
        if granted == 1:
            return int(value)
        attempt.pttl = int(value)
        attempt.queued = blocking
        return None

    def _wait(self, attempt: Any, timeout: float | None) -> int | None:
        wait = self.waiter_ttl / 3
        if attempt.pttl > 0:
            # Wake up when the holder's lease would run out, in case it never releases.
            wait = min(wait, attempt.pttl / 1000 + 0.002)
        if timeout is not None:
            wait = min(wait, timeout)
        wait = max(wait, 0.001)
        handed = self._calls.call(
            "BLPOP",
            self._wake_prefix + attempt.owner,
            f"{wait:.3f}",
            timeout=wait + self.op_timeout,
        )
        return None if handed is None else int(handed[1])

    def _abandon(self, attempt: Any) -> None:
        if not attempt.queued:
            return
        self._calls.script(
            self._SCRIPTS["abandon"],
            self._keys,
            [attempt.owner, self._wake_prefix, self._waiter_ms, *self._extra],
        )

    def _do_release(self, lease: Lease) -> bool:
        args = [lease.owner, self._wake_prefix, self._waiter_ms, *self._extra]
        return int(self._calls.script(self._SCRIPTS["release"], self._keys, args)) == 1

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        assert ttl is not None
        args = [lease.owner, max(int(ttl * 1000), 1)]
        return int(self._calls.script(self._SCRIPTS["extend"], self._keys, args)) == 1

    def locked(self) -> bool:
        """True while some owner holds the lock. One round trip."""
        return int(self._calls.call("EXISTS", self._keys[0])) == 1
