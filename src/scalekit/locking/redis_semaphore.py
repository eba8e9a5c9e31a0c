"""A fair counting semaphore on Redis: up to `n` holders, each with a lease and a token.

The same design as `RedisLock` (FIFO queue,
hand-over inside release, bounded calls), with the single owner key
replaced by a sorted set of holders scored by their expiry:

    scalekit:semaphore:{name}           zset owner -> expiry (ms, server time)
    scalekit:semaphore:{name}:fence     INCR counter: one token per grant
    scalekit:semaphore:{name}:queue / :waiters / :ttls / :wake:<owner>
    scalekit:semaphore:{name}:tokens    hash owner -> its token
    scalekit:semaphore:{name}:n         the n the semaphore is in use with

Every client of a name must use the same `n`: an acquire with another `n`
while the semaphore has a holder or a live waiter is refused; an idle
semaphore takes the `n` of its next acquire.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._validation import positive_int
from ..exceptions import ConfigurationError

try:
    from ._redis_calls import (
        LUA_GONE,
        LUA_NEXT_TOKEN,
        LUA_NOW_MS,
        LUA_REFUSE_LATE,
        Script,
        lua_purge,
    )
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc
from .base import OnLost
from .redis_lock import RedisLock

__all__ = ["RedisSemaphore"]

# KEYS: holders, fence, queue, waiters, ttls, tokens, n.
_PRELUDE = (
    LUA_NOW_MS
    + LUA_NEXT_TOKEN
    + LUA_GONE
    + lua_purge(1, 6)
    + """
local function grant(now, who, ttl)
  redis.call('ZADD', KEYS[1], now + tonumber(ttl), who)
  local token = next_token()
  redis.call('HSET', KEYS[6], who, token)
  return token
end
local function nudge(wake, who, ms)
  redis.call('DEL', wake .. who)
  redis.call('RPUSH', wake .. who, '1')
  redis.call('PEXPIRE', wake .. who, ms)
end
-- Offer free places to live waiters, first come first served, for claim_ms
-- each; the next in line is nudged too, to take over a lapsed offer.
local function hand_over(now, wake, waiter_ms, limit, claim_ms)
  local offered = false
  while redis.call('ZCARD', KEYS[1]) < limit do
    local head = redis.call('LPOP', KEYS[3])
    if not head then return end
    local hb = redis.call('ZSCORE', KEYS[4], head)
    local ttl = redis.call('HGET', KEYS[5], head)
    redis.call('ZREM', KEYS[4], head)
    redis.call('HDEL', KEYS[5], head)
    if hb and ttl and tonumber(hb) >= now then
      redis.call('ZADD', KEYS[1], now + tonumber(claim_ms), head)
      redis.call('HDEL', KEYS[6], head)
      nudge(wake, head, claim_ms)
      offered = true
    end
  end
  local second = redis.call('LINDEX', KEYS[3], 0)
  if offered and second then nudge(wake, second, waiter_ms) end
end
"""
)

# ARGV: owner, ttl ms, blocking, waiter ttl ms, wake prefix, claim ms, limit.
# Returns {1, token, validity ms} when granted in this step, {-1, n} when
# the semaphore is in use with another n, else {0, ms until the first place
# may free up}.
_ACQUIRE = Script(
    _PRELUDE
    + LUA_REFUSE_LATE
    + """
local me, limit = ARGV[1], tonumber(ARGV[7])
if is_gone(me) then return {0, 0} end  -- a request of an attempt that gave up
local now = now_ms()
purge(now)
local stored = tonumber(redis.call('GET', KEYS[7]) or limit)
if stored ~= limit then
  if redis.call('ZCARD', KEYS[1]) > 0 or redis.call('ZCOUNT', KEYS[4], now, '+inf') > 0 then
    return {-1, stored}
  end
end
redis.call('SET', KEYS[7], limit)
if redis.call('LLEN', KEYS[3]) > 0 then hand_over(now, ARGV[5], ARGV[4], limit, ARGV[6]) end
if redis.call('ZSCORE', KEYS[1], me) or redis.call('ZCARD', KEYS[1]) < limit then
  -- Offered to us, or a free place: the grant is made here, with our ttl.
  local token = grant(now, me, ARGV[2])
  redis.call('DEL', ARGV[5] .. me)
  return {1, token, tonumber(ARGV[2])}
