"""A fair Redis lock: one Lua round trip acquires and issues the fencing token.

Keys, all under one hash tag so a Redis Cluster keeps them in one slot:

    scalekit:lock:{name}            owner token, PX ttl      (the lock)
    scalekit:lock:{name}:fence      counter, no expiry       (fencing tokens)
    scalekit:lock:{name}:queue      list of waiting owner tokens, FIFO
    scalekit:lock:{name}:waiters    zset owner token -> heartbeat deadline (ms)
    scalekit:lock:{name}:ttls       hash owner token -> the ttl it asked for (ms)
    scalekit:lock:{name}:wake:<owner>   signal list a waiter BLPOPs
    scalekit:lock:{name}:gone       zset owner -> its requests' last deadline (ms):
                                    attempts that gave up (see `LUA_GONE`)

A free lock is taken at once only when nobody waits. Otherwise release
offers it, in the same script, to the first live waiter: the lock key
names that waiter for a short claim window only (`claim_window`), and a
nudge is pushed onto its wake list (a list push cannot be missed the way a
pub/sub message sent before SUBSCRIBE can). The nudge grants nothing: the
woken waiter runs the acquire script again, which confirms that the key
still names it, sets its ttl, issues the token and reports the PTTL, all
in one step; the lease's local deadline is the clock reading taken before
that request plus that PTTL. A waiter that is paused or dead when offered
the lock lets the claim window lapse; the next waiter, nudged at the same
time, then takes its turn. Waiters are thus served in arrival order. A
lease that expires without release is noticed when the head's BLPOP times
out at the lock's remaining ttl and its retry offers the lock on. A waiter
that dies stops its heartbeat and is dropped from the queue after
`waiter_ttl`. A waiter whose caller's deadline comes sends its last try
one reply's time before it; refused, that same script takes the waiter
out of the queue, so a timed-out acquire ends with one round trip, not a
try and then a clean-up.

The fence counter never goes back while the server keeps it; when it is
missing (first use, evicted under an `allkeys-*` policy, or a restart
without persistence) it restarts from the server's clock in microseconds,
above every token issued before, as long as the server's clock did not go
back by more than the time since those were issued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._clients import check_hash_tag, check_redis, redis_seconds

try:
    from ._redis_calls import (
        LUA_GONE,
        LUA_NEXT_TOKEN,
        LUA_NOW_MS,
        LUA_REFUSE_LATE,
        RedisCalls,
        Script,
    )
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc
from .base import CLEANUP_BUDGET, BaseLock, Grant, Lease, OnLost

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

__all__ = ["RedisLock"]

# Shared by the scripts. KEYS: lock, fence, queue, waiters (zset: heartbeat
# deadline), ttls (hash: the ttl each waiter asked for).
_PRELUDE = (
    LUA_NOW_MS
    + LUA_NEXT_TOKEN
    + LUA_GONE
    + """
local function nudge(wake, who, ms)
  redis.call('DEL', wake .. who)
  redis.call('RPUSH', wake .. who, '1')
  redis.call('PEXPIRE', wake .. who, ms)
end
-- Offer the free lock to the first live waiter for claim_ms: it must claim
-- it (the acquire script) before that, or the offer lapses. The next in
-- line is nudged too, so that it takes over when the offer lapses.
local function hand_over(now, wake, waiter_ms, claim_ms)
  while true do
    local head = redis.call('LPOP', KEYS[3])
    if not head then return end
    local hb = redis.call('ZSCORE', KEYS[4], head)
    local ttl = redis.call('HGET', KEYS[5], head)
    redis.call('ZREM', KEYS[4], head)
    redis.call('HDEL', KEYS[5], head)
    if hb and ttl and tonumber(hb) >= now then
      redis.call('SET', KEYS[1], head, 'PX', claim_ms)
      nudge(wake, head, claim_ms)
      local second = redis.call('LINDEX', KEYS[3], 0)
      if second then nudge(wake, second, waiter_ms) end
      return
    end
  end
end
-- Leave the queue as an attempt that gave up, and mark *who* gone until *until_ms*.
local function leave(who, wake, until_ms)
  mark_gone(who, until_ms)
  redis.call('LREM', KEYS[3], 0, who)
  redis.call('ZREM', KEYS[4], who)
  redis.call('HDEL', KEYS[5], who)
  redis.call('DEL', wake .. who)
