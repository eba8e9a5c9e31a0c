"""A cache tier on Redis: cache-aside without stale overwrites or stampedes.

Per user key `k` in namespace `ns` three Redis keys share the hash tag
`{k}`: the value `ns:{k}`, its version `ns:{k}:ver` and the load lease
`ns:{k}:lease` (layout and scripts in `scalekit.caching._redis_scripts`).
Every write draws a new random 128-bit version. A loader's write-back
carries the version it read when it took the lease and is applied by a
script only if the lease is still its own and the version is unchanged, so
a slow loader never overwrites a newer write, even if the `:ver` key
expired or was evicted meanwhile.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

try:
    import redis
    import redis.cluster
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from .._validation import (
    fraction,
    non_empty_str,
    non_negative_number,
    positive_number,
    random_source,
)
from ..exceptions import (
    ArgumentTypeError,
    BackendError,
    BackendUnavailableError,
    CacheLoadTimeoutError,
    ConfigurationError,
)
from ..sharding.placement import key_slot
from . import _cache_aside
from . import _redis_scripts as scripts
from ._cache_aside import RedisCacheStats, _Counters, _version
from ._redis_deadline import DeadlineExceeded, call_with_deadline, watch_pool
from .serializers import Serializer, resolve_serializer

__all__ = ["CacheLoadTimeoutError", "RedisCache", "RedisCacheStats"]

T = TypeVar("T")
if TYPE_CHECKING:  # a PEP 696 default, which type checkers read from typing_extensions
    from typing_extensions import TypeVar as _TypeVar

    #: The type of the values a cache holds; `RedisCache(...)` alone is `RedisCache[Any]`.
    V = _TypeVar("V", default=Any)
else:  # typing.TypeVar takes a default from Python 3.13 on
    V = TypeVar("V")
D = TypeVar("D")
_MISS: Any = object()
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,
    DeadlineExceeded,
)


# KEYS: value, ver. ARGV: record read, new version, lease_ms, channel, user key.
# Deletes the value under a new version (as INVALIDATE) only if it still holds the
# undecodable record read; 1 if it did.
_DROP_UNDECODABLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return redis.call('DEL', KEYS[1])
"""

_REDIS_PACKAGE = os.path.dirname(os.path.abspath(redis.__file__)) + os.sep


def _driver_fault(exc: BaseException) -> bool:
    """True if *exc* (not a `RedisError`) was raised inside redis-py's own code.

    redis-py 8 follows a Cluster `ASK` redirect to a node missing from its
    map (a slot migrating to a master that joined after the client started)
    and fails with `AttributeError` there; a caller of the cache gets no
    answer from Redis either way.
    """
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_REDIS_PACKAGE)


def _busy(exc: redis.ResponseError) -> bool:
    """True if Redis answered that it cannot serve commands now (a script or module
    command running past `busy-reply-threshold`): unavailable, like a frozen server."""
    return re.search(r"(^|error: )(BUSY|MASTERDOWN|TRYAGAIN) ", str(exc)) is not None


def _refused(exc: redis.ResponseError) -> bool:
    """True if *exc* is an ACL refusal (as a command's reply or from inside a script)."""
    text = str(exc)
    return isinstance(exc, redis.exceptions.NoPermissionError) or (
        "NOPERM" in text or "can't publish" in text or "no permissions" in text
    )


