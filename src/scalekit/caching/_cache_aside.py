"""The cache-aside path of RedisCache: single-flight, the load lease and the write-back.

Functions of a [RedisCache][scalekit.caching.redis_cache.RedisCache] kept
in their own module for size; `RedisCache.get_or_load` is the entry point.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

try:
    import redis
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from ..exceptions import (
    BackendError,
    BackendUnavailableError,
    CacheLoadTimeoutError,
    InvalidStateError,
)
from ._single_flight import own_copy, reset_in_forked_child

if TYPE_CHECKING:
    from .redis_cache import RedisCache

_MISS: Any = object()
_UNDECODABLE: Any = object()


def _version() -> str:
    """A fresh random version: 128 bits, 32 hex digits."""
    return os.urandom(16).hex()


class RedisCacheStats(NamedTuple):
    """A snapshot of one [RedisCache][scalekit.caching.redis_cache.RedisCache]'s counters.

    Counted in this process since the cache was created: `hits` (fresh values
    found by `get_or_load`), `misses`, `loads` (loader calls that held the
    lease), `load_errors`, `writebacks`, `writebacks_rejected` (a newer write
    or a lost lease won), `waits` (calls that waited for another process's
    load), `shared` (calls that took the result of a load already running in
    this process, read after the call began), `stale_served` and
    `fallbacks` (loader called with Redis unavailable), and `undecodable`
    (records this cache could not read, each treated as a miss: bytes written
    by another tool, or by a cache with another serializer on the namespace).
    `hit_ratio` is
    `hits / (hits + misses)`, 0.0 before the first lookup, as in
    [CacheStats][scalekit.caching.CacheStats].
    """

    hits: int
    misses: int
    loads: int
    load_errors: int
    writebacks: int
    writebacks_rejected: int
    waits: int
    shared: int
    stale_served: int
    fallbacks: int
    undecodable: int = 0

    @property
    def hit_ratio(self) -> float:
        """The share of `get_or_load` lookups that found a fresh value."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class _Counters:
    """The live counters behind `RedisCache.stats()` (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(RedisCacheStats._fields, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> RedisCacheStats:
        with self._lock:
            return RedisCacheStats(**self._counts)


_Result = tuple[Any, bool, float]  # (value, fresh, time.monotonic() instant fresh until)
_NEVER_FRESH = float("-inf")


class _Flight:
    __slots__ = ("done", "error", "owner", "read_at", "result")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        # `time.monotonic()` instants at which the reads behind the result began, in
        # order (a Redis request sent, a loader called); the last one produced it.
        self.read_at: list[float] = []


class FreshFlights:
    """In-process single-flight that never hands a caller a result read before it began.

    Concurrent callers for one key share one load, but a caller takes the
    result of a load already running only if the read that produced it (the
    Redis request that returned it, or the loader call) began after the
    caller did. Otherwise the result may predate a write acknowledged before
    the caller started, and the caller goes again: it leads a new load, or
    joins one begun after it started (whose reads all follow its start). So
    no caller waits for more than two loads.

    Thread-safe. A follower gets its own copy of the leader's exception
    (`own_copy`), with the driver's exception as its cause where the
    leader's had one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        reset_in_forked_child(self)

    def after_fork(self) -> None:
        """Forget the loads in progress (called in a forked child: their threads are gone)."""
        for flight in self._flights.values():
            flight.done = threading.Event()
        self._lock = threading.Lock()
        self._flights = {}

    def run(
        self,
        key: str,
        since: float,
        fn: Callable[[list[float]], Any],
        timeout: float,
        on_timeout: Callable[[], Exception],
    ) -> tuple[Any, bool]:
        """(result, led): `fn(read_at)`, or the result of a load read after *since*.

        *since* is the `time.monotonic()` instant the caller began; *fn*
        appends to *read_at* the instant each read it makes begins. A follower
        waits at most *timeout* seconds in all (`inf`: no limit), then raises
        `on_timeout()`.

        Raises:
            InvalidStateError: *fn* itself asked for *key* again in the same
                thread (it would wait for itself).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leader:
                try:
                    flight.result = fn(flight.read_at)
                except BaseException as exc:
                    flight.error = exc
                    raise
                finally:
                    with self._lock:
                        if self._flights.get(key) is flight:  # gone in a child forked meanwhile
                            del self._flights[key]
                    flight.done.set()
                return flight.result, True
            if flight.owner == threading.get_ident():
                raise InvalidStateError(
                    f"the load of {key!r} asked for {key!r} again from its own thread "
                    "(a loader calling get_or_load on its own key would wait for itself)"
                )
            remaining = deadline - time.monotonic()
            if not flight.done.wait(None if timeout == math.inf else max(0.0, remaining)):
                raise on_timeout()
            error = flight.error
            if error is not None:
                clone = own_copy(error)
                if clone is not error and error.__cause__ is not None:
                    clone.__cause__ = error.__cause__
                    clone.__context__ = error
                raise clone
            if flight.read_at and flight.read_at[-1] >= since:
                return flight.result, False


def get_or_load(
    cache: RedisCache, key: str, loader: Callable[[], Any], ttl: float | None, deadline: bool
) -> _Result:
    """(value, fresh, fresh until): *fresh* is False for a stale or uncached (fallback) value.

    *fresh until* never lies after the instant Redis stops serving the value as
    fresh; on a hit it is exact only with *deadline* (a GET + PTTL script), else `inf`.
    """
    since = time.monotonic()  # a result read before this is never shared with this call
    name = cache._name(key)
    data = None
    down = False
    until = math.inf
    try:
        if deadline:
            sent = time.monotonic()
            reply = cache._call(cache._read, keys=[name])
            if reply is not None:
                data, until = reply[0], cache._fresh_deadline(reply[0], reply[1], sent)
        else:
            data = cache._call(cache._client.get, name)
    except BackendUnavailableError:
        if not cache.fallback:
            raise
        down = True  # go straight to the loader: one call_timeout is spent already
    value = cache._decode(data, _MISS, _UNDECODABLE)
    if value is _UNDECODABLE and data is not None:
        # Unreadable (another tool's bytes, another serializer): a miss. Removed
        # under a new version if still there, so the load below writes back.
        with contextlib.suppress(BackendUnavailableError):
            cache._drop_undecodable(name, data)
        value = _MISS
        data = None
    if value is not _MISS:
        cache._counters.add("hits")
        return value, True, until
    if cache.stale_ttl and data is not None and data[0] == 0x76:
        # A stale value is kept: whoever finds the lease taken gets it at once,
        # so callers in this process need not queue behind one another.
        return _miss(cache, name, loader, ttl, [])

    def lead(read_at: list[float]) -> _Result:
        if down:
            cache._counters.add("fallbacks")
            read_at.append(time.monotonic())
            return loader(), False, _NEVER_FRESH
        return _miss(cache, name, loader, ttl, read_at)

    result: _Result
    result, led = cache._flight.run(
        name, since, lead, cache.wait_timeout, _timeout_error(cache, name)
    )
    if not led:
        cache._counters.add("shared")
    return result


def _timeout_error(cache: RedisCache, name: str) -> Callable[[], Exception]:
    return lambda: CacheLoadTimeoutError(
        f"no value for {name!r} within wait_timeout={cache.wait_timeout}s "
        "while another caller held the load lease"
    )


def _falls_back(exc: BackendError) -> bool:
    """True if `fallback` covers *exc*: Redis unreachable, or answering but refusing
    every write (out of memory under `noeviction`, or a read-only replica)."""
    return isinstance(exc, BackendUnavailableError) or isinstance(
        exc.__cause__, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)
    )


def _miss(
    cache: RedisCache,
    name: str,
    loader: Callable[[], Any],
    ttl: float | None,
    read_at: list[float],
) -> _Result:
    """The load under the lease; appends to *read_at* when each read behind it begins."""
    ran: list[bool] = []

    def tracked() -> Any:
        ran.append(True)
        return loader()

    try:
        return _load(cache, name, tracked, ttl, read_at)
    except BackendError as exc:
        if not (cache.fallback and _falls_back(exc)) or ran:  # never run the loader twice
            raise
        cache._counters.add("fallbacks")
        read_at.append(time.monotonic())
        return loader(), False, _NEVER_FRESH


def _load(
    cache: RedisCache,
    name: str,
    loader: Callable[[], Any],
    ttl: float | None,
    read_at: list[float],
) -> _Result:
    cache._counters.add("misses")
    keys = [name, name + ":ver", name + ":lease"]
    token = os.urandom(8).hex()
    deadline = time.monotonic() + cache.wait_timeout
    delay = 0.002
    waited = False
    while True:
        sent = time.monotonic()
        reply = cache._call(
            cache._acquire,
            keys=keys,
            args=[token, cache._lease_ms, round(cache._clock() * 1000), _version()],
        )
        read_at.append(sent)
        if reply[0] == 1:
            value = _hit_after_wait(cache, reply[1], waited)
            if value is not _UNDECODABLE:
                return value, True, cache._fresh_deadline(reply[1], reply[2], sent)
            cache._drop_undecodable(name, reply[1])  # written again meanwhile: a miss
        stale = None if reply[0] == 1 else reply[-1]
        if reply[0] == 2:
            return _run_loader(cache, keys, token, reply[1], loader, ttl, read_at)
        if cache.stale_ttl and stale is not None and stale[0] == 0x76:  # b"v": kept stale
            value = _loads(cache, stale)
            if value is not _UNDECODABLE:
                cache._counters.add("stale_served")
                return value, False, _NEVER_FRESH
        if not waited:
            waited = True
            cache._counters.add("waits")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout_error(cache, name)()
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _loads(cache: RedisCache, data: bytes) -> Any:
    """The value in record *data* (`None` for "not found"), or `_UNDECODABLE` (counted)."""
    if data[0] == 0x6E:
        return None
    try:
        return cache.serializer.loads(data.split(b":", 2)[2])
    except Exception:  # any decoder's error: a miss, never a poisoned key
        cache._counters.add("undecodable")
        return _UNDECODABLE


def _hit_after_wait(cache: RedisCache, data: bytes, waited: bool) -> Any:
    value = _loads(cache, data)
    if not waited and value is not _UNDECODABLE:
        cache._counters.add("hits")
    return value


def _run_loader(
    cache: RedisCache,
    keys: list[str],
    token: str,
    version: bytes,
    loader: Callable[[], Any],
    ttl: float | None,
    read_at: list[float],
) -> _Result:
    cache._counters.add("loads")
    read_at.append(time.monotonic())
    try:
        value = loader()
        payload = b"" if value is None else cache.serializer.dumps(value)
    except BaseException:
        cache._counters.add("load_errors")
        # The lease expires by itself if Redis is gone; the loader's error matters more.
        with contextlib.suppress(BackendError):
            cache._call(cache._release, keys=[keys[2]], args=[token])
        raise
    try:
        if value is None and cache.negative_ttl is None:
            cache._call(cache._release, keys=[keys[2]], args=[token])
            return None, False, _NEVER_FRESH
        kind = "v" if value is not None else "n"
        fresh_until, px = cache._expiry(ttl if value is not None else cache.negative_ttl)
        user_key = keys[0][len(cache.namespace) + 2 : -1]
        sent = time.monotonic()
        # Fresh for px ms from now, or until the fresh-until stamp with stale_ttl.
        until = sent + (fresh_until / 1000 - cache._clock() if fresh_until else px / 1000)
        written = cache._call(
            cache._write_back,
            keys=keys,
            args=[
                token,
                version,
                kind,
                fresh_until,
                px,
                payload,
                cache._lease_ms,
                cache._channel_arg,
                user_key,
                _version(),
            ],
        )
    except BackendError as exc:
        if cache.fallback and _falls_back(exc):
            return value, False, _NEVER_FRESH  # loaded once already: return it uncached
        raise
    cache._counters.add("writebacks" if written == 1 else "writebacks_rejected")
    if written == 1:
        # Accepted: no write was acknowledged between the lease and now, so the
        # value is current for every caller that began before this request.
        read_at.append(sent)
    return value, written == 1, until