end
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), me) == 1 then
    redis.call('RPUSH', KEYS[3], me)
  end
  redis.call('HSET', KEYS[5], me, ARGV[2])
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
"""
)

# ARGV: owner, wake prefix, waiter ttl ms, claim ms, limit.
_RELEASE = Script(
    _PRELUDE
    + """
local now = now_ms()
purge(now)
local held = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
hand_over(now, ARGV[2], ARGV[3], tonumber(ARGV[5]), ARGV[4])
return held
""",
    "allow-oom",
)

# ARGV: owner, wake prefix, waiter ttl ms, claim ms, limit.
_ABANDON = Script(
    _PRELUDE
    + """
mark_gone(ARGV[1])
redis.call('LREM', KEYS[3], 0, ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('DEL', ARGV[2] .. ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local now = now_ms()
purge(now)
hand_over(now, ARGV[2], ARGV[3], tonumber(ARGV[5]), ARGV[4])
return 1
""",
    "allow-oom",
)

# ARGV: owner, ttl ms.
_EXTEND = Script(
    _PRELUDE
    + """
local now = now_ms()
purge(now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
return 1
""",
    "allow-oom",
)


class RedisSemaphore(RedisLock):
    """A counting semaphore on Redis: at most `n` leases of one name at a time.

    Args:
        client: a `redis.Redis` you configured.
        name: the semaphore's name.
        n: how many holders may hold it at once; all clients must agree
            (an acquire with another `n` while the semaphore is in use
            raises `ConfigurationError`).
        ttl: as [RedisLock][scalekit.locking.RedisLock], like the other
            options (`op_timeout`, `waiter_ttl`, `claim_window`, `reentrant`,
            `auto_renew`, `on_lost`, `clock`).

    Raises:
        ConfigurationError: `n` not a positive integer, or as RedisLock;
            from `acquire()`, the semaphore is in use with another `n`.

    Every lease has its own token from the per-name counter, so tokens are
    unique and grow with each grant. Waiters are served in arrival order; a
    free place is offered to the first and claimed as RedisLock's are.

    Thread-safe. Cost: one round trip to acquire or release, O(log n) on
    the server.
    """

    _KEY_PREFIX = "scalekit:semaphore:"
    _KEY_SUFFIXES = ("", ":fence", ":queue", ":waiters", ":ttls", ":tokens", ":n")
    _SCRIPTS = {"acquire": _ACQUIRE, "release": _RELEASE, "abandon": _ABANDON, "extend": _EXTEND}
    _LAST_TRY_LEAVES = False  # its acquire script has no 'L' mode: the clean-up follows

    def __init__(
        self,
        client: Any,
        name: str,
        n: int,
        *,
        ttl: float = 10.0,
        op_timeout: float = 2.0,
        waiter_ttl: float = 3.0,
        claim_window: float = 0.5,
        reentrant: bool = False,
        auto_renew: bool = False,
        on_lost: OnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.n = positive_int("n", n)
        super().__init__(
            client,
            name,
            ttl=ttl,
            op_timeout=op_timeout,
            waiter_ttl=waiter_ttl,
            claim_window=claim_window,
            reentrant=reentrant,
            auto_renew=auto_renew,
            on_lost=on_lost,
            clock=clock,
        )
        self._extra = [self.n]

    def _refuse(self, reply: Any) -> None:
        if int(reply[0]) == -1:
            raise ConfigurationError(
                f"semaphore {self.name!r}: this client has n={self.n}, but the semaphore is "
                f"in use with n={int(reply[1])}; every client of a semaphore must use the "
                "same n (a new n takes over once it has no holder and no waiter)"
            )

    def holders(self) -> int:
        """How many unexpired leases are held now. One round trip."""
        now_s, now_us = self._calls.call("TIME")
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        return int(self._calls.call("ZCOUNT", self._keys[0], f"({now_ms}", "+inf"))

    def locked(self) -> bool:
        """True when all *n* places are taken. One round trip (two with TIME)."""
        return self.holders() >= self.n