class RedisCache(Generic[V]):
    """Namespaced cache-aside over a `redis.Redis` or `redis.cluster.RedisCluster`.

    Generic over the type of its values: `RedisCache[Product](client, ...)`
    (or an annotation, `cache: RedisCache[Product] = RedisCache(...)`) makes
    `get` return `Product | None`, `get_or_load` `Product`, and `set` accept
    only a `Product`; a cache created without one is `RedisCache[Any]`. The
    type is a promise to the type checker: the serializer decodes what was
    stored, and does not check it at run time.

    Example:
        ```python
        cache = RedisCache(redis.Redis(), namespace="goods", ttl=300)
        cache.get_or_load("42", lambda: db.load_goods(42))
        ```

    Args:
        client: A client the caller configured (TLS, ACL, pool, timeouts, retry
            policy). Must not use `decode_responses`. Against a server that
            answers nothing, slowly or not at all, every call returns or raises
            within [call_timeout][scalekit.caching.redis_cache.RedisCache.call_timeout],
            which counts the pool wait and the client's retries and is
            enforced as a deadline. Its retry
            backoff must be one of redis-py's backoff classes (their longest
            sleep is known).
        namespace: Prefix of every key (no `{` or `}`).
        ttl: Seconds a written value lives; each write gets `ttl * (1 ± jitter)`.
        serializer: `"json"` (default), `"msgpack"`, `"pickle"` (by name only:
            decoding pickle runs code) or a `Serializer`. A value the serializer
            cannot read back exactly is refused at write time (pickle: one
            that fails to unpickle). A stored record the serializer cannot
            read (another tool's bytes, another serializer's value) is a
            counted miss (`stats().undecodable`); `get_or_load` replaces it.
        jitter: Spread of TTLs in [0, 1], 0.1 = ±10%, so keys written together
            do not expire together.
        lease_ttl: Seconds a loader holds the lease; a loader slower than this
            returns its value but does not write it back.
        wait_timeout: Seconds a caller waits for another's load before
            `CacheLoadTimeoutError`. The default, `2 * lease_ttl + 1`, outlives
            a holder that died mid-load: its lease expires, a waiter takes it
            over and loads, and the others get that value.
        stale_ttl: Seconds a value is kept after it goes stale; while kept,
            callers that find a load in progress get it at once
            (stale-while-revalidate). 0 disables.
        negative_ttl: If set, a loader returning `None` is remembered as "not
            found" for this many seconds; otherwise `None` is not cached.
        fallback: If Redis is unavailable, or answers but refuses writes
            (`OOM` under `noeviction`, `READONLY`), `get_or_load` calls the loader
            directly instead of raising (once per key at a time in this process).
        notify: Publish each write and invalidation on `channel` (read by a
            `NearCache` with `invalidation="channel"`); the Redis user must
            be allowed to `PUBLISH` there (checked at construction).
        clock: Wall clock in seconds, shared by all processes (fresh-until stamps).
        rng: Random source for TTL jitter: any object with a `uniform(a, b)`
            method (checked at construction).

    Raises:
        ArgumentTypeError: `rng` has no callable `uniform`, or another
            argument has the wrong type.
        ConfigurationError: On any invalid argument, a `RedisCluster` that
            reads from replicas (`read_from_replicas`,
            `load_balancing_strategy`), a retry backoff whose longest sleep is
            unknown, or (with `notify=True`) a Redis user that may not publish
            on the cache's channel.

    Every call raises `BackendUnavailableError` if Redis is unreachable
    within `call_timeout`. Thread-safe: share one instance across threads.
    Each call costs one round trip (`get_many`/`set_many`: one per node on a
    cluster).
    """

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        namespace: str,
        ttl: float = 300.0,
        serializer: str | Serializer = "json",
        jitter: float = 0.1,
        lease_ttl: float = 10.0,
        wait_timeout: float | None = None,
        stale_ttl: float = 0.0,
        negative_ttl: float | None = None,
        fallback: bool = False,
        notify: bool = True,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            raise ArgumentTypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, got {client!r}"
            )
        if client.get_encoder().decode_responses:
            raise ConfigurationError(
                "client must be created with decode_responses=False, got decode_responses=True"
            )
        if getattr(client, "read_from_replicas", False) or getattr(
            client, "load_balancing_strategy", None
        ):
            raise ConfigurationError(
                "client must read from primaries only, got a RedisCluster with "
                "read_from_replicas/load_balancing_strategy set: a replica lags its primary, "
                "so a read after an acknowledged write or invalidation could return the old "
                "value, and a NearCache could keep it (use a separate client for replica reads)"
            )
        non_empty_str("namespace", namespace)
        if "{" in namespace or "}" in namespace:
            raise ConfigurationError(
                f"namespace must not contain '{{' or '}}' (they are hash tags), got {namespace!r}"
            )
        self._client = client
        self._cluster = isinstance(client, redis.cluster.RedisCluster)
        self.namespace = namespace
        self.ttl = positive_number("ttl", ttl)
        self.serializer = resolve_serializer(serializer)
        self.jitter = fraction("jitter", jitter)
        self.lease_ttl = positive_number("lease_ttl", lease_ttl)
        self.wait_timeout = (
            2 * self.lease_ttl + 1.0
            if wait_timeout is None
            else non_negative_number("wait_timeout", wait_timeout)
        )
        self.stale_ttl = non_negative_number("stale_ttl", stale_ttl)
        self.negative_ttl = (
            None if negative_ttl is None else positive_number("negative_ttl", negative_ttl)
        )
        self.fallback = bool(fallback)
        self.channel = f"{namespace}:__invalidations__"
        self._channel_arg = self.channel if notify else ""
        self._clock = clock
        random_source("rng", rng, "uniform", "uniform(a, b)")
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()
        self._lease_ms = max(1, round(self.lease_ttl * 1000))
        self._counters = _Counters()
        self._flight = _cache_aside.FreshFlights()
        self._call_bound = self._call_timeout()
        self._connect = self._connect_timeout()
        self._set = client.register_script(scripts.SET)
        self._invalidate = client.register_script(scripts.INVALIDATE)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._write_back = client.register_script(scripts.WRITE_BACK)
        self._release = client.register_script(scripts.RELEASE)
        self._read = client.register_script(scripts.READ)
        self._drop = client.register_script(_DROP_UNDECODABLE)
        if self._channel_arg:
            self._check_publish()

    def _check_publish(self) -> None:
        """Refuse a client that may not publish on `channel` (every write publishes on it).

        One `PUBLISH channel ""` (an empty message, ignored by listeners), under a
        deadline of one attempt (the pool wait, then `socket_connect_timeout +
        socket_timeout`) rather than `call_timeout`, so a constructor never waits
        through the retry policy. If Redis is unreachable (or slower than that)
        the check is skipped: a write refused later still leaves nothing
        written, since the scripts publish before they write.
        """
        self._watch_pools()
        try:
            call_with_deadline(
                min(self._call_bound, self._one_attempt()),
                self._connect,
                self._client.publish,
                self.channel,
                b"",
            )
        except _UNAVAILABLE:
            return
        except redis.ResponseError as exc:
            raise ConfigurationError(
                f"the Redis user of cache {self.namespace!r} may not PUBLISH on channel "
                f"{self.channel!r} ({exc}); every write publishes there with notify=True. "
                f"Grant the channel (ACL SETUSER <user> &{self.channel}) or pass notify=False "
                "(then a NearCache needs client tracking)"
            ) from exc

    def _call_timeout(self) -> float:
        """Worst-case seconds of one call with the client's pool, timeouts and retry policy."""
        if not self._cluster:
            pool: Any = self._client.connection_pool  # type: ignore[union-attr]
            kwargs = pool.connection_kwargs
            attempts = scripts.retry_bound(kwargs.get("retry"), scripts.attempt_bound(kwargs))
            return scripts.pool_wait_bound(pool) + attempts
        cluster: Any = self._client
        kwargs = cluster.nodes_manager.connection_kwargs
        wait = max(
            (
                scripts.pool_wait_bound(n.redis_connection.connection_pool)
                for n in cluster.get_nodes()
            ),
            default=0.0,
        )
        node = wait + scripts.retry_bound(kwargs.get("retry"), scripts.attempt_bound(kwargs))
        return scripts.retry_bound(cluster.retry, node)

    def _one_attempt(self) -> float:
        """Worst-case seconds of one attempt: the pool wait, then a connect and a read."""
        if not self._cluster:
            pool: Any = self._client.connection_pool  # type: ignore[union-attr]
            return scripts.pool_wait_bound(pool) + scripts.attempt_bound(pool.connection_kwargs)
        cluster: Any = self._client
        wait = max(
            (
                scripts.pool_wait_bound(n.redis_connection.connection_pool)
                for n in cluster.get_nodes()
            ),
            default=0.0,
        )
        return wait + scripts.attempt_bound(cluster.nodes_manager.connection_kwargs)

    def _connect_timeout(self) -> float:
        """Longest time one connect takes (`socket_connect_timeout`, else `socket_timeout`)."""
        if not self._cluster:
            pool: Any = self._client.connection_pool  # type: ignore[union-attr]
            kwargs = pool.connection_kwargs
        else:
            kwargs = self._client.nodes_manager.connection_kwargs  # type: ignore[union-attr]
        connect = kwargs.get("socket_connect_timeout", kwargs.get("socket_timeout"))
        return math.inf if connect is None else float(connect)

    def _watch_pools(self) -> None:
        """Watch every pool a call may take a connection from (see `_redis_deadline`)."""
        if not self._cluster:
            watch_pool(self._client.connection_pool)  # type: ignore[union-attr]
            return
        manager: Any = self._client.nodes_manager  # type: ignore[union-attr]
        for nodes in (manager.nodes_cache, manager.startup_nodes):
            for node in list(nodes.values()):
                if node.redis_connection is not None:
                    watch_pool(node.redis_connection.connection_pool)

    @property
    def call_timeout(self) -> float:
        """Worst-case seconds one Redis call of this cache takes to return or raise,
        against a server that answers nothing (down, frozen, blackholed).

        Computed from the client as configured: the wait for a free connection
        (a `BlockingConnectionPool`'s `timeout`), then each attempt may take
        `socket_connect_timeout + socket_timeout`, repeated by the client's
        retry policy with its longest backoff sleeps in between (and on a
        `RedisCluster` by the cluster's retry policy again). `inf` if the
        client has no socket timeout, retries forever or waits forever for a
        pooled connection.

        It is enforced as a deadline: a call still running just before it
        (a reply arriving slowly in pieces, a server that keeps a retry
        policy busy) has its sockets shut down and raises
        `BackendUnavailableError`; see "When Redis fails" in the Redis
        cache docs.
        """
        return self._call_bound

    @property
    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The Redis client this cache was given."""
        return self._client

    @property
    def notifies(self) -> bool:
        """True if writes and invalidations are published on `channel`."""
        return bool(self._channel_arg)

    def stats(self) -> RedisCacheStats:
        """A snapshot of this process's counters. Runtime complexity: O(1)."""
        return self._counters.snapshot()

    # -- keys and encoding -------------------------------------------------
    def _name(self, key: str) -> str:
        if not isinstance(key, str):
            raise ArgumentTypeError(
                f"key must be a non-empty str not starting with '}}', got {key!r} "
                f"({type(key).__name__})"
            )
        if not key or key[0] == "}":
            raise ConfigurationError(
                f"key must be a non-empty str not starting with '}}', got {key!r}"
            )
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                raise ConfigurationError(
                    f"key must be encodable as UTF-8 (no lone surrogates), got {key!r}"
                ) from None
        return f"{self.namespace}:{{{key}}}"

    def _px(self, ttl: float) -> int:
        with self._rng_lock:
            factor = 1.0 + self._rng.uniform(-self.jitter, self.jitter)
        return max(1, round(ttl * factor * 1000))

    def _expiry(self, ttl: float | None) -> tuple[int, int]:
        """(fresh-until ms, Redis PX) for a value written now."""
        px = self._px(self.ttl if ttl is None else positive_number("ttl", ttl))
        if not self.stale_ttl:
            return 0, px
        return round(self._clock() * 1000) + px, px + round(self.stale_ttl * 1000)

    def _decode(self, data: Any, default: Any, undecodable: Any = _MISS) -> Any:
        """The value in a stored record, or *default* if missing, negative or stale.

        A record this cache cannot read (bytes written by another tool, or by a
        cache with another serializer on the namespace) is counted and is a miss:
        *undecodable* is returned (*default* unless given).
        """
        if data is None:
            return default
        try:
            _, fresh_until, payload = data.split(b":", 2)
            if fresh_until != b"0" and int(fresh_until) <= self._clock() * 1000:
                return default
            if data[0] == 0x6E:  # b"n": remembered "not found"
                return default
            if data[0] == 0x76:  # b"v": a value
                return self.serializer.loads(payload)
        except Exception:  # any decoder's error: a miss, never a poisoned key
            pass
        # An unknown record kind, or one its parts or the serializer cannot read.
        self._counters.add("undecodable")
        return default if undecodable is _MISS else undecodable

    def _drop_undecodable(self, name: str, data: bytes) -> None:
        """Remove the undecodable record *data* of *name* (if still there) under a new
        version, as `invalidate` does, so the next read is a miss that loads and writes
        back; a record written meanwhile is kept."""
        key = name[len(self.namespace) + 2 : -1]
        self._call(
            self._drop,
            keys=[name, name + ":ver"],
            args=[data, _version(), self._lease_ms, self._channel_arg, key],
        )

    def _fresh_deadline(self, data: bytes, pttl: int, sent: float) -> float:
        """The `time.monotonic()` instant after which *data* (read with *pttl*) is not fresh.

        *sent* is `time.monotonic()` taken before the read was sent, so the
        result is never later than the true instant: the earlier of the key's
        expiry and its fresh-until stamp (`stale_ttl`). An undecodable record
        is never fresh.
        """
        remaining = math.inf if pttl < 0 else pttl / 1000
        try:
            fresh_until = int(data.split(b":", 2)[1])
        except (ValueError, IndexError):
            return sent
        if fresh_until:
            remaining = min(remaining, fresh_until / 1000 - self._clock())
        return sent + remaining

    def _get_with_deadline(self, key: str, default: Any) -> tuple[Any, float]:
        """(fresh value or *default*, `time.monotonic()` instant it stops being fresh)."""
        sent = time.monotonic()
        reply = self._call(self._read, keys=[self._name(key)])
        if reply is None:
            return default, sent
        return self._decode(reply[0], default), self._fresh_deadline(reply[0], reply[1], sent)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._watch_pools()
        try:
            result: T = call_with_deadline(self._call_bound, self._connect, fn, *args, **kwargs)
            return result
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(
                f"Redis unavailable for cache {self.namespace!r}: {exc}"
            ) from exc
        except redis.ResponseError as exc:
            if _busy(exc):
                raise BackendUnavailableError(
                    f"Redis busy for cache {self.namespace!r}: {exc}"
                ) from exc
            if not _refused(exc):
                raise BackendError(f"Redis failed for cache {self.namespace!r}: {exc}") from exc
            raise BackendError(
                f"Redis refused a command of cache {self.namespace!r} (the call was refused "
                f"as a whole: nothing was written): {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis failed for cache {self.namespace!r}: {exc}") from exc
        except (AttributeError, KeyError) as exc:
            if not (self._cluster and _driver_fault(exc)):
                raise
            raise BackendUnavailableError(
                f"Redis Cluster unavailable for cache {self.namespace!r}: redis-py failed "
                "following a redirect to a node the client does not know (a slot migrating "
                f"to a master that joined after the client started?): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _groups(self, keys: Iterable[str]) -> list[list[str]]:
        """Keys grouped so each group can go in one multi-key command (one per hash slot)."""
        keys = list(keys)
        if not self._cluster:
            return [keys] if keys else []
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(key_slot(self._name(key).encode()), []).append(key)
        return list(groups.values())

    def _pipelined(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run raw *commands* (each on one hash slot) in one round trip per node.

        Each command is routed by the slot of its first key (passed as
        `target_nodes`, so redis-py sends no COMMAND GETKEYS to find it).
        """
        if not self._cluster:
            return [self._call(self._client.execute_command, *c) for c in commands]
        cluster: Any = self._client
        pipe = cluster.pipeline(transaction=False)
        for command, slot in commands:
            node = cluster.nodes_manager.get_node_from_slot(slot)
            pipe.execute_command(*command, target_nodes=[node])
        return self._call(pipe.execute)

    # -- plain operations --------------------------------------------------
    @overload
    def get(self, key: str) -> V | None: ...

    @overload
    def get(self, key: str, default: D) -> V | D: ...

    def get(self, key: str, default: object = None) -> object:
        """The fresh value of *key*, or *default* (`None` unless given).

        Runtime complexity: O(1), one round trip.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        return self._decode(self._call(self._client.get, self._name(key)), default)

    def get_many(self, keys: Iterable[str]) -> dict[str, V]:
        """A dict of the keys that hold a fresh value.

        Runtime complexity: O(n): one MGET, or on a cluster one MGET per hash
        slot, pipelined in one round trip per node.

        Raises:
            BackendUnavailableError: Redis is unreachable.
            ConfigurationError: *keys* is a single `str` or `bytes` (not a
                collection of keys), or holds an invalid key.
        """
        if isinstance(keys, (str, bytes)):
            raise ConfigurationError(
                f"keys must be an iterable of str keys, not a single {type(keys).__name__}, "
                f"got {keys!r}; pass [{keys!r}] for one key"
            )
        groups = self._groups(keys)
        names = [[self._name(k) for k in group] for group in groups]
        if len(names) == 1:
            replies = [self._call(self._client.mget, names[0])]
        else:
            replies = self._pipelined([(("MGET", *n), key_slot(n[0].encode())) for n in names])
        found: dict[str, V] = {}
        for group, reply in zip(groups, replies, strict=True):
            for key, data in zip(group, reply, strict=True):
                value = self._decode(data, _MISS)
                if value is not _MISS:
                    found[key] = value
        return found

    def set(self, key: str, value: V, ttl: float | None = None) -> None:
        """Write *value* under a new version and publish an invalidation.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
            ValueError: The serializer cannot round-trip *value*.
        """
        self.set_many({key: value}, ttl)

    def set_many(self, mapping: Mapping[str, V], ttl: float | None = None) -> None:
        """Write every item, each with its own jittered TTL and a new version.

        Runtime complexity: O(n): one script call, or on a cluster one per hash
        slot, pipelined in one round trip per node.

        Raises:
            BackendUnavailableError: Redis is unreachable.
            ValueError: The serializer cannot round-trip a value.
        """
        batch: list[tuple[list[str], list[Any]]] = []
        for group in self._groups(mapping):
            keys: list[str] = []
            args: list[Any] = [self._channel_arg, self._lease_ms]
            for key in group:
                name = self._name(key)
                keys += [name, name + ":ver"]
                fresh_until, px = self._expiry(ttl)
                payload = self.serializer.dumps(mapping[key])
                args += [key, "v", fresh_until, px, payload, _version()]
            batch.append((keys, args))
        if len(batch) == 1 or not self._cluster:
            for keys, args in batch:
                self._call(self._set, keys=keys, args=args)
            return
        commands = [
            (("EVALSHA", self._set.sha, len(k), *k, *a), key_slot(k[0].encode())) for k, a in batch
        ]
        try:
            self._pipelined(commands)
        except BackendError as exc:
            if not isinstance(exc.__cause__, redis.exceptions.NoScriptError):
                raise
            self._call(self._client.script_load, scripts.SET)  # on every primary
            self._pipelined(commands)

    def delete(self, key: str) -> bool:
        """Remove *key*'s value under a new version; True if a value was there.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        name = self._name(key)
        removed = self._call(
            self._invalidate,
            keys=[name, name + ":ver"],
            args=[self._channel_arg, self._lease_ms, key, _version()],
        )
        return bool(removed)

    def invalidate(self, key: str) -> None:
        """Drop *key*'s value and reject any load in flight (call after changing the source).

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        self.delete(key)

    # -- cache-aside -------------------------------------------------------
    def get_or_load(self, key: str, loader: Callable[[], V], *, ttl: float | None = None) -> V:
        """The cached value of *key*, or *loader*'s result with one loader across all processes.

        On a miss one caller takes the lease and runs *loader*; callers in
        the same process share that call, callers in other processes poll
        (bounded backoff) until the value appears, take the lease over if it
        expires, or get the stale value at once if `stale_ttl` kept one. A
        loader exception is re-raised (to every caller sharing the call) and
        not cached; the lease is released so the next caller retries.

        Raises:
            CacheLoadTimeoutError: No value within `wait_timeout`.
            BackendUnavailableError: Redis unavailable and `fallback` is False.
            InvalidStateError: *loader* called `get_or_load` on its own key
                (it would wait for itself); raised at once.

        Runtime complexity: one round trip on a hit; 2-3 plus the load on a miss.
        """
        return cast("V", self._get_or_load(key, loader, ttl)[0])

    def _get_or_load(
        self, key: str, loader: Callable[[], Any], ttl: float | None, deadline: bool = False
    ) -> tuple[Any, bool, float]:
        """(value, fresh, fresh until): *fresh* is False for a stale or uncached
        (fallback) value; *fresh until* is a `time.monotonic()` instant, exact
        (from the key's PTTL) only with *deadline* (one script call instead of GET)."""
        return _cache_aside.get_or_load(self, key, loader, ttl, deadline)

    def __repr__(self) -> str:
        return (
            f"RedisCache(namespace={self.namespace!r}, ttl={self.ttl}, "
            f"serializer={self.serializer.name!r})"
        )
