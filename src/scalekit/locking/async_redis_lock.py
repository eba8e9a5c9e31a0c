"""RedisLock for asyncio on `redis.asyncio`: the owner is the task, not the thread.

The same keys and Lua scripts as `RedisLock`, so
sync and async clients of one name exclude each other, share the fencing
counter and wait in one FIFO queue. Every call is bounded by
`asyncio.wait_for(..., op_timeout)` (redis.asyncio's own retries would
otherwise stretch an outage), and re-entrancy and `async with lock:`
are counted per `asyncio.current_task()`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .._validation import flag, non_empty_str, non_negative_number
from ..exceptions import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    LockLostError,
    LockNotOwnedError,
    LockTimeoutError,
)
from ..observability import _emit
from ._clients import check_async_redis, check_hash_tag, redis_seconds
from ._redis_calls import LATE_REPLY, TIME_SCRIPT, Script, is_transient, server_clock
from .base import CLEANUP_BUDGET, _Outage
from .lease import _NOTIFIER, _WATCHDOG, Lease
from .redis_lock import (
    _ABANDON,
    _ACQUIRE,
    _EXTEND,
    _RELEASE,
    _REPLY_SLACK,
    REDIS_TICK,
    listen_time,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis as AsyncRedis
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

__all__ = ["AsyncLease", "AsyncRedisLock"]

# An `on_lost` callback of AsyncRedisLock: a function, or an `async def` one (awaited).
AsyncOnLost = Callable[[Lease], "Awaitable[None] | None"]

_log = logging.getLogger("scalekit.locking")

# Renewal tasks, kept so the loop does not drop them mid-flight.
_RENEWALS: set[asyncio.Task[None]] = set()


class AsyncLease(Lease):
    """A `Lease` whose `release` and `extend` are coroutines.

    `lost.is_set()` is safe to call from the event loop; do not call the
    blocking `lost.wait()` there.
    """

    __slots__ = ()

    async def release(self) -> None:  # type: ignore[override]
        """Release this lease; see `AsyncRedisLock.release()`."""
        await cast("AsyncRedisLock", self._lock).release(self)

    async def extend(self, ttl: float | None = None) -> None:  # type: ignore[override]
        """Reset the lease to *ttl* from now; see `AsyncRedisLock.extend()`."""
        await cast("AsyncRedisLock", self._lock).extend(self, ttl)

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._released:
            await self.release()


class AsyncRedisLock:
    """A fair, fenced Redis lock for asyncio code, owned per task.

    Args:
        client: a `redis.asyncio.Redis` you configured.
        name: the lock's name (the same keys as [RedisLock][scalekit.locking.RedisLock]).
        ttl: seconds a lease lasts unless extended or renewed.
        op_timeout: the most any single Redis call may take before
            `BackendUnavailableError`.
        waiter_ttl: a waiter silent this long is dropped from the queue.
        claim_window: seconds a waiter offered the lock on release has to
            claim it (at most `ttl`).
        reentrant: let the owning task acquire again, counted.
        auto_renew: extend the lease every `ttl / 3` in a background task,
            retrying any error but "not the owner" until the deadline.
        on_lost: called once with a lease when it is found lost, on the event
            loop that acquired it (on a notifier thread once that loop closed).
            An `async def` callback is awaited: as a task on that loop, or
            (the loop closed) to completion in a loop of its own on the
            notifier thread. What it raises is logged.
        clock: monotonic seconds.

    Raises:
        ConfigurationError: empty `name`, or non-positive `ttl`, `op_timeout`,
            `waiter_ttl` or `claim_window`.
        ArgumentTypeError: `client` is not a `redis.asyncio` client.

    Bounds as [RedisLock][scalekit.locking.RedisLock]'s. Not thread-safe: use
    one instance per event loop. Cost: one round trip to acquire or release
    when uncontended.
    """

    def __init__(
        self,
        client: AsyncRedis | AsyncRedisCluster,
        name: str,
        *,
        ttl: float = 10.0,
        op_timeout: float = 2.0,
        waiter_ttl: float = 3.0,
        claim_window: float = 0.5,
        reentrant: bool = False,
        auto_renew: bool = False,
        on_lost: AsyncOnLost | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = non_empty_str("name", name)
        self.ttl = redis_seconds("ttl", ttl)
        self.op_timeout = redis_seconds("op_timeout", op_timeout)
        self.waiter_ttl = redis_seconds("waiter_ttl", waiter_ttl)
        self.reentrant = bool(reentrant)
        self.auto_renew = bool(auto_renew)
        self.on_lost = on_lost
        self._clock = clock
        self._client = check_async_redis("client", client)
        base = f"scalekit:lock:{{{self.name}}}"
        check_hash_tag("name", self.name, base)
        self._keys = [base, base + ":fence", base + ":queue", base + ":waiters", base + ":ttls"]
        self._wake = base + ":wake:"
        self._waiter_ms = max(int(self.waiter_ttl * 1000), 1)
        self.claim_window = redis_seconds("claim_window", claim_window)
        self._claim_ms = max(int(min(self.claim_window, self.ttl) * 1000), 1)
        self._held: dict[Any, AsyncLease] = {}
        self._stacks: dict[Any, list[AsyncLease]] = {}
        self._loops: weakref.WeakKeyDictionary[AsyncLease, asyncio.AbstractEventLoop] = (
            weakref.WeakKeyDictionary()
        )
        # Whether the client's pool held an open connection after our last call.
        self._seen_open = False

    # -- bounded calls ------------------------------------------------------
    async def _call(self, *args: Any, timeout: float | None = None) -> Any:
        wait = self.op_timeout if timeout is None else max(timeout, 0.001)
        # A client whose pool had an open connection after one of our calls and has
        # none now (none in use either) was closed by its owner (`aclose()`):
        # redis.asyncio reopens it for this call, and we close it again after, or
        # the connection would stay open (and warn when collected) with nobody
        # left to close it. (A call of ours that failed on the connection resets
        # this: redis-py drops a failed connection too.)
        before = _pool_open(self._client)
        closed = before is False and self._seen_open
        failed = True
        try:
            reply = await _bounded(self._client.execute_command(*args), wait)
            failed = False
            return reply
        except NoScriptError:
            failed = False
            raise
        except (asyncio.TimeoutError, RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BackendUnavailableError(
                f"redis did not answer {args[0]} for lock {self.name!r} within {wait}s: {exc!r}"
            ) from exc
        except RedisError as exc:
            if str(exc).startswith(LATE_REPLY):
                raise _Late(
                    f"redis refused {args[0]} for lock {self.name!r} as late: {exc}"
                ) from exc
            if is_transient(exc):
                raise BackendUnavailableError(
                    f"redis cannot serve {args[0]} for lock {self.name!r} now: {exc}"
                ) from exc
            raise BackendError(f"redis failed {args[0]} for lock {self.name!r}: {exc}") from exc
        finally:
            if closed:
                await self._close_again()
            elif before is not None:
                self._seen_open = not failed and bool(_pool_open(self._client))

    async def _close_again(self) -> None:
        """Close the client's idle connections, as its owner had, after a call reopened it.

        Connections in use are left to their calls (a concurrent call of ours
        that found the client closed closes its own after it). Within
        `CLEANUP_BUDGET` (closing is local: no reply is awaited), so the
        call keeps its bound.
        """
        client = self._client

        async def close() -> None:
            # A single-connection client gives its connection back to the pool first.
            await client.aclose(close_connection_pool=False)
            await client.connection_pool.disconnect(inuse_connections=False)

        try:
            await _bounded(close(), CLEANUP_BUDGET)
        except (asyncio.TimeoutError, RedisError, OSError) as exc:
            _log.debug("could not close the client of %r again: %r", self.name, exc)

    async def _script(
        self,
        script: Script,
        args: list[Any],
        timeout: float | None = None,
        on_send: Callable[[], None] | None = None,
        expires: Callable[[int], None] | None = None,
    ) -> Any:
        """Run *script* (EVALSHA, then EVAL on NOSCRIPT) within *timeout* in all.

        *on_send* is called before each of the two requests, so its last call
        precedes the request whose reply is returned. With *expires*, the
        request carries its deadline on the server's clock, as in
        `RedisCalls.script`.
        """
        end = time.monotonic() + (self.op_timeout if timeout is None else max(timeout, 0.001))
        if expires is None:
            return await self._run(script, args, end, on_send)
        clock = server_clock(self._client)
        for last_try in (False, True):
            if clock.stale():
                sent = time.monotonic()
                clock.note(sent, await self._run(TIME_SCRIPT, [], end, None, self._keys[:1]))
            limit = clock.deadline_ms(end)
            expires(limit)
            try:
                return await self._run(script, [*args, limit], end, on_send)
            except _Late:
                clock.measured = float("-inf")  # the server's clock stepped ahead
                if last_try or end - time.monotonic() < 0.02:
                    raise
        raise AssertionError("unreachable")

    async def _run(
        self,
        script: Script,
        args: list[Any],
        end: float,
        on_send: Callable[[], None] | None,
        keys: list[str] | None = None,
    ) -> Any:
        keys = self._keys if keys is None else keys
        try:
            if on_send is not None:
                on_send()
            left = max(end - time.monotonic(), 0.001)
            return await self._call("EVALSHA", script.sha, len(keys), *keys, *args, timeout=left)
        except NoScriptError:
            left = max(end - time.monotonic(), 0.001)
            if on_send is not None:
                on_send()
            return await self._call("EVAL", script.source, len(keys), *keys, *args, timeout=left)

    def _new_owner_token(self) -> str:
        return os.urandom(16).hex()

    def _budget(self, deadline: float | None) -> float:
        """The time one request may take: `op_timeout`, or less when *deadline* is nearer."""
        if deadline is None:
            return self.op_timeout
        # A try at the deadline still gets one reply's time: with 1 ms it would fail on
        # any loaded host and drop its connection, and the clean-up would have to reconnect.
        return max(min(self.op_timeout, deadline - self._clock()), _REPLY_SLACK)

    async def _give_up(self, owner: str, silent: bool, until_ms: int) -> None:
        """Leave the queue within `CLEANUP_BUDGET`; if Redis is slow (*silent*), in a task.

        *until_ms* is the last deadline of the attempt's requests (see `LUA_GONE`).
        """
        args = [owner, self._wake, self._waiter_ms, self._claim_ms, until_ms]
        try:
            if silent:
                raise BackendUnavailableError("redis did not answer the attempt")
            await self._script(_ABANDON, args, timeout=CLEANUP_BUDGET)
        except (BackendError, asyncio.CancelledError) as exc:
            # Any backend error, not only silence: the caller gets its own outcome and
            # the clean-up goes on in a task.
            _log.debug("clean-up of %r goes on in the background: %r", self.name, exc)
            task = asyncio.get_running_loop().create_task(self._abandon_later(args))
            _RENEWALS.add(task)
            task.add_done_callback(_RENEWALS.discard)

    async def _abandon_later(self, args: list[Any]) -> None:
        # As `BaseLock._abandon_later`: each try may take all the time left, so a slow
        # link's handshake (several round trips) does not fail every try.
        end = time.monotonic() + max(self.ttl, self.waiter_ttl)
        while time.monotonic() < end:
            try:
                left = max(end - time.monotonic(), 0.001)
                await self._script(_ABANDON, args, timeout=left)
                return
            except BackendError:  # silent, or an error reply (OOM): try again
                await asyncio.sleep(0.1)
        _log.debug("could not leave the queue of %r", self.name)

    # -- the protocol -------------------------------------------------------
    async def acquire(
        self, blocking: bool = True, timeout: float | None = None
    ) -> AsyncLease | None:
        """Acquire the lock; the semantics of `BaseLock.acquire()`, owned by the task.

        Raises:
            ArgumentTypeError: *blocking* is not a bool, or *timeout* not a number.
            ConfigurationError: *timeout* < 0, or a timeout without blocking.
            LockTimeoutError: not acquired within *timeout*.
            BackendUnavailableError: Redis did not answer within `op_timeout`.
        """
        blocking = flag("blocking", blocking)
        if timeout is not None:
            timeout = non_negative_number("timeout", timeout)
            if not blocking:
                raise ConfigurationError(
                    f"timeout must be None when blocking is False, got {timeout!r}"
                )
        task = asyncio.current_task()
        if self.reentrant:
            held = self._held.get(task)
            if held is not None and not held._released and not held.lost.is_set():
                held._depth += 1
                return held
        begun = self._clock()
        waited = False  # for the metrics: a grant after listening for a release is a hand-over
        failed: BaseException | None = None
        deadline = None if timeout is None else self._clock() + timeout
        owner = self._new_owner_token()
        ttl_ms = max(int(self.ttl * 1000), 1)
        grant: tuple[int, float] | None = None
        queued = False
        until = [0]  # the latest deadline (server ms) of a request sent (see `LUA_GONE`)
        silent = False  # Redis just failed to answer: leave the queue in the background
        retry = _Outage(self._clock, deadline, self.op_timeout, self.name)
        last = False  # the next try is the last before the deadline (as in RedisLock)
        try:
            while True:
                started = self._clock()  # before the request whose reply may be the grant
                sent = [started]
                queued = True  # the server may know us until a reply says otherwise
                mode, extra = ("1" if blocking else "0"), []
                budget: float = self._budget(retry.window())
                if last and deadline is not None:
                    # As RedisLock's last try: refused, it leaves the queue in the same
                    # script, so its reply has the clean-up's time too.
                    mode, extra = "L", [until[0]]
                    budget = max(deadline - self._clock(), 0.0) + _REPLY_SLACK + CLEANUP_BUDGET
                last = False
                args = [owner, ttl_ms, mode, self._waiter_ms, self._wake]
                try:
                    reply = await self._script(
                        _ACQUIRE,
                        [*args, self._claim_ms, *extra],
                        timeout=budget,
                        on_send=functools.partial(_note_time, sent, self._clock),
                        expires=functools.partial(_note_until, until),
                    )
                except BackendUnavailableError as exc:
                    silent = True
                    if not blocking:
                        raise
                    pause = retry.next_pause(exc)
                    if pause is not None:
                        await asyncio.sleep(pause)
                        if retry.in_time():
                            continue  # same owner token: a grant whose reply was lost is ours
                    if retry.cut_short(started):
                        raise LockTimeoutError(
                            f"lock {self.name!r} was not acquired within {timeout}s: {exc}",
                            self.name,
                        ) from exc
                    raise
                retry.answered()
                silent = False
                if int(reply[0]) == 1:
                    # Valid for the PTTL the server reported, counted from before the request
                    # that got it (after a NOSCRIPT round).
                    started = sent[-1]
                    grant = int(reply[1]), int(reply[2]) / 1000
                    break
                queued = blocking and mode != "L"
                if not blocking:
                    break
                if mode == "L":
                    # No try after the last one: wait the timeout out and time out.
                    assert deadline is not None
                    await asyncio.sleep(max(deadline - self._clock(), 0.0))
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    raise LockTimeoutError(
                        f"lock {self.name!r} was not acquired within {timeout}s", self.name
                    )
                wait, exact = listen_time(self.waiter_ttl / 3, int(reply[1]), remaining)
                if exact:
                    # As RedisLock._wait: Redis fires BLPOP timeouts up to a tick late.
                    if wait - REDIS_TICK - _REPLY_SLACK < 0.01:
                        if remaining is not None and wait >= remaining:
                            # The last try goes out one reply's time before the deadline.
                            await asyncio.sleep(max(wait - _REPLY_SLACK, 0.0))
                            last = True
                            continue
                        await asyncio.sleep(wait)
                        continue
                    wait -= REDIS_TICK + _REPLY_SLACK
                listen_budget = None
                if remaining is not None:
                    listen_budget = min(wait + self.op_timeout, remaining + _REPLY_SLACK)
                waited = True
                try:
                    # A nudge is only a reason to try again: the lock is not ours until claimed.
                    await self._call(
                        "BLPOP",
                        self._wake + owner,
                        f"{wait:.3f}",
                        timeout=wait + self.op_timeout if listen_budget is None else listen_budget,
                    )
                except BackendUnavailableError as exc:
                    silent = True
                    if deadline is not None and self._clock() >= deadline:
                        # Redis answered that the lock is held, then fell silent as the
                        # deadline passed: a timeout, without a last try past the deadline.
                        raise LockTimeoutError(
                            f"lock {self.name!r} was not acquired within {timeout}s: {exc}",
                            self.name,
                        ) from exc
                    pause = retry.next_pause(exc)
                    if pause is None:
                        raise
                    await asyncio.sleep(pause)
                    if not retry.in_time():
                        raise
        except BaseException as exc:
            failed = exc
            raise
        finally:
            if grant is None and queued:
                await self._give_up(owner, silent, until[0])
            if grant is None and _emit.on:
                _emit.acquired(self, begun, _emit.acquire_outcome(failed), waited)
        if grant is None:
            return None
        token, validity = grant
        lease = AsyncLease(cast(Any, self), token, owner, self.ttl, started + validity)
        lease._holder = task
        self._held[task] = lease
        if self.auto_renew or self.on_lost is not None:
            self._loops[lease] = asyncio.get_running_loop()
            _WATCHDOG.watch(lease)
        if self.auto_renew:
            task = asyncio.get_running_loop().create_task(
                _renew(weakref.ref(lease), self.ttl / 3, self.ttl / 10)
            )
            _RENEWALS.add(task)
            task.add_done_callback(_RENEWALS.discard)
        if _emit.on:
            _emit.acquired(self, begun, "acquired", waited)
        return lease

    async def release(self, lease: AsyncLease | None = None) -> None:
        """Release *lease* (default: the one the current task holds).

        Raises:
            LockNotOwnedError: nothing held by the task, or released already.
            LockLostError: the lease was lost before this call.
            BackendUnavailableError: Redis did not answer.
        """
        if lease is None:
            lease = self._held.get(asyncio.current_task())
            if lease is None or lease._released:
                raise LockNotOwnedError(f"lock {self.name!r} is not held by the caller", self.name)
        if lease._released:
            raise LockNotOwnedError(
                f"lease {lease.token} of {self.name!r} was already released", self.name
            )
        if lease._depth > 1:
            lease._depth -= 1
            return
        lease._released = True
        _WATCHDOG.discard(lease)
        if self._held.get(lease._holder) is lease:
            del self._held[lease._holder]
        was_lost = lease.lost.is_set()
        try:
            args = [lease.owner, self._wake, self._waiter_ms, self._claim_ms]
            released = int(await self._script(_RELEASE, args))
        except BackendUnavailableError:
            if not was_lost:
                self._loops.pop(lease, None)
                if _emit.on:
                    _emit.release_failed(self)
                raise
            released = 0
        if not was_lost and released == 1:
            self._loops.pop(lease, None)
            return
        self._mark_lost(lease, "release_refused")
        raise LockLostError(
            f"lease {lease.token} of {self.name!r} was lost before release", self.name
        )

    async def extend(self, lease: AsyncLease, ttl: float | None = None) -> None:
        """Reset *lease* to expire *ttl* seconds (default: the lock's ttl) from now.

        Raises:
            LockNotOwnedError: the lease was released.
            LockLostError: the lease was lost.
            BackendUnavailableError: Redis did not answer.
        """
        new_ttl = self.ttl if ttl is None else redis_seconds("ttl", ttl)
        if lease._released:
            raise LockNotOwnedError(f"lease {lease.token} of {self.name!r} was released", self.name)
        if lease.lost.is_set():
            raise LockLostError(f"lease {lease.token} of {self.name!r} is lost", self.name)
        started = self._clock()
        try:
            ok = await self._script(_EXTEND, [lease.owner, max(int(new_ttl * 1000), 1)])
        except Exception:
            if _emit.on:  # Redis did not answer: a failed renewal all the same
                _emit.renewed(self, False)
            raise
        if _emit.on:
            _emit.renewed(self, int(ok) == 1)
        if int(ok) != 1:
            self._mark_lost(lease, "extend_refused")
            raise LockLostError(f"lease {lease.token} of {self.name!r} is lost", self.name)
        lease._set_deadline(started + new_ttl)

    def _mark_lost(self, lease: Lease, cause: str = "expired") -> None:
        """Set `lease.lost`; run `on_lost` on its loop (a notifier thread once it closed)."""
        if not lease.lost._set():
            return
        _emit.lease_lost(self, lease, cause)
        loop = self._loops.pop(cast(AsyncLease, lease), None)
        if self.on_lost is None:
            return
        callback = self.on_lost
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_run_on_lost_in_loop, callback, lease)
                return
            except RuntimeError:  # the loop closed meanwhile
                pass
        _NOTIFIER.submit(functools.partial(_run_to_completion, callback), lease)

    async def locked(self) -> bool:
        """True while some owner holds the lock. One round trip."""
        return int(await self._call("EXISTS", self._keys[0])) == 1

    async def __aenter__(self) -> AsyncLease:
        lease = await self.acquire()
        assert lease is not None
        self._stacks.setdefault(asyncio.current_task(), []).append(lease)
        return lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        stack = self._stacks.get(task)
        if not stack:
            raise LockNotOwnedError(f"lock {self.name!r} is not held by the caller", self.name)
        lease = stack.pop()
        if not stack:
            del self._stacks[task]
        await self.release(lease)

    def __repr__(self) -> str:
        return f"AsyncRedisLock({self.name!r}, ttl={self.ttl})"


def _note_until(until: list[int], ms: int) -> None:
    until[0] = max(until[0], ms)


class _Late(BackendUnavailableError):
    """Redis refused a request as run after its deadline (see `LUA_GONE`)."""


def _note_time(times: list[float], clock: Callable[[], float]) -> None:
    times.append(clock())


async def _renew(ref: weakref.ref[AsyncLease], period: float, retry: float) -> None:
    """Extend the lease every *period*; retry any error but "not the owner" until its deadline.

    Holds the lease only weakly between renewals, and schedules them one
    *period* after the lease's validity began, as the threaded renewal does.
    """
    wait: float | None = None  # None: the next renewal is due on schedule
    while True:
        lease = ref()
        if lease is None or lease._released or lease.lost.is_set():
            return
        left = max(lease.remaining() or 0.0, 0.0)
        pause = left - ((lease.ttl or 3 * period) - period) if wait is None else wait
        del lease
        await asyncio.sleep(max(min(pause, left), 0.0))
        lease = ref()
        if lease is None or lease._released:
            return
        lock = cast("AsyncRedisLock", lease._lock)
        if lease.lost.is_set():
            lock._mark_lost(lease)
            return
        try:
            await lock.extend(lease)
            wait = None
        except (LockLostError, LockNotOwnedError):
            return
        except Exception as exc:  # transient until proven otherwise
            _log.debug("renewal of %r failed, retrying: %r", lock.name, exc)
            wait = max(min(retry, left), 0.01)
        del lease, lock


# Tasks of coroutine callbacks still running (the loop holds tasks only weakly).
_CALLBACK_TASKS: set[asyncio.Future[Any]] = set()


def _run_on_lost_in_loop(callback: AsyncOnLost, lease: Lease) -> None:
    """On the lease's loop: run *callback*; a coroutine it returns runs as a task."""
    try:
        result = callback(lease)
    except Exception as exc:
        _log.exception("on_lost callback of lock %r raised", lease.name)
        _emit.callback_failed(lease, exc)
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _CALLBACK_TASKS.add(task)
        task.add_done_callback(functools.partial(_callback_done, lease))


def _callback_done(lease: Lease, task: asyncio.Future[Any]) -> None:
    _CALLBACK_TASKS.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if isinstance(exc, Exception):
        _log.error("on_lost callback of lock %r raised", lease.name, exc_info=exc)
        _emit.callback_failed(lease, exc)


def _run_to_completion(callback: AsyncOnLost, lease: Lease) -> None:
    """On a notifier thread (the lease's loop closed): run *callback*, and a coroutine
    it returns in an event loop of its own."""
    result = callback(lease)
    if inspect.isawaitable(result):
        asyncio.run(_awaited(result))


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _pool_open(client: Any) -> bool | None:
    """Whether *client*'s connection pool holds an open connection, or one in use.

    None for a client without a single pool whose connections can be read
    (a `RedisCluster`, another pool class).
    """
    pool = getattr(client, "connection_pool", None)
    idle = getattr(pool, "_available_connections", None)
    busy = getattr(pool, "_in_use_connections", None)
    if not isinstance(idle, list) or not isinstance(busy, set):
        return None
    return bool(busy) or any(getattr(conn, "is_connected", True) for conn in idle)


async def _bounded(call: Any, seconds: float) -> Any:
    """Await *call* for at most *seconds*; raise `asyncio.TimeoutError` after that.

    Unlike `asyncio.wait_for`, it does not wait for the cancelled call to
    clean up (redis.asyncio closing a connection to a silent server can take
    as long as the network does): the call is cancelled and left to finish.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise asyncio.TimeoutError
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume a cancelled call's outcome so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()
