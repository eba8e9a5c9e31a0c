"""A fair read-write lock on Redis: many readers or one writer, served in arrival order.

The `RedisLock` design (FIFO queue, hand-over in
the release script, bounded calls) with two kinds of holder:

    scalekit:rwlock:{name}             the writer: owner, PX ttl
    scalekit:rwlock:{name}:readers     zset reader owner -> expiry (ms, server time)
    scalekit:rwlock:{name}:fence       INCR counter: one token per grant, read or write
    scalekit:rwlock:{name}:queue / :waiters / :ttls / :modes / :tokens / :wake:<owner>

A reader that arrives while a writer waits queues behind it, so writers
do not starve; on release the head of the queue is granted, and a run of
readers at the head is granted together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._redis_calls import (
    LUA_GONE,
    LUA_NEXT_TOKEN,
    LUA_NOW_MS,
    LUA_REFUSE_LATE,
    Script,
    lua_purge,
)
from .base import OnLost
from .redis_lock import RedisLock

__all__ = ["RedisReadWriteLock"]

# KEYS: writer, fence, queue, waiters, ttls, readers, modes, tokens.
_PRELUDE = (
    LUA_NOW_MS
    + LUA_NEXT_TOKEN
    + LUA_GONE
    + lua_purge(6, 8)
    + """
local function can(mode)
  if redis.call('EXISTS', KEYS[1]) == 1 then return false end
  return mode == 'r' or redis.call('ZCARD', KEYS[6]) == 0
end
local function hold(now, who, mode, ms)
  if mode == 'w' then
    redis.call('SET', KEYS[1], who, 'PX', ms)
  else
    redis.call('ZADD', KEYS[6], now + tonumber(ms), who)
  end
end
local function grant(now, who, mode, ttl)
  hold(now, who, mode, ttl)
  local token = next_token()
  redis.call('HSET', KEYS[8], who, token)
  return token
end
local function forget(who)
  redis.call('ZREM', KEYS[4], who)
  redis.call('HDEL', KEYS[5], who)
  redis.call('HDEL', KEYS[7], who)
end
local function nudge(wake, who, ms)
  redis.call('DEL', wake .. who)
  redis.call('RPUSH', wake .. who, '1')
  redis.call('PEXPIRE', wake .. who, ms)
end
-- Offer the lock to the head of the queue while it fits (one writer, or a
-- run of readers) for claim_ms each; nudge the next in line too.
local function hand_over(now, wake, waiter_ms, claim_ms)
  local offered = false
  while true do
    local head = redis.call('LINDEX', KEYS[3], 0)
    if not head then return end
    local hb = redis.call('ZSCORE', KEYS[4], head)
    local ttl = redis.call('HGET', KEYS[5], head)
    local mode = redis.call('HGET', KEYS[7], head)
    if hb and ttl and mode and tonumber(hb) >= now then
      if not can(mode) then
        if offered then nudge(wake, head, waiter_ms) end
        return
      end
      redis.call('LPOP', KEYS[3])
      forget(head)
      hold(now, head, mode, claim_ms)
      redis.call('HDEL', KEYS[8], head)
      nudge(wake, head, claim_ms)
      offered = true
      if mode == 'w' then
        local second = redis.call('LINDEX', KEYS[3], 0)
        if second then nudge(wake, second, waiter_ms) end
        return
      end
    else
      redis.call('LPOP', KEYS[3])
      forget(head)
    end
  end
end
local function holds(who)
  return redis.call('GET', KEYS[1]) == who or redis.call('ZSCORE', KEYS[6], who) ~= false
end
local function drop(who)
  local held = 0
  if redis.call('GET', KEYS[1]) == who then
    redis.call('DEL', KEYS[1])
    held = 1
  end
  held = held + redis.call('ZREM', KEYS[6], who)
  redis.call('HDEL', KEYS[8], who)
  return held
end
"""
)

# ARGV: owner, ttl ms, blocking, waiter ttl ms, wake prefix, claim ms, mode ('r' or 'w').
# Returns {1, token, validity ms} when granted in this step, else {0, ms to wait}.
_ACQUIRE = Script(
    _PRELUDE
    + LUA_REFUSE_LATE
    + """