end
"""
)

# ARGV: owner, ttl ms, mode, waiter ttl ms, wake prefix, claim ms, deadline
# (server ms, see `LUA_GONE`). Returns {1, token, pttl} when the caller owns
# the lock (claimed in this step), else {0, pttl of the lock}. Modes: '0' a
# single try; '1' a blocking try, which queues the caller; 'L' the last try
# before the caller's deadline, which takes one more argument before the
# deadline (the attempt's earlier requests' last deadline, server ms) and,
# refused, leaves the queue in the same step, as the clean-up (`_ABANDON`)
# would, marking the owner gone until that earlier deadline.
_ACQUIRE = Script(
    _PRELUDE
    + LUA_REFUSE_LATE
    + """
local me = ARGV[1]
if is_gone(me) then
  -- A request of an attempt that gave up, arriving after its clean-up: take nothing.
  return {0, redis.call('PTTL', KEYS[1])}
end
local owner = redis.call('GET', KEYS[1])
if not owner and redis.call('LLEN', KEYS[3]) > 0 then
  -- Expired without release while others wait: the first of them comes first.
  hand_over(now_ms(), ARGV[5], ARGV[4], ARGV[6])
  owner = redis.call('GET', KEYS[1])
end
if owner == me or not owner then
  -- Free, or offered to us: the grant is made here, with our ttl, and only here.
  redis.call('SET', KEYS[1], me, 'PX', ARGV[2])
  redis.call('DEL', ARGV[5] .. me)
  return {1, next_token(), redis.call('PTTL', KEYS[1])}
end
if ARGV[3] == '1' then
  if redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[4]), me) == 1 then
    redis.call('RPUSH', KEYS[3], me)
  end
  redis.call('HSET', KEYS[5], me, ARGV[2])
