"""A local cache in front of a RedisCache, kept coherent by invalidations from every node.

NearCache opens one listener connection per Redis node (per primary on a
Cluster), of its own, outside the client's pool. By default each listener
runs `CLIENT TRACKING ON REDIRECT <own id> BCAST PREFIX <namespace>:` and
subscribes to `__redis__:invalidate` (Redis >= 6), so the node itself
reports every change to a key of the namespace: writes through scalekit,
and also a direct `SET` or `DEL`, an expiry, an eviction or a `FLUSHDB`
(not a `SWAPDB`: tracking follows key names, which a swap leaves as they
were; call `clear_local` after one); if that setup is refused (a `BUSY`
reply is no refusal: it is retried) the constructor raises
`ConfigurationError`.
With `invalidation="channel"` a listener subscribes to the cache's channel
instead, on which the scripts of
[RedisCache][scalekit.caching.redis_cache.RedisCache] publish each write
(writes that bypass scalekit are then not seen).

The staleness bound comes from heartbeats on the same connections: every
`max_staleness / 4` seconds each listener sends `PING` to its node. A node
answers in order and queues a key's invalidation before it acknowledges the
write, so when the answer to a ping sent at time *p* arrives, every write
that node acknowledged before *p* has been applied here. Local entries are
served only while every node's last answered ping was sent less than
`max_staleness` ago; after that, or when a listener's connection drops or
is re-established, the local layer is cleared and bypassed until that
listener has answered a ping again. A write acknowledged at time *t* is
therefore never served by another process's local layer after
`t + max_staleness`. Because each node reports its own keys, this holds on
a Cluster while a cluster-bus link is down. On a Cluster each listener
also asks its node `ROLE` just before every ping, so a primary demoted by
a failover (which keeps answering pings) is left for the new primary.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any, Generic, NamedTuple, cast, overload

try:
    import redis.cluster
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .._validation import positive_number
from ..exceptions import ArgumentTypeError, ConfigurationError
from ..observability import _emit
from ._near_listener import NEVER as _NEVER
from ._near_listener import Listener, permission_message
from .redis_cache import D, RedisCache, V

__all__ = ["NearCache", "NearCacheStats"]

_MISS: Any = object()
#: Seconds `NearCache.close` takes at most, whatever the servers do.
CLOSE_TIMEOUT = 1.0
_LIVE: weakref.WeakSet[NearCache] = weakref.WeakSet()  # restarted in a forked child


def _restart_in_child() -> None:
    for near in list(_LIVE):
        near._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_in_child)


class NearCacheStats(NamedTuple):
    """A snapshot of one [NearCache][scalekit.caching.near_cache.NearCache]'s counters.

    `local_hits` and `remote_reads` count reads; `clears` counts times the
    local layer was emptied (a listener lost or regained its node);
    `invalidations` counts invalidation messages received. `hit_ratio` is
    `local_hits / (local_hits + remote_reads)`, the share of reads the local
    layer answered, 0.0 before the first read.
    """

    local_hits: int
    remote_reads: int
    clears: int
    invalidations: int

    @property
    def hit_ratio(self) -> float:
        """The share of reads answered by the local layer, without going to Redis."""
        total = self.local_hits + self.remote_reads
        return self.local_hits / total if total else 0.0


class NearCache(Generic[V]):
    """A local cache (any `MutableMapping`) in front of a `RedisCache`.

    Generic over the value type of its remote: in front of a
    `RedisCache[Product]` it is a `NearCache[Product]`.

    Example:
        ```python
        near = NearCache(LRUCache(10_000), RedisCache(client, namespace="goods"))
        near.get_or_load("42", lambda: db.load_goods(42))
        ```

    Args:
        local: The local layer, e.g. `LRUCache(maxsize)`; NearCache guards it
            with its own lock, so it need not be thread-safe. It must not be
            shared with anything else.
        remote: A `RedisCache`. With `invalidation="channel"` it must be
            created with `notify=True` (the default).
        max_staleness: Seconds after a write is acknowledged by Redis within
            which this process stops serving the old value (see the module text).
        local_ttl: Seconds a local entry lives at most (default: the remote's ttl).
        connect_timeout: Seconds `__init__` waits for every listener; if one is
            not ready the cache still works, going to Redis until it is.
        invalidation: `"tracking"` (default): each node reports every change
            of a key of the namespace (client tracking, Redis >= 6), direct
            writes and expiries included. `"channel"`: listen only to the
            cache's channel, on which `RedisCache` publishes its own writes;
            writes that bypass scalekit are then not seen (for a server
            without client tracking, or with `CLIENT` disabled).
        copy: Return a deep copy of each value (`copy.deepcopy`, at its
            cost on every read). By default every caller in this process gets
            the one object held in the local layer: treat it as read-only, since
            mutating it changes what later reads return.
        clock: Monotonic clock in seconds.

    Raises:
        ConfigurationError: Bad arguments, or a listener's first setup was
            refused: the Redis user may not run what it needs (`CLIENT ID`,
            `CLIENT TRACKING`, `SUBSCRIBE` to `__redis__:invalidate` or the
            cache's channel, `PING`), or the server renamed or disabled it.
            The message names the refused command.

    Thread-safe. A local hit costs O(1) plus the local layer's own cost; a
    miss costs one Redis round trip. Call `close` to stop the listeners.
    """

    def __init__(
        self,
        local: MutableMapping[str, Any],
        remote: RedisCache[V],
        *,
        max_staleness: float = 1.0,
        local_ttl: float | None = None,
        connect_timeout: float = 5.0,
        invalidation: str = "tracking",
        copy: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(local, MutableMapping):
            raise ArgumentTypeError(f"local must be a MutableMapping, got {local!r}")
        if not isinstance(remote, RedisCache):
            raise ArgumentTypeError(f"remote must be a RedisCache, got {remote!r}")
        self._local = local
        self.remote = remote
        self.max_staleness = positive_number("max_staleness", max_staleness)
        self.local_ttl = (
            remote.ttl if local_ttl is None else positive_number("local_ttl", local_ttl)
        )
        timeout = positive_number("connect_timeout", connect_timeout)
        if invalidation not in ("tracking", "channel"):
            raise (ConfigurationError if isinstance(invalidation, str) else ArgumentTypeError)(
                f"invalidation must be 'tracking' or 'channel', got {invalidation!r}"
            )
        if invalidation == "channel" and not remote.notifies:
            raise ConfigurationError(
                "remote must be created with notify=True for invalidation='channel' "
                "(its writes publish the invalidations), got notify=False"
            )
        self.invalidation = invalidation
        self._copy = bool(copy)
        self._clock = clock
        self._lock = threading.Lock()
        self._trusted_until = _NEVER  # local entries usable while clock() < this
        self._seq = 0  # counts invalidation events seen by this process
        self._inflight: dict[str, int] = {}  # key -> remote reads in progress
        self._dirty: dict[str, int] = {}  # key -> seq of its last invalidation while in flight
        self._cleared_at = 0  # seq of the last full clear
        self._local_hits = self._remote_reads = self._clears = self._messages = 0
        self._stop = threading.Event()
        self._topology = threading.Lock()
        self._synced = threading.Condition()
        self._listeners = [Listener(self, pool, name) for pool, name in self._nodes()]
        for listener in self._listeners:
            listener.start()
        _LIVE.add(self)
        deadline = time.monotonic() + timeout
        for listener in self._listeners:
            listener.ready.wait(max(0.0, deadline - time.monotonic()))
        denied = [lst for lst in self._listeners if lst.denied is not None]
        if denied:
            self.close()
            raise ConfigurationError(permission_message(denied[0], remote.channel))

    def _after_fork(self) -> None:
        """In a child process: new locks, an empty local layer and listeners of its own.

        The child inherits neither the parent's threads nor a safe copy of its
        locks (another thread may have held one at the fork).
        """
        self._lock = threading.Lock()
        self._topology = threading.Lock()
        self._synced = threading.Condition()
        closed = self._stop.is_set()
        self._stop = threading.Event()
        self._trusted_until = _NEVER
        self._inflight.clear()
        self._dirty.clear()
        self._local.clear()
        if closed:
            self._stop.set()
            return
        self._listeners = [Listener(self, pool, name) for pool, name in self._nodes()]
        for listener in self._listeners:
            listener.start()

    def _check_topology(self) -> None:
        """Listen to primaries that appeared in the client's cluster map; retire gone ones.

        Called with every heartbeat. A change empties the local layer, and a new
        primary's listener must answer a ping before anything local is served again.
        """
        client = self.remote.client
        if not isinstance(client, redis.cluster.RedisCluster):
            return
        try:
            primaries = {node.name: node for node in client.get_primaries()}  # type: ignore[no-untyped-call]
        except RuntimeError:  # redis-py changed its map meanwhile: look again next heartbeat
            return
        with self._topology:
            current = {listener.node for listener in self._listeners}
            if set(primaries) == current:
                return
            for listener in self._listeners:
                listener.retired = listener.node not in primaries
            new = [
                Listener(self, client.get_redis_connection(primaries[name]).connection_pool, name)
                for name in sorted(primaries.keys() - current)
            ]
            self._listeners = [lst for lst in self._listeners if not lst.retired] + new
        self._refresh_trust()
        self.clear_local()
        for listener in new:
            listener.start()

    def _nodes(self) -> list[tuple[Any, str]]:
        client = self.remote.client
        if isinstance(client, redis.cluster.RedisCluster):
            return [
                (node.redis_connection.connection_pool, node.name)
                for node in client.get_primaries()  # type: ignore[no-untyped-call]
            ]
        kwargs = client.connection_pool.connection_kwargs
        return [(client.connection_pool, f"{kwargs.get('host')}:{kwargs.get('port')}")]

    # -- reads -------------------------------------------------------------
    @overload
    def get(self, key: str) -> V | None: ...

    @overload
    def get(self, key: str, default: D) -> V | D: ...

    def get(self, key: str, default: object = None) -> object:
        """The value of *key* from the local layer, else from Redis, else *default*.

        Runtime complexity: O(1) on a local hit; one Redis round trip otherwise.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return value
        seq = self._begin(key)
        value, until = _MISS, _NEVER
        try:
            value, until = self.remote._get_with_deadline(key, _MISS)
        finally:
            self._end(key, seq, value, until)
        if value is _MISS:
            return default
        return copy.deepcopy(value) if self._copy else value

    def get_or_load(self, key: str, loader: Callable[[], V], *, ttl: float | None = None) -> V:
        """Like `RedisCache.get_or_load`, with the local layer in front.

        A value served stale (`stale_ttl`) or loaded while Redis was down is
        returned but not kept locally.

        Runtime complexity: O(1) on a local hit, else that of `RedisCache.get_or_load`.
        """
        value = self._local_get(key)
        if value is not _MISS:
            return cast("V", value)
        seq = self._begin(key)
        keep: Any = _MISS
        until = _NEVER
        try:
            value, fresh, until = self.remote._get_or_load(key, loader, ttl, deadline=True)
            if fresh and value is not None:
                keep = value
        finally:
            self._end(key, seq, keep, until)
        return cast("V", copy.deepcopy(value) if self._copy else value)

    def _local_get(self, key: str) -> Any:
        now = self._clock()
        if now >= self._trusted_until:
            return _MISS
        with self._lock:
            entry = self._local.get(key, _MISS)
            if entry is _MISS or entry[1] <= now:
                return _MISS
            self._local_hits += 1
        return copy.deepcopy(entry[0]) if self._copy else entry[0]

    def _begin(self, key: str) -> int:
        with self._lock:
            self._remote_reads += 1
            self._inflight[key] = self._inflight.get(key, 0) + 1
            return self._seq

    def _end(self, key: str, seq: int, value: Any, fresh_until: float) -> None:
        """Fill the local layer unless *key* was invalidated while it was being read.

        The entry lives `local_ttl`, and never past *fresh_until* (a
        `time.monotonic()` instant: when Redis stops serving the value as fresh).
        """
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
            now = self._clock()
            life = min(self.local_ttl, fresh_until - time.monotonic())
            if life <= 0:
                return
            with contextlib.suppress(ValueError):
                self._local[key] = (value, now + life)

    # -- writes ------------------------------------------------------------
    def set(self, key: str, value: V, ttl: float | None = None) -> None:
        """Write through to Redis; every process's local copy is invalidated.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        self._drop(key)
        self.remote.set(key, value, ttl)
        self._drop(key)

    def delete(self, key: str) -> bool:
        """Delete from Redis and invalidate every local copy; True if Redis held a value.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
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

    def stats(self) -> NearCacheStats:
        """A snapshot of the counters. Runtime complexity: O(1)."""
        with self._lock:
            return NearCacheStats(
                self._local_hits, self._remote_reads, self._clears, self._messages
            )

    # -- the listeners -----------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the local layer is trusted (every node's heartbeat answered)."""
        return self._clock() < self._trusted_until

    @property
    def tracking(self) -> bool:
        """True if every node reports key changes itself (client tracking), so writes
        that bypass scalekit are seen too; False while a node is unknown or lacks it."""
        return all(listener.tracking is True for listener in self._listeners)

    @property
    def state(self) -> str:
        """`"trusted"`, `"permission denied"` (logged; the local layer is bypassed) or
        `"untrusted"` (connecting, or a node's heartbeat is late)."""
        if self.connected:
            return "trusted"
        if any(listener.denied is not None for listener in self._listeners):
            return "permission denied"
        return "untrusted"

    def sync(self, timeout: float) -> bool:
        """Wait until every write Redis acknowledged before this call has been applied here.

        Returns True once every node has answered a heartbeat sent after the
        call began (so its invalidations are in), False after *timeout* seconds.
        """
        start = self._clock()
        with self._synced:
            return self._synced.wait_for(
                lambda: self._trusted_until - self.max_staleness > start, timeout
            )

    def _refresh_trust(self) -> None:
        with self._lock:
            self._trusted_until = min(lst.trusted_until for lst in self._listeners)
        _emit.near_trust(self)
        with self._synced:
            self._synced.notify_all()

    def _distrust(self, listener: Listener) -> None:
        listener.trusted_until = _NEVER
        self._refresh_trust()
        self.clear_local()

    def _invalidated(self, data: Any) -> None:
        with self._lock:
            self._messages += 1
        if data is None:  # FLUSHDB / FLUSHALL
            self.clear_local()
            return
        if isinstance(data, bytes):  # the cache's channel: the user key itself
            self._drop(data.decode())
            return
        prefix = f"{self.remote.namespace}:{{".encode()
        for name in data:
            # Only value keys matter: `ns:{k}`; `:ver` and `:lease` keys change with them.
            if name.startswith(prefix) and name.endswith(b"}"):
                self._drop(name[len(prefix) : -1].decode(errors="replace"))

    def close(self) -> None:
        """Stop the listener threads and empty the local layer, within `CLOSE_TIMEOUT` seconds.

        Each listener's connections are shut down, which ends a read it is
        blocked in at once. A listener still connecting to an unreachable node
        when the time is up is left to end by itself (within the client's
        connect timeouts and retries); it serves and changes nothing meanwhile,
        since the local layer is already out of use.
        """
        _LIVE.discard(self)
        self._stop.set()
        self._trusted_until = _NEVER
        with self._topology:
            listeners = list(self._listeners)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        for listener in listeners:
            listener.abort()
        for listener in listeners:
            listener.join(max(0.0, deadline - time.monotonic()))
        self.clear_local()

    def __enter__(self) -> NearCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"NearCache(remote={self.remote!r}, state={self.state!r})"