local me, mode = ARGV[1], ARGV[7]
if is_gone(me) then return {0, 0} end  -- a request of an attempt that gave up
local now = now_ms()
purge(now)
hand_over(now, ARGV[5], ARGV[4], ARGV[6])
if holds(me) or (redis.call('LLEN', KEYS[3]) == 0 and can(mode)) then
  -- Offered to us, or free: the grant is made here, with our ttl.
  local token = grant(now, me, mode, ARGV[2])
  redis.call('DEL', ARGV[5] .. me)
  return {1, token, tonumber(ARGV[2])}
end
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), me) == 1 then
    redis.call('RPUSH', KEYS[3], me)
  end
  redis.call('HSET', KEYS[5], me, ARGV[2])
  redis.call('HSET', KEYS[7], me, mode)
end
local wait = redis.call('PTTL', KEYS[1])
local first = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
if first[2] then
  local r = tonumber(first[2]) - now
  if wait < 0 or r < wait then wait = r end
end
return {0, wait}
"""
)

# ARGV: owner, wake prefix, waiter ttl ms, claim ms, mode.
_RELEASE = Script(
    _PRELUDE
    + """
local now = now_ms()
purge(now)
local held = drop(ARGV[1])
hand_over(now, ARGV[2], ARGV[3], ARGV[4])
return held
""",
    "allow-oom",
)

_ABANDON = Script(
    _PRELUDE
    + """
mark_gone(ARGV[1])
redis.call('LREM', KEYS[3], 0, ARGV[1])
forget(ARGV[1])
redis.call('DEL', ARGV[2] .. ARGV[1])
drop(ARGV[1])
local now = now_ms()
purge(now)
hand_over(now, ARGV[2], ARGV[3], ARGV[4])
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
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('ZSCORE', KEYS[6], ARGV[1]) then
  redis.call('ZADD', KEYS[6], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
""",
    "allow-oom",
)


class _Side(RedisLock):
    """The read or the write side of a `RedisReadWriteLock`."""

    _KEY_PREFIX = "scalekit:rwlock:"
    _KEY_SUFFIXES = (
        "",
        ":fence",
        ":queue",
        ":waiters",
        ":ttls",
        ":readers",
        ":modes",
        ":tokens",
    )
    _SCRIPTS = {"acquire": _ACQUIRE, "release": _RELEASE, "abandon": _ABANDON, "extend": _EXTEND}
    _LAST_TRY_LEAVES = False  # its acquire script has no 'L' mode: the clean-up follows

    def __init__(self, mode: str, client: Any, name: str, **options: Any) -> None:
        super().__init__(client, name, **options)
        self.mode = mode
        self._extra = [mode]

    def locked(self) -> bool:
        """True while this side could not be granted now (a writer; for writers, any holder)."""
        if int(self._calls.call("EXISTS", self._keys[0])) == 1:
            return True
        return self.mode == "w" and int(self._calls.call("ZCARD", self._keys[5])) > 0


class RedisReadWriteLock:
    """A read-write lock on Redis: `rw.read` and `rw.write` are the two locks.

    Args:
        client: a `redis.Redis` you configured.
        name: the lock's name.
        ttl: as [RedisLock][scalekit.locking.RedisLock], for both sides, like
            the other options (`op_timeout`, `waiter_ttl`, `claim_window`,
            `reentrant`, `auto_renew`, `on_lost`, `clock`).

    Example:
        ```python
        rw = RedisReadWriteLock(client, "catalog")
        with rw.read as lease: ...                      # many readers at once
        with rw.write as lease: ...                     # one writer, no readers
        ```

    Both sides are [BaseLock][scalekit.locking.BaseLock] objects with leases,
    fencing tokens (one counter for both) and lost-lease notice. Waiters of
    both kinds are served in arrival order.

    Thread-safe. Cost: one round trip to acquire or release.
    """

    def __init__(
        self,
        client: Any,
        name: str,
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
        options = dict(
            ttl=ttl,
            op_timeout=op_timeout,
            waiter_ttl=waiter_ttl,
            claim_window=claim_window,
            reentrant=reentrant,
            auto_renew=auto_renew,
            on_lost=on_lost,
            clock=clock,
        )
        self.name = name
        self.read: RedisLock = _Side("r", client, name, **options)
        self.write: RedisLock = _Side("w", client, name, **options)

    def __repr__(self) -> str:
        return f"RedisReadWriteLock({self.name!r})"