elseif ARGV[3] == 'L' then
  -- Held by another: nothing to pass on, only our place to give up. Gone while an
  -- earlier request of ours may still run (this one runs now: it cannot come again).
  leave(me, ARGV[5], ARGV[#ARGV - 1])
end
return {0, redis.call('PTTL', KEYS[1])}
"""
)

# ARGV: owner, wake prefix, waiter ttl ms, claim ms.
_RELEASE = Script(
    _PRELUDE
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
hand_over(now_ms(), ARGV[2], ARGV[3], ARGV[4])
return 1
""",
    # It frees a key and may set it for the next waiter: never refused as OOM.
    "allow-oom",
)

# ARGV: owner, wake prefix, waiter ttl ms, claim ms, the attempt's last
# request deadline (server ms; 0: none was sent). Leave the queue; pass
# on a lock offered to us (or granted with a lost reply) as we gave up; mark
# the owner gone, so that a request of ours still on the way takes nothing.
_ABANDON = Script(
    _PRELUDE
    + """
leave(ARGV[1], ARGV[2], ARGV[#ARGV])
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('DEL', KEYS[1])
  owner = false
end
if not owner then hand_over(now_ms(), ARGV[2], ARGV[3], ARGV[4]) end
return 1
""",
    # A clean-up frees more than its marker takes: never refused as OOM.
    "allow-oom",
)

_EXTEND = Script(
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
""",
    "allow-oom",
)

# The most a BLPOP reply may come after the BLPOP's own timeout before a
# waiter at its deadline stops listening (the round trip of a loaded host).
_REPLY_SLACK = 0.02
# How late an idle Redis may fire a BLPOP's timeout: its timer tick, 1/hz
# with the default hz of 10.
REDIS_TICK = 0.1


def listen_time(heartbeat: float, pttl_ms: int, timeout: float | None) -> tuple[float, bool]:
    """How long a waiter listens on its wake list, and whether it must end on time.

    It wakes up for its heartbeat, when the holder's lease would run out
    (in case it never releases) and at the caller's deadline; the last two
    are instants the lock promises to act at (`exact`).
    """
    wait, exact = heartbeat, False
    if pttl_ms > 0 and pttl_ms / 1000 + 0.002 < wait:
        wait, exact = pttl_ms / 1000 + 0.002, True
    if timeout is not None and timeout <= wait:
        wait, exact = timeout, True
    return max(wait, 0.001), exact


class _Attempt:
    __slots__ = ("last", "owner", "pttl", "queued", "sent_at", "until_ms")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        # The next try is the last before the caller's deadline (see `RedisLock._wait`).
        self.last = False
        # The lock clock's reading right before the request that got the last reply
        # went out (after connecting, and after a NOSCRIPT round).
        self.sent_at: float | None = None
        self.pttl = -2
        # Whether the server may know this owner (queued, or a reply was lost).
        self.queued = False
        # The latest server-clock deadline of a request sent (see `LUA_GONE`).
        self.until_ms = 0

    def sending(self, until_ms: int) -> None:
        self.until_ms = max(self.until_ms, until_ms)


class RedisLock(BaseLock):
    """A distributed lock on one Redis server (or a Redis Cluster slot) with fencing.

    Args:
        client: a `redis.Redis` you configured (TLS, ACL, database, pool
            size); the lock carries its pool settings over to a private pool
            with retries off and timeouts set per call.
        name: the lock's name.
        ttl: seconds a lease lasts unless extended or renewed.
        op_timeout: the most any single Redis call may take before
            `BackendUnavailableError`.
        waiter_ttl: a waiter that stops refreshing its place for this long is
            dropped from the queue; it refreshes every `waiter_ttl / 3`.
        claim_window: seconds a waiter offered the lock on release has to
            claim it (at most `ttl`); a paused or dead waiter holds the lock
            up no longer than this.
        reentrant: let the owning thread acquire again, counted.
        auto_renew: extend the lease every `ttl / 3` while held and the
            thread that acquired it lives.
        on_lost: called once with a lease when it is found lost.
        clock: monotonic seconds (inject a FakeClock in tests).

    Raises:
        ConfigurationError: empty `name`, or `ttl`, `op_timeout`, `waiter_ttl`
            or `claim_window` <= 0.
        ArgumentTypeError: `client` is not a synchronous redis-py client.

    Guarantees (see docs/locking.md for the assumptions): mutual exclusion
    while the server keeps the lock key (persistence, `noeviction`); tokens
    strictly increase per name, also across eviction or loss of the
    counter; a lease's local deadline is never later than the server's
    expiry (up to clock drift); FIFO service of blocking waiters.

    Bounds: `acquire(timeout=t)` returns or raises within `t` plus 0.1 s;
    `acquire(blocking=False)`, `release` and `extend` within `op_timeout`
    plus 0.1 s.

    Requires Redis 7.0 or later (the scripts carry a `#!lua` shebang).

    Thread-safe. Cost: acquire and release are one round trip each when
    uncontended (plus, once per client every 30 s, a `TIME` round trip that
    measures the server clock's offset for the requests' deadlines); a
    waiter spends one BLPOP per wake-up and one round trip to claim the
    lock.
    """

    _KEY_PREFIX = "scalekit:lock:"
    _duration = staticmethod(redis_seconds)
    _KEY_SUFFIXES: tuple[str, ...] = ("", ":fence", ":queue", ":waiters", ":ttls")
    _SCRIPTS = {"acquire": _ACQUIRE, "release": _RELEASE, "abandon": _ABANDON, "extend": _EXTEND}
    # Whether the acquire script's last try before a deadline ('L') also leaves the queue.
    _LAST_TRY_LEAVES = True

    def __init__(
        self,
        client: Redis | RedisCluster,
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
        super().__init__(
            name,
            ttl=redis_seconds("ttl", ttl),  # a lease without a ttl would never end here
            reentrant=reentrant,
            auto_renew=auto_renew,
            on_lost=on_lost,
            clock=clock,
        )
        self.op_timeout = redis_seconds("op_timeout", op_timeout)
        self.waiter_ttl = redis_seconds("waiter_ttl", waiter_ttl)
        self.claim_window = redis_seconds("claim_window", claim_window)
        self._calls = RedisCalls(check_redis("client", client), self.op_timeout)
        base = f"{self._KEY_PREFIX}{{{self.name}}}"
        check_hash_tag("name", self.name, base)
        self._keys = [base + suffix for suffix in self._KEY_SUFFIXES]
        self._wake_prefix = base + ":wake:"
        self._extra: list[Any] = []
        self._waiter_ms = max(int(self.waiter_ttl * 1000), 1)
        assert self.ttl is not None
        self._claim_ms = max(int(min(self.claim_window, self.ttl) * 1000), 1)

    def _budget(self, deadline: float | None) -> float:
        """The time one request may take: `op_timeout`, or less when *deadline* is nearer."""
        if deadline is None:
            return self.op_timeout
        # A try at the deadline still gets one reply's time: with 1 ms it would fail on
        # any loaded host and drop its connection, and the clean-up would have to reconnect.
        return max(min(self.op_timeout, deadline - self._clock()), _REPLY_SLACK)

    def _new_attempt(self, owner: str) -> Any:
        return _Attempt(owner)

    def _do_acquire(self, attempt: Any, blocking: bool, deadline: float | None) -> Grant | None:
        assert self.ttl is not None
        attempt.queued = True  # until the reply says otherwise
        last, attempt.last = attempt.last, False
        budget = self._budget(deadline)
        mode = "1" if blocking else "0"
        extra = self._extra
        leaves = last and deadline is not None and blocking and self._LAST_TRY_LEAVES
        if last and deadline is not None:
            # Sent (at most) one reply's time before the deadline: its reply is due by
            # the deadline plus that time, as a try sent at the deadline was.
            budget = max(deadline - self._clock(), 0.0) + _REPLY_SLACK
        if leaves:
            # Refused, this try leaves the queue itself: no clean-up round trip follows,
            # so its reply has the clean-up's time too. One round trip, not two, after
            # the deadline: a loaded host had the second overrun its short budget
            # (and drop its connection) far more often than one.
            mode, extra = "L", [*extra, attempt.until_ms]
            budget += CLEANUP_BUDGET

        def sent() -> None:
            attempt.sent_at = self._clock()

        attempt.sent_at = None
        reply = self._calls.script(
            self._SCRIPTS["acquire"],
            self._keys,
            [
                attempt.owner,
                max(int(self.ttl * 1000), 1),
                mode,
                self._waiter_ms,
                self._wake_prefix,
                self._claim_ms,
                *extra,
            ],
            timeout=budget,
            on_send=sent,
            expires=attempt.sending,
        )
        self._refuse(reply)
        if int(reply[0]) == 1:
            # Valid for the PTTL the server reported, counted from before the request.
            return int(reply[1]), int(reply[2]) / 1000
        attempt.pttl = int(reply[1])
        attempt.queued = blocking and not leaves
        if last and deadline is not None:
            # No try after the last one: the caller waits the timeout out and times out.
            left = deadline - self._clock()
            if left > 0:
                time.sleep(left)
        return None

    def _refuse(self, reply: Any) -> None:
        """Raise if the acquire script refused this client's configuration (a semaphore's n)."""

    def _sent_at(self, attempt: Any) -> float | None:
        return attempt.sent_at  # type: ignore[no-any-return]

    def _wait(self, attempt: Any, timeout: float | None) -> None:
        wait, exact = listen_time(self.waiter_ttl / 3, attempt.pttl, timeout)
        if exact:
            # The listen must end on time (the caller's deadline, the lease's end), but
            # Redis fires BLPOP timeouts on its timer tick, up to REDIS_TICK late: ask
            # for one tick less and wait out the rest here. A nudge sent meanwhile is
            # not lost: the retry that follows claims the offer.
            listen = wait - REDIS_TICK - _REPLY_SLACK
            if listen < 0.01:
                if timeout is not None and wait >= timeout:
                    # The last try before the caller's deadline goes out one reply's
                    # time early: sent at the deadline with only that time, it failed
                    # on a loaded host and dropped its connection.
                    time.sleep(max(wait - _REPLY_SLACK, 0.0))
                    attempt.last = True
                    return
                time.sleep(wait)
                return
            wait = listen
        budget = wait + self.op_timeout
        if timeout is not None:
            budget = min(budget, timeout + _REPLY_SLACK)
        # A nudge is only a reason to try again: the lock is not ours until claimed.
        # Without a connection to listen on (waiters hold all but one), poll
        # within the claim window so an offer made meanwhile is still claimed. A
        # listen that fails as the caller's deadline passes is a timeout (the acquire
        # loop tells it from an outage).
        self._calls.listen(self._wake_prefix + attempt.owner, wait, budget, self.claim_window / 2)

    def _abandon(self, attempt: Any, budget: float) -> None:
        if not attempt.queued:
            return
        self._calls.script(
            self._SCRIPTS["abandon"],
            self._keys,
            [
                attempt.owner,
                self._wake_prefix,
                self._waiter_ms,
                self._claim_ms,
                *self._extra,
                attempt.until_ms,
            ],
            timeout=budget,
        )
        attempt.queued = False

    def _cleanup_window(self) -> float | None:
        assert self.ttl is not None
        return max(self.ttl, self.waiter_ttl)

    def _do_release(self, lease: Lease) -> bool:
        args = [lease.owner, self._wake_prefix, self._waiter_ms, self._claim_ms, *self._extra]
        return int(self._calls.script(self._SCRIPTS["release"], self._keys, args)) == 1

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        assert ttl is not None
        args = [lease.owner, max(int(ttl * 1000), 1)]
        return int(self._calls.script(self._SCRIPTS["extend"], self._keys, args)) == 1

    def locked(self) -> bool:
        """True while some owner holds the lock. One round trip."""
        return int(self._calls.call("EXISTS", self._keys[0])) == 1
