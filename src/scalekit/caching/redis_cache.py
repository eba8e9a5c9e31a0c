"""A cache tier on Redis: cache-aside without stale overwrites or stampedes.

Per user key ``k`` in namespace ``ns`` three Redis keys share the hash tag
``{k}``: the value ``ns:{k}``, its version ``ns:{k}:ver`` and the load lease
``ns:{k}:lease`` (layout and scripts in `scalekit.caching._redis_scripts`).
Every write draws a new random 128-bit version. A loader's write-back
carries the version it read when it took the lease and is applied by a
script only if the lease is still its own and the version is unchanged, so
a slow loader never overwrites a newer write, even if the `:ver` key
expired or was evicted meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import redis
import redis.cluster

from .._validation import fraction, non_empty_str, non_negative_number, positive_number
from ..exceptions import (
    BackendError,
    BackendUnavailableError,
    CacheLoadTimeoutError,
    ConfigurationError,
)
from ..sharding.placement import key_slot
from . import _redis_scripts as scripts
from ._single_flight import SingleFlight
from .serializers import Serializer, resolve_serializer

__all__ = ["CacheLoadTimeoutError", "RedisCache", "RedisCacheStats"]

T = TypeVar("T")
_MISS: Any = object()
_UNAVAILABLE = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.RedisClusterException,
)


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
    this process), `stale_served` and `fallbacks` (loader called with Redis
    unavailable).
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


class RedisCache:
    """Namespaced cache-aside over a `redis.Redis` or `redis.cluster.RedisCluster`.

    Example:
        >>> cache = RedisCache(redis.Redis(), namespace="goods", ttl=300)   # doctest: +SKIP
        >>> cache.get_or_load("42", lambda: db.load_goods(42))              # doctest: +SKIP

    Args:
        client: A client the caller configured (TLS, ACL, pool, timeouts, retry
            policy). Must not use `decode_responses`. Every call returns or
            raises within [call_timeout][scalekit.caching.redis_cache.RedisCache.call_timeout],
            which counts the client's retries.
        namespace: Prefix of every key (no `{` or `}`).
        ttl: Seconds a written value lives; each write gets `ttl * (1 ± jitter)`.
        serializer: `"json"` (default), `"msgpack"`, `"pickle"` (by name only:
            decoding pickle runs code) or a `Serializer`. A value the serializer
            cannot read back exactly is refused at write time.
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
        fallback: If Redis is unavailable, `get_or_load` calls the loader
            directly instead of raising (once per key at a time in this process).
        notify: Publish each write and invalidation on `channel` (read by a
            `NearCache` on a server without client tracking).
        clock: Wall clock in seconds, shared by all processes (fresh-until stamps).
        rng: Random source for TTL jitter.

    Raises:
        ConfigurationError: On any invalid argument.

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
            raise ConfigurationError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, got {client!r}"
            )
        if client.get_encoder().decode_responses:
            raise ConfigurationError(
                "client must be created with decode_responses=False, got decode_responses=True"
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
        self._rng = rng if rng is not None else random.Random()
        self._rng_lock = threading.Lock()
        self._lease_ms = max(1, round(self.lease_ttl * 1000))
        self._counters = _Counters()
        self._flight = SingleFlight()
        self._call_bound = self._call_timeout()
        self._set = client.register_script(scripts.SET)
        self._invalidate = client.register_script(scripts.INVALIDATE)
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._write_back = client.register_script(scripts.WRITE_BACK)
        self._release = client.register_script(scripts.RELEASE)

    def _call_timeout(self) -> float:
        """Worst-case seconds of one call with the client's timeouts and retry policy."""
        if not self._cluster:
            kwargs = self._client.connection_pool.connection_kwargs  # type: ignore[union-attr]
            return scripts.retry_bound(kwargs.get("retry"), scripts.attempt_bound(kwargs))
        cluster: Any = self._client
        kwargs = cluster.nodes_manager.connection_kwargs
        node = scripts.retry_bound(kwargs.get("retry"), scripts.attempt_bound(kwargs))
        return scripts.retry_bound(cluster.retry, node)

    @property
    def call_timeout(self) -> float:
        """Worst-case seconds one Redis call of this cache takes to return or raise.

        Computed from the client as configured: each attempt may take
        `socket_connect_timeout + socket_timeout`, repeated by the client's
        retry policy with its longest backoff sleeps in between (and on a
        `RedisCluster` by the cluster's retry policy again). `inf` if the
        client has no socket timeout or retries forever.
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
        if not isinstance(key, str) or not key or key[0] == "}":
            raise ConfigurationError(
                f"key must be a non-empty str not starting with '}}', got {key!r}"
            )
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

    def _decode(self, data: Any, default: Any) -> Any:
        """The value in a stored record, or *default* if missing, negative or stale."""
        if data is None:
            return default
        _, fresh_until, payload = data.split(b":", 2)
        if fresh_until != b"0" and int(fresh_until) <= self._clock() * 1000:
            return default
        if data[0] == 0x6E:  # b"n": remembered "not found"
            return default
        return self.serializer.loads(payload)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise BackendUnavailableError(
                f"Redis unavailable for cache {self.namespace!r}: {exc}"
            ) from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis failed for cache {self.namespace!r}: {exc}") from exc

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
    def get(self, key: str, default: Any = None) -> Any:
        """The fresh value of *key*, or *default*. Runtime complexity: O(1), one round trip."""
        return self._decode(self._call(self._client.get, self._name(key)), default)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """A dict of the keys that hold a fresh value.

        Runtime complexity: O(n): one MGET, or on a cluster one MGET per hash
        slot, pipelined in one round trip per node.

        Raises:
            BackendUnavailableError: Redis is unreachable.
        """
        groups = self._groups(keys)
        names = [[self._name(k) for k in group] for group in groups]
        if len(names) == 1:
            replies = [self._call(self._client.mget, names[0])]
        else:
            replies = self._pipelined([(("MGET", *n), key_slot(n[0].encode())) for n in names])
        found: dict[str, Any] = {}
        for group, reply in zip(groups, replies, strict=True):
            for key, data in zip(group, reply, strict=True):
                value = self._decode(data, _MISS)
                if value is not _MISS:
                    found[key] = value
        return found

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Write *value* under a new version and publish an invalidation.

        Runtime complexity: O(1), one script call.

        Raises:
            BackendUnavailableError: Redis is unreachable.
            ValueError: The serializer cannot round-trip *value*.
        """
        self.set_many({key: value}, ttl)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
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
    def get_or_load(self, key: str, loader: Callable[[], Any], *, ttl: float | None = None) -> Any:
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

        Runtime complexity: one round trip on a hit; 2-3 plus the load on a miss.
        """
        return self._get_or_load(key, loader, ttl)[0]

    def _get_or_load(
        self, key: str, loader: Callable[[], Any], ttl: float | None
    ) -> tuple[Any, bool]:
        """(value, fresh): *fresh* is False for a stale or uncached (fallback) value."""
        name = self._name(key)
        data = None
        try:
            data = self._call(self._client.get, name)
        except BackendUnavailableError:
            if not self.fallback:
                raise
        value = self._decode(data, _MISS)
        if value is not _MISS:
            self._counters.add("hits")
            return value, True
        if self.stale_ttl and data is not None and data[0] == 0x76:
            # A stale value is kept: whoever finds the lease taken gets it at once,
            # so callers in this process need not queue behind one another.
            return self._miss(name, loader, ttl)
        leader: list[bool] = []

        def lead() -> tuple[Any, bool]:
            leader.append(True)
            return self._miss(name, loader, ttl)

        result: tuple[Any, bool] = self._flight.run(
            name, lead, self.wait_timeout, self._timeout_error(name)
        )
        if not leader:
            self._counters.add("shared")
        return result

    def _timeout_error(self, name: str) -> Callable[[], Exception]:
        return lambda: CacheLoadTimeoutError(
            f"no value for {name!r} within wait_timeout={self.wait_timeout}s "
            "while another caller held the load lease"
        )

    def _miss(self, name: str, loader: Callable[[], Any], ttl: float | None) -> tuple[Any, bool]:
        ran: list[bool] = []

        def tracked() -> Any:
            ran.append(True)
            return loader()

        try:
            return self._load(name, tracked, ttl)
        except BackendUnavailableError:
            if not self.fallback or ran:  # never run the loader twice
                raise
            self._counters.add("fallbacks")
            return loader(), False

    def _load(self, name: str, loader: Callable[[], Any], ttl: float | None) -> tuple[Any, bool]:
        self._counters.add("misses")
        keys = [name, name + ":ver", name + ":lease"]
        token = os.urandom(8).hex()
        deadline = time.monotonic() + self.wait_timeout
        delay = 0.002
        waited = False
        while True:
            reply = self._call(
                self._acquire,
                keys=keys,
                args=[token, self._lease_ms, round(self._clock() * 1000), _version()],
            )
            if reply[0] == 1:
                return self._hit_after_wait(reply[1], waited), True
            stale = reply[-1]
            if reply[0] == 2:
                return self._run_loader(keys, token, reply[1], loader, ttl)
            if self.stale_ttl and stale is not None and stale[0] == 0x76:  # b"v": kept stale
                self._counters.add("stale_served")
                return self.serializer.loads(stale.split(b":", 2)[2]), False
            if not waited:
                waited = True
                self._counters.add("waits")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout_error(name)()
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _hit_after_wait(self, data: bytes, waited: bool) -> Any:
        if not waited:
            self._counters.add("hits")
        return None if data[0] == 0x6E else self.serializer.loads(data.split(b":", 2)[2])

    def _run_loader(
        self,
        keys: list[str],
        token: str,
        version: bytes,
        loader: Callable[[], Any],
        ttl: float | None,
    ) -> tuple[Any, bool]:
        self._counters.add("loads")
        try:
            value = loader()
            payload = b"" if value is None else self.serializer.dumps(value)
        except BaseException:
            self._counters.add("load_errors")
            # The lease expires by itself if Redis is gone; the loader's error matters more.
            with contextlib.suppress(BackendError):
                self._call(self._release, keys=[keys[2]], args=[token])
            raise
        try:
            if value is None and self.negative_ttl is None:
                self._call(self._release, keys=[keys[2]], args=[token])
                return None, False
            kind = "v" if value is not None else "n"
            fresh_until, px = self._expiry(ttl if value is not None else self.negative_ttl)
            user_key = keys[0][len(self.namespace) + 2 : -1]
            written = self._call(
                self._write_back,
                keys=keys,
                args=[
                    token,
                    version,
                    kind,
                    fresh_until,
                    px,
                    payload,
                    self._lease_ms,
                    self._channel_arg,
                    user_key,
                    _version(),
                ],
            )
        except BackendUnavailableError:
            if self.fallback:
                return value, False  # loaded once already: return it uncached
            raise
        self._counters.add("writebacks" if written == 1 else "writebacks_rejected")
        return value, written == 1

    def __repr__(self) -> str:
        return (
            f"RedisCache(namespace={self.namespace!r}, ttl={self.ttl}, "
            f"serializer={self.serializer.name!r})"
        )
