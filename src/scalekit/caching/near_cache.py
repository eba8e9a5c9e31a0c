"""A local cache in front of a RedisCache, kept coherent by Redis pub/sub.

Every write and invalidation through a :class:`RedisCache` publishes the key
on the cache's channel from inside the same Lua script, so the message is
ordered with the write. Each :class:`NearCache` listens on its own thread
and drops the key from its local layer.

The staleness bound comes from heartbeats on the same connection: every
``max_staleness / 4`` seconds the listener sends ``PING``. Redis answers in
order, so when the answer to a ping sent at time *p* arrives, every
invalidation published before *p* has already been applied. Local entries
are served only while the last answered ping was sent less than
``max_staleness`` ago; after that, or when the connection drops or is
re-established, the local layer is cleared and bypassed until a new
subscription has answered a ping. A write completed at time *t* is
therefore never served by another process's local layer after
``t + max_staleness``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from .._validation import positive_number
from ..exceptions import BackendUnavailableError, ConfigurationError
from .redis_cache import RedisCache

__all__ = ["NearCache"]

_MISS: Any = object()
_NEVER = float("-inf")


class NearCache:
    """A local cache (any ``MutableMapping``) in front of a :class:`RedisCache`.

    >>> near = NearCache(cachetools.LRUCache(10_000), RedisCache(client, namespace="goods"))
    ... # doctest: +SKIP

    Parameters:
        local: the local layer, e.g. ``LRUCache(maxsize)``; NearCache guards it
            with its own lock, so it need not be thread-safe. It must not be
            shared with anything else.
        remote: a :class:`RedisCache` created with ``notify=True`` (the default).
        max_staleness: seconds after another process's write completes within
            which this process stops serving the old value (see the module text).
        local_ttl: seconds a local entry lives at most (default: the remote's ttl),
            since Redis expiries publish nothing.
        connect_timeout: seconds :meth:`__init__` waits for the first subscription;
            if it is not ready the cache still works, going to Redis until it is.
        clock: monotonic clock in seconds.

    Raises:
        ConfigurationError: bad arguments or ``remote.notify`` off.

    Thread-safe. A local hit costs O(1) plus the local layer's own cost; a
    miss costs one Redis round trip. Call :meth:`close` to stop the listener.
    """

    def __init__(
        self,
        local: MutableMapping[str, Any],
        remote: RedisCache,
        *,
        max_staleness: float = 1.0,
        local_ttl: float | None = None,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(local, MutableMapping):
            raise ConfigurationError(f"local must be a MutableMapping, got {local!r}")
        if not isinstance(remote, RedisCache):
            raise ConfigurationError(f"remote must be a RedisCache, got {remote!r}")
        if not remote.notifies:
            raise ConfigurationError(
                "remote must be created with notify=True so writes publish invalidations, "
                "got notify=False"
            )
        self._local = local
        self.remote = remote
        self.max_staleness = positive_number("max_staleness", max_staleness)
        self.local_ttl = (
            remote.ttl if local_ttl is None else positive_number("local_ttl", local_ttl)
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._trusted_until = _NEVER  # local entries usable while clock() < this
        self._seq = 0  # counts invalidation events seen by this process
        self._inflight: dict[str, int] = {}  # key -> remote reads in progress
        self._dirty: dict[str, int] = {}  # key -> seq of its last invalidation while in flight
        self._cleared_at = 0  # seq of the last full clear
        self._local_hits = self._remote_reads = self._clears = self._messages = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(
            target=self._listen, name=f"NearCache-{remote.channel}", daemon=True
        )
        self._thread.start()
        self._connected.wait(positive_number("connect_timeout", connect_timeout))

    # -- reads -------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The value of *key* from the local layer, else from Redis, else *default*.

        Runtime complexity: O(1) on a local hit; one Redis round trip otherwise.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return value
        seq = self._begin(key)
        value = _MISS
        try:
            value = self.remote.get(key, _MISS)
        finally:
            self._end(key, seq, value)
        return default if value is _MISS else value

    def get_or_load(self, key: str, loader: Callable[[], Any], *, ttl: float | None = None) -> Any:
        """Like :meth:`RedisCache.get_or_load`, with the local layer in front.

        Runtime complexity: O(1) on a local hit, else that of ``RedisCache.get_or_load``.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return value
        seq = self._begin(key)
        value = _MISS
        try:
            value = self.remote.get_or_load(key, loader, ttl=ttl)
        finally:
            self._end(key, seq, _MISS if value is None else value)
        return value

    def _local_get(self, key: str) -> Any:
        now = self._clock()
        if now >= self._trusted_until:
            return _MISS
        with self._lock:
            entry = self._local.get(key, _MISS)
            if entry is _MISS or entry[1] <= now:
                return _MISS
            self._local_hits += 1
        return entry[0]

    def _begin(self, key: str) -> int:
        with self._lock:
            self._remote_reads += 1
            self._inflight[key] = self._inflight.get(key, 0) + 1
            return self._seq

    def _end(self, key: str, seq: int, value: Any) -> None:
        """Fill the local layer unless *key* was invalidated while it was being read."""
        with self._lock:
            left = self._inflight[key] - 1
            stale = self._dirty.get(key, -1) > seq or self._cleared_at > seq
            if left:
                self._inflight[key] = left
            else:
                del self._inflight[key]
                self._dirty.pop(key, None)
            if value is _MISS or stale or self._clock() >= self._trusted_until:
                return
            # A value too large for the local layer is simply served from Redis.
            with contextlib.suppress(ValueError):
                self._local[key] = (value, self._clock() + self.local_ttl)

    # -- writes ------------------------------------------------------------
    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Write through to Redis; every process's local copy is invalidated.

        Runtime complexity: O(1), one script call.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        self._drop(key)
        self.remote.set(key, value, ttl)
        self._drop(key)

    def delete(self, key: str) -> bool:
        """Delete from Redis and invalidate every local copy; True if Redis held a value.

        Runtime complexity: O(1), one script call.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        self._drop(key)
        try:
            return self.remote.delete(key)
        finally:
            self._drop(key)

    def invalidate(self, key: str) -> None:
        """Invalidate *key* in Redis and in every process's local layer."""
        self.delete(key)

    def _drop(self, key: str) -> None:
        with self._lock:
            self._seq += 1
            if key in self._inflight:
                self._dirty[key] = self._seq
            self._local.pop(key, None)

    def clear_local(self) -> None:
        """Empty the local layer (Redis is untouched)."""
        with self._lock:
            self._seq += 1
            self._cleared_at = self._seq
            self._clears += 1
            self._local.clear()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``local_hits``, ``remote_reads``, ``clears`` of the local layer and
        ``invalidations`` (messages received)."""
        with self._lock:
            return {
                "local_hits": self._local_hits,
                "remote_reads": self._remote_reads,
                "clears": self._clears,
                "invalidations": self._messages,
            }

    # -- the listener ------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the local layer is trusted (subscribed and heartbeats answered)."""
        return self._clock() < self._trusted_until

    def _distrust(self) -> None:
        self._trusted_until = _NEVER
        self._connected.clear()
        self.clear_local()

    def _listen(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.remote.client.pubsub()  # type: ignore[no-untyped-call]
                pubsub.subscribe(self.remote.channel)
                self._session(pubsub)
                backoff = 0.05
            except Exception:  # any failure: distrust the local layer and resubscribe
                self._distrust()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_staleness)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken link
                        pubsub.close()
        self._distrust()

    def _session(self, pubsub: Any) -> None:
        """Handle one subscription until it fails, is replaced or is stopped."""
        interval = self.max_staleness / 4
        subscribed = False
        pending: list[float] = []  # send times of unanswered pings, oldest first
        next_ping = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if subscribed and now >= next_ping:
                pending.append(now)
                pubsub.ping()
                next_ping = now + interval
            trusted = self._trusted_until
            if trusted != _NEVER and now >= trusted:
                self._distrust()  # no recent ping answered: invalidations may be missing
            if pending and now - pending[0] > 2 * self.max_staleness:
                raise BackendUnavailableError("heartbeat unanswered: the subscription looks dead")
            wake = min(next_ping, trusted) if trusted != _NEVER else next_ping
            message = pubsub.get_message(timeout=max(0.0, min(interval, wake - now)))
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._drop(message["data"].decode())
                with self._lock:
                    self._messages += 1
            elif kind == "subscribe":
                # First subscription, or redis-py resubscribed after a reconnect:
                # messages may have been lost, so nothing local can be trusted.
                self.clear_local()
                subscribed, pending, next_ping = True, [], self._clock()
            elif kind == "pong" and pending:
                sent = pending.pop(0)
                self._trusted_until = sent + self.max_staleness
                self._connected.set()

    def close(self) -> None:
        """Stop the listener thread and empty the local layer."""
        self._stop.set()
        self._thread.join(self.max_staleness + 5)

    def __enter__(self) -> NearCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NearCache(remote={self.remote!r}, connected={self.connected})"
