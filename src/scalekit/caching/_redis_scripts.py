"""The Lua scripts of the Redis cache tier, and how a call's worst-case time is bounded.

Record layout, per user key `k` in namespace `ns` (all three keys share
the hash tag `{k}`, so one script can touch them on a Redis Cluster):

* `ns:{k}` the value: `<kind><version>:<fresh-until ms>:<payload>`,
  kind `v` (a value) or `n` (remembered "not found");
* `ns:{k}:ver` the key's current version: 32 hex digits (128 random bits)
  drawn afresh by every write, invalidation and write-back;
* `ns:{k}:lease` the load lease, a random token with a short expiry.

A write-back is applied only if the lease is still the loader's and
`:ver` still equals the token the loader read when it took the lease.
Versions are random, so a `:ver` key that expired or was evicted never
comes back with a value a loader saw: an absent or different token rejects
the write-back (at worst a wasted load), never accepts a stale one.
"""

from __future__ import annotations

import math
from typing import Any

from ..exceptions import ConfigurationError

# A value is fresh if its fresh-until stamp is 0 or in the future.
_FRESH = (
    "local function fresh(v, now) local f = tonumber(string.match(v, '^.%x+:(%d+):')) "
    "return f == 0 or f > now end\n"
)

# KEYS: value1, ver1, value2, ver2, ... ARGV: channel, lease_ms, then per key
# (user key, kind, fresh_ms, px, payload, version). Every PUBLISH comes before the first
# write: Lua has no rollback, so a refused PUBLISH (an ACL without the channel) must
# leave nothing written. A script runs atomically, so no reader sees the order.
# The version is set before the value, so a write-back running between the two is
# already rejected.
SET = """
local ch, lease = ARGV[1], tonumber(ARGV[2])
if ch ~= '' then
  for i = 1, #KEYS, 2 do redis.call('PUBLISH', ch, ARGV[3 + (i - 1) / 2 * 6]) end
end
for i = 1, #KEYS, 2 do
  local a = 3 + (i - 1) / 2 * 6
  local px, ver = tonumber(ARGV[a + 3]), ARGV[a + 5]
  redis.call('SET', KEYS[i + 1], ver, 'PX', px + lease)
  redis.call('SET', KEYS[i], ARGV[a + 1] .. ver .. ':' .. ARGV[a + 2] .. ':' .. ARGV[a + 4],
             'PX', px)
end
return 1
"""

# KEYS: value, ver. ARGV: channel, lease_ms, user key, version. 1 if a value was removed.
# PUBLISH first, as in SET.
INVALIDATE = """
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[2])
return redis.call('DEL', KEYS[1])
"""

# KEYS: value, ver, lease. ARGV: token, lease_ms, now_ms, version (used if :ver is absent).
# {1, value, pttl} fresh hit | {2, version, stale or false} lease taken | {3, stale or false} busy
ACQUIRE = (
    _FRESH
    + """
local v = redis.call('GET', KEYS[1])
if v and fresh(v, tonumber(ARGV[3])) then return {1, v, redis.call('PTTL', KEYS[1])} end
local lease = tonumber(ARGV[2])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', lease) then
  local ver = redis.call('GET', KEYS[2])
  if not ver then
    ver = ARGV[4]
    redis.call('SET', KEYS[2], ver, 'PX', lease)
  elseif redis.call('PTTL', KEYS[2]) < lease then
    redis.call('PEXPIRE', KEYS[2], lease)
  end
  return {2, ver, v}
end
return {3, v}
"""
)

# KEYS: value, ver, lease. ARGV: token, version read, kind, fresh_ms, px, payload, lease_ms,
# channel, user key, new version.
# 1 written | 0 lease lost | -1 version changed (or vanished) since the lease was taken.
# PUBLISH before any write, as in SET.
WRITE_BACK = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then redis.call('DEL', KEYS[3]) return -1 end
if ARGV[8] ~= '' then redis.call('PUBLISH', ARGV[8], ARGV[9]) end
redis.call('DEL', KEYS[3])
local px, ver = tonumber(ARGV[5]), ARGV[10]
redis.call('SET', KEYS[2], ver, 'PX', px + tonumber(ARGV[7]))
redis.call('SET', KEYS[1], ARGV[3] .. ver .. ':' .. ARGV[4] .. ':' .. ARGV[6], 'PX', px)
return 1
"""

# KEYS: value. {record, pttl}, or false if absent: a read that also says how long the
# value will still be there (a NearCache bounds its local copy by it).
READ = """
local v = redis.call('GET', KEYS[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _max_backoff(backoff: Any, failures: int) -> float:
    """The longest sleep *backoff* (one of redis-py's backoff classes) may choose after
    *failures* failures; ConfigurationError for any other backoff, whose maximum is unknown.
    """
    from redis import backoff as b

    kind = type(backoff)
    if kind in (b.ConstantBackoff, b.NoBackoff):
        return float(backoff._backoff)
    if kind in (
        b.ExponentialBackoff,
        b.FullJitterBackoff,
        b.EqualJitterBackoff,
        b.ExponentialWithJitterBackoff,
    ):
        return float(min(backoff._cap, backoff._base * 2**failures))
    if kind is b.DecorrelatedJitterBackoff:
        return float(backoff._cap)
    raise ConfigurationError(
        f"the client's retry backoff {kind.__name__} is not one of redis-py's backoff "
        "classes (NoBackoff, ConstantBackoff, ExponentialBackoff, FullJitterBackoff, "
        "EqualJitterBackoff, ExponentialWithJitterBackoff, DecorrelatedJitterBackoff), so "
        "the longest sleep it may choose is unknown and call_timeout cannot be bounded; "
        f"got {backoff!r}"
    )


def pool_wait_bound(pool: Any) -> float:
    """Seconds a call may wait for a free connection of *pool* (0 unless it blocks)."""
    import redis

    if not isinstance(pool, redis.BlockingConnectionPool):
        return 0.0
    timeout = pool.timeout
    return math.inf if timeout is None else float(timeout)


def retry_bound(retry: Any, attempt: float) -> float:
    """Worst-case seconds of a call that *retry* (a redis-py `Retry` or None) may repeat.

    Each attempt takes at most *attempt* seconds; between attempts the
    backoff sleeps at most its cap. A negative retry count (retry forever)
    gives `inf`.
    """
    if retry is None:
        return attempt
    retries = int(retry.get_retries())
    if retries < 0:
        return math.inf
    backoff = retry._backoff
    return (retries + 1) * attempt + sum(_max_backoff(backoff, f) for f in range(1, retries + 1))


def attempt_bound(connection_kwargs: dict[str, Any]) -> float:
    """Seconds one attempt may take on a server that answers nothing: connect, then one read."""
    read = connection_kwargs.get("socket_timeout")
    connect = connection_kwargs.get("socket_connect_timeout", read)
    if read is None or connect is None:
        return math.inf
    return float(connect) + float(read)
