"""Redlock: a lock held on a majority of independent Redis masters.

The algorithm of "Distributed Locks with Redis" (redis.io): try every
master in turn with a short per-master timeout; the lock is held when a
majority (`N // 2 + 1`) granted it and the time left,
`validity = ttl - elapsed - drift`, is positive; otherwise release on
every master and retry after a random delay.

Fencing tokens take a second round: each master that granted the lock
returns the next value of its own counter; the token is their maximum,
written back (owner-checked) to every granting master as the new floor of
its counter. Any later majority shares a master with this one, whose
counter is then past the token, so tokens strictly increase as long as the
masters keep their data.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._validation import fraction, positive_number
from ..exceptions import BackendError, BackendUnavailableError, ConfigurationError
from ._clients import check_hash_tag, check_redis_list, redis_seconds

try:
    from ._redis_calls import LUA_GONE, LUA_NEXT_TOKEN, LUA_REFUSE_LATE, RedisCalls, Script
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc
from .base import BaseLock, Grant, Lease, OnLost

__all__ = ["Redlock"]

_log = logging.getLogger(__name__)

_ACQUIRE = Script(
    LUA_NEXT_TOKEN
    + LUA_GONE
    + LUA_REFUSE_LATE
    + """
-- ARGV: this round's value, ttl ms, the attempt's prefix, this round's number,
-- the request's deadline (server ms, see `LUA_GONE`).
-- A round that failed and was released takes nothing when its request arrives late.
if is_gone(ARGV[1]) then return {0, redis.call('PTTL', KEYS[1])} end
-- A key left by an earlier round of the same attempt (its reply lost) is taken
-- over; a key of a later round (this request arrived late) is not.
local current = redis.call('GET', KEYS[1])
if current then
  local prefix = ARGV[3]
  if string.sub(current, 1, #prefix) ~= prefix
      or (tonumber(string.sub(current, #prefix + 1)) or math.huge) >= tonumber(ARGV[4]) then
    return {0, redis.call('PTTL', KEYS[1])}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, next_token()}
"""
)

# ARGV: the round's value, the token. Raises the counter of every master that
# answers to the token (one that did not grant too: then every master that
# answers knows it), and confirms the grant where the key names the round.
_COMMIT = Script("""
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return 1
""")

# Raise the counter to the lease's token (ARGV[#ARGV]): the extensions and
# the release carry it to every master that answers, also to one that was
# down when the lease was granted.
_LUA_FLOOR = """
local floor = tonumber(ARGV[#ARGV])
if tonumber(redis.call('GET', KEYS[2]) or '0') < floor then
  redis.call('SET', KEYS[2], ARGV[#ARGV])
end
"""

# ARGV: owner, token.
_RELEASE = Script(
    _LUA_FLOOR
    + """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
    "allow-oom",
)

# The clean-up of a failed round: release it, and mark it gone until its
# request's deadline on this master (ARGV[2], see `LUA_GONE`).
_ABANDON = Script(
    LUA_GONE
    + """
mark_gone(ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""",
    "allow-oom",
)

# ARGV: owner, ttl ms, token.
_EXTEND = Script(
    _LUA_FLOOR
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
""",
    "allow-oom",
)


# A master not asked, or cut off, because the caller's deadline came first.
_CUT_SHORT = object()

# The least time left to the caller's deadline for which a master is still
# asked: a call with less cannot get a reply on a loaded host, and a round
# at the deadline would otherwise start N such calls (each taking a pooled
# connection, or connecting) and overrun the deadline by their sum.
_MIN_CALL = 0.01


class _Attempt:
    """One acquire call: its owner token, and the value of its current round."""

    __slots__ = ("outage", "owner", "rounds", "value")

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.rounds = 0
        self.value = owner
        # What the last round that asked a master found, when too few answered.
        self.outage = ""

    def next_round(self) -> str:
        """The key value of the next round: the owner token and the round's number."""
        self.rounds += 1
        self.value = f"{self.owner}:{self.rounds}"
        return self.value


class Redlock(BaseLock):
    """A lock over N independent Redis masters (a majority must agree).

    Args:
        clients: one `redis.Redis` per master (N >= 1; use an odd N >= 3).
        name: the lock's name.
        ttl: seconds a lease lasts on each master.
        instance_timeout: the most one master may take per call; keep it
            small next to *ttl* so a dead master costs little.
        drift_factor: clock drift allowance as a fraction of *ttl*
            (plus 2 ms), subtracted from the validity time.
        retry_delay: a failed round is retried after a random delay in
            `[0, retry_delay]` seconds, so competing clients desynchronise.
        rng: the random source of that delay.
        reentrant: let the owning thread acquire again, counted.
        auto_renew: extend the lease every `ttl / 3` while held and the
            thread that acquired it lives.
        on_lost: called once with a lease when it is found lost.
        clock: monotonic seconds (inject a FakeClock in tests).

    Raises:
        ConfigurationError: no clients, empty *name*, non-positive times.
        ArgumentTypeError: `clients` is not a list of synchronous redis-py
            clients (the message names the first bad entry).

    Guarantees: safety assumes bounded clock drift between the masters and
    the client and that masters keep their keys (persistence, or a restart
    delayed by ttl). See docs/locking.md.

    Thread-safe. Cost: two rounds over N masters per acquire, one to release.
    """

    _duration = staticmethod(redis_seconds)

    def __init__(
        self,
        clients: Sequence[Any],
        name: str,
        *,
        ttl: float = 10.0,
        instance_timeout: float = 0.1,
        drift_factor: float = 0.01,
        retry_delay: float = 0.05,
        rng: random.Random | None = None,
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
        check_redis_list("clients", clients)
        if len(clients) == 0:
            raise ConfigurationError(f"clients must list at least one Redis, got {clients!r}")
        self.instance_timeout = positive_number("instance_timeout", instance_timeout)
        self.drift_factor = fraction("drift_factor", drift_factor)
        self.retry_delay = positive_number("retry_delay", retry_delay)
        self._rng = rng if rng is not None else random.Random()
        self._masters = [RedisCalls(c, self.instance_timeout) for c in clients]
        self.quorum = len(self._masters) // 2 + 1
        base = f"scalekit:redlock:{{{self.name}}}"
        check_hash_tag("name", self.name, base)
        self._keys = [base, base + ":fence"]
        # Failed rounds' values still to release, per master that did not answer,
        # with the time after which their keys have expired anyway.
        # (and the deadline of the round's request on that master's clock).
        self._pending: dict[RedisCalls, dict[str, tuple[float, int]]] = {}
        self._pending_lock = threading.Lock()
        self._cleaner: threading.Thread | None = None

    def _drift(self, ttl: float) -> float:
        return ttl * self.drift_factor + 0.002

    def _call_bound(self) -> float:
        return self.instance_timeout * len(self._masters)

    def _lease_ttl(self, ttl: float | None) -> float | None:
        assert ttl is not None
        return ttl - self._drift(ttl)

    def _each(
        self,
        script: Script,
        args: list[Any],
        deadline: float | None = None,
        results: list[Any] | None = None,
        untils: dict[RedisCalls, int] | None = None,
    ) -> list[Any]:
        """Run *script* on every master in turn; a master that fails yields None.

        Each call takes at most `instance_timeout`, and none starts or runs
        past *deadline* (the lock clock's time), nor starts with less than
        `_MIN_CALL` left to it. A master's error reply is logged and counts
        as no answer from that master: one faulty master never decides for
        the others. The answers are appended to *results* as they come, so
        a caller sees those given before an unexpected exception. With
        *untils* (an acquire round), each request carries its deadline on
        its master's clock, recorded there per master (see `LUA_GONE`).
        """
        if results is None:
            results = []
        for master in self._masters:
            expires = None
            if untils is not None:

                def expires(ms: int, master: RedisCalls = master) -> None:
                    untils[master] = max(untils.get(master, 0), ms)

            budget = self.instance_timeout
            if deadline is not None:
                budget = min(budget, deadline - self._clock())
            if budget < min(_MIN_CALL, self.instance_timeout):
                results.append(_CUT_SHORT)
                continue
            try:
                results.append(
                    master.script(script, self._keys, args, timeout=budget, expires=expires)
                )
            except BackendUnavailableError:
                # Silent within the caller's deadline rather than its own bound: not a verdict.
                results.append(_CUT_SHORT if budget < self.instance_timeout else None)
            except BackendError as exc:
                _log.warning("Redis master of lock %r answered an error: %s", self.name, exc)
                results.append(None)
        return results

    def _new_attempt(self, owner: str) -> Any:
        return _Attempt(owner)

    def _lease_owner(self, attempt: Any, owner: str) -> str:
        return attempt.value  # type: ignore[no-any-return]

    def _release_on(
        self, owner: str, answers: list[Any], untils: dict[RedisCalls, int] | None = None
    ) -> None:
        """Release on every master that may hold *owner*'s key after a failed round.

        Masters that answered are released now (they answer fast); those that
        did not (their grant's reply may have been lost) in the background.
        *owner* is the round's own value: a later round's grant never matches it.
        *untils* holds the deadline of the round's request per master: until
        then the clean-up marks the value gone there (see `LUA_GONE`).
        """
        untils = {} if untils is None else untils
        silent = [
            m for m, r in zip(self._masters, answers, strict=True) if r is None or r is _CUT_SHORT
        ]
        for master, answer in zip(self._masters, answers, strict=True):
            if answer is not None and answer is not _CUT_SHORT and int(answer[0]) == 1:
                with contextlib.suppress(BackendError):
                    master.script(
                        _ABANDON,
                        self._keys,
                        [owner, untils.get(master, 0)],
                        timeout=self.instance_timeout,
                    )
        if silent:
            assert self.ttl is not None
            until = time.monotonic() + self.ttl
            with self._pending_lock:
                for master in silent:
                    self._pending.setdefault(master, {})[owner] = (until, untils.get(master, 0))
                if self._cleaner is None or not self._cleaner.is_alive():
                    self._cleaner = threading.Thread(
                        target=self._release_later,
                        daemon=True,
                        name=f"scalekit-cleanup:{self.name}",
                    )
                    self._cleaner.start()

    def _release_later(self) -> None:
        """Release the failed rounds' values on the masters that did not answer.

        One thread per lock serves every failed round (a thread per round
        used to pile up while the masters were down, each retrying for a
        ttl, and their calls competed with the caller's acquire for the
        interpreter and overran its deadline). A value is dropped once
        released or after the ttl it was granted with; a master still
        silent is tried again on the next pass, every 0.1 s.
        """
        while True:
            with self._pending_lock:
                now = time.monotonic()
                for master in list(self._pending):
                    values = {v: e for v, e in self._pending[master].items() if e[0] > now}
                    if values:
                        self._pending[master] = values
                    else:
                        del self._pending[master]
                if not self._pending:
                    self._cleaner = None
                    return
                work = [(master, list(values.items())) for master, values in self._pending.items()]
            for master, todo in work:
                for value, (_, until_ms) in todo:
                    try:
                        master.script(
                            _ABANDON, self._keys, [value, until_ms], timeout=self.instance_timeout
                        )
                    except BackendError as exc:
                        # Still silent, or an error reply: the next pass tries it again.
                        _log.debug("clean-up of lock %r not done yet: %s", self.name, exc)
                        break
                    with self._pending_lock:
                        self._pending.get(master, {}).pop(value, None)
            time.sleep(0.1)

    def _do_acquire(self, attempt: Any, blocking: bool, deadline: float | None) -> Grant | None:
        assert self.ttl is not None
        started = self._clock()
        ttl_ms = max(int(self.ttl * 1000), 1)
        # A value of its own per round: the clean-up of an earlier round (which may run
        # in the background) compares against that round's value, so it can never
        # delete a key a later round of the same acquire was granted.
        owner = attempt.next_round()
        answers: list[Any] = []
        untils: dict[RedisCalls, int] = {}
        won = False
        try:
            self._each(
                _ACQUIRE,
                [owner, ttl_ms, attempt.owner + ":", attempt.rounds],
                deadline,
                answers,
                untils,
            )
            grant = self._settle(attempt, owner, answers, started, deadline)
            won = grant is not None
            return grant
        finally:
            if not won:
                # Whatever ended the round, its grants are released: a master not
                # reached yet counts as silent (the background tries it).
                answers.extend([None] * (len(self._masters) - len(answers)))
                self._release_on(owner, answers, untils)

    def _settle(
        self, attempt: Any, owner: str, answers: list[Any], started: float, deadline: float | None
    ) -> Grant | None:
        """The grant of a round whose *answers* are in, or None; raises on an outage."""
        assert self.ttl is not None
        granted = [r for r in answers if r is not None and r is not _CUT_SHORT and int(r[0]) == 1]
        if len(granted) >= self.quorum:
            token = max(int(r[1]) for r in granted)
            committed = sum(
                1
                for r in self._each(_COMMIT, [owner, token], deadline)
                if r is not None and r is not _CUT_SHORT and int(r) == 1
            )
            validity = self.ttl - (self._clock() - started) - self._drift(self.ttl)
            if committed >= self.quorum and validity > 0:
                # Every key was set after the caller's clock reading: count from there.
                return token, self.ttl - self._drift(self.ttl)
        reachable = sum(1 for r in answers if r is not None and r is not _CUT_SHORT)
        if reachable < self.quorum:
            # Without a quorum of answers this round says nothing about the lock: an
            # outage (or the caller's deadline, which the acquire loop tells apart by
            # whether the masters answered earlier), not "held".
            cut = answers.count(_CUT_SHORT)
            if cut and attempt.outage:
                # The deadline cut this round short: report what the last whole round found.
                raise BackendUnavailableError(
                    f"{attempt.outage} (no time was left for another round)"
                )
            attempt.outage = (
                f"only {reachable} of {len(self._masters)} Redis masters answered for lock "
                f"{self.name!r}; {self.quorum} are needed"
                + (f" ({cut} not asked or cut short at the caller's deadline)" if cut else "")
            )
            raise BackendUnavailableError(attempt.outage)
        return None

    def _wait(self, attempt: Any, timeout: float | None) -> None:
        delay = self._rng.uniform(0, self.retry_delay)
        time.sleep(delay if timeout is None else min(delay, timeout))

    def _abandon(self, attempt: Any, budget: float) -> None:
        """Nothing to undo: a failed round already released on every master."""

    def _decide(self, what: str, answers: list[Any]) -> bool:
        """True when a quorum confirmed; False when too many masters deny ownership.

        Between the two (masters that did not answer keep the outcome open)
        the lease is not declared lost: `BackendUnavailableError`.
        """
        confirmed = sum(1 for r in answers if r is not None and r is not _CUT_SHORT and int(r) == 1)
        denied = sum(1 for r in answers if r is not None and r is not _CUT_SHORT and int(r) == 0)
        if confirmed >= self.quorum:
            return True
        if denied > len(self._masters) - self.quorum:
            return False  # no quorum can hold this owner's key any more
        raise BackendUnavailableError(
            f"{what} of lock {self.name!r} confirmed on {confirmed} of {len(self._masters)} "
            f"Redis masters, {len(answers) - confirmed - denied} did not answer; "
            f"{self.quorum} are needed"
        )

    def _do_release(self, lease: Lease) -> bool:
        return self._decide("release", self._each(_RELEASE, [lease.owner, lease.token]))

    def _do_extend(self, lease: Lease, ttl: float | None) -> bool:
        assert ttl is not None
        answers = self._each(_EXTEND, [lease.owner, max(int(ttl * 1000), 1), lease.token])
        return self._decide("extension", answers)

    def locked(self) -> bool:
        """True while a majority of the masters hold the lock's key. One call per master."""
        held = 0
        for master in self._masters:
            with contextlib.suppress(BackendUnavailableError):
                held += int(master.call("EXISTS", self._keys[0]))
        return held >= self.quorum
