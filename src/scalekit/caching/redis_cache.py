"""A cache tier on Redis: cache-aside without stale overwrites or stampedes.

Per user key ``k`` in namespace ``ns`` three Redis keys share the hash tag
``{k}``, so a Lua script can touch them together on a Redis Cluster:

* ``ns:{k}`` the value: ``<kind><version>:<fresh-until ms>:<payload>``,
  kind ``v`` (a value) or ``n`` (remembered "not found");
* ``ns:{k}:ver`` the key's version, bumped by every write and invalidation
  and kept at least ``lease_ttl`` longer than any lease that could read it;
* ``ns:{k}:lease`` the load lease, a random token with a short expiry.

A loader's write-back carries the version it read when it took the lease
and is applied by a script only if the lease is still its own and the
version is unchanged, so a slow loader never overwrites a newer write.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

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

# Shared by the scripts: a value is fresh if its fresh-until stamp is 0 or in the future.
_FRESH = (
    "local function fresh(v, now) local f = tonumber(string.match(v, '^.%d+:(%d+):')) "
    "return f == 0 or f > now end\n"
)

# KEYS: value1, ver1, value2, ver2, ... ARGV: channel, lease_ms, then per key
# (user key, kind, fresh_ms, px, payload).
_SET = """
local ch, lease = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS, 2 do
  local a = 3 + (i - 1) / 2 * 5
  local px = tonumber(ARGV[a + 3])
  local ver = tonumber(redis.call('GET', KEYS[i + 1]) or '0') + 1
  redis.call('SET', KEYS[i + 1], ver, 'PX', math.max(px, lease))
  redis.call('SET', KEYS[i], ARGV[a + 1] .. ver .. ':' .. ARGV[a + 2] .. ':' .. ARGV[a + 4],
             'PX', px)
  if ch ~= '' then redis.call('PUBLISH', ch, ARGV[a]) end
end
return 1
"""

# KEYS: value, ver. ARGV: channel, lease_ms, user key. Returns 1 if a value was removed.
_INVALIDATE = """
local ver = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
redis.call('SET', KEYS[2], ver, 'PX', ARGV[2])
local removed = redis.call('DEL', KEYS[1])
if ARGV[1] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[3]) end
return removed
"""

# KEYS: value, ver, lease. ARGV: token, lease_ms, now_ms.
# {1, value} fresh hit | {2, version, stale or false} lease taken | {3, stale or false} busy
_ACQUIRE = (
    _FRESH
    + """
local v = redis.call('GET', KEYS[1])
if v and fresh(v, tonumber(ARGV[3])) then return {1, v} end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, redis.call('GET', KEYS[2]) or '0', v}
end
return {3, v}
"""
)

# KEYS: value, ver, lease. ARGV: token, version, kind, fresh_ms, px, payload, lease_ms.
# 1 written | 0 lease lost | -1 version changed since the lease was taken
_WRITE_BACK = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[3])
local cur = redis.call('GET', KEYS[2]) or '0'
if cur ~= ARGV[2] then return -1 end
local px = tonumber(ARGV[5])
redis.call('SET', KEYS[2], cur, 'PX', math.max(px, tonumber(ARGV[7]), redis.call('PTTL', KEYS[2])))
redis.call('SET', KEYS[1], ARGV[3] .. cur .. ':' .. ARGV[4] .. ':' .. ARGV[6], 'PX', px)
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCacheStats:
    """Counters of one :class:`RedisCache` in this process (thread-safe)."""

    __slots__ = (
        "_lock",
        "fallbacks",
        "hits",
        "load_errors",
        "loads",
        "misses",
        "stale_served",
        "waits",
        "writebacks",
        "writebacks_rejected",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hits = self.misses = self.loads = self.load_errors = 0
        self.writebacks = self.writebacks_rejected = self.waits = 0
        self.stale_served = self.fallbacks = 0

    def add(self, name: str, n: int = 1) -> None:
        """Add *n* to the counter *name*."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def as_dict(self) -> dict[str, int]:
        """A snapshot of every counter."""
        with self._lock:
            return {n: getattr(self, n) for n in self.__slots__ if n != "_lock"}


class RedisCache:
    """Namespaced cache-aside over a ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    >>> cache = RedisCache(redis.Redis(), namespace="goods", ttl=300)   # doctest: +SKIP
    >>> cache.get_or_load("42", lambda: db.load_goods(42))              # doctest: +SKIP

    Parameters:
        client: a client the caller configured (TLS, ACL, pool, timeouts); its
            ``socket_timeout`` bounds every call. Must not use ``decode_responses``.
        namespace: prefix of every key (no ``{`` or ``}``).
        ttl: seconds a written value lives; each write gets ``ttl * (1 ± jitter)``.
        serializer: ``"json"`` (default), ``"msgpack"``, ``"pickle"`` (by name only:
            decoding pickle runs code) or a :class:`Serializer`.
        jitter: spread of TTLs in [0, 1], 0.1 = ±10%, so keys written together
            do not expire together.
        lease_ttl: seconds a loader holds the lease; a loader slower than this
            returns its value but does not write it back.
        wait_timeout: seconds a caller waits for another's load before
            :class:`CacheLoadTimeoutError` (default ``lease_ttl``).
        stale_ttl: seconds a value is kept after it goes stale; while kept,
            callers that find a load in progress get it at once
            (stale-while-revalidate). 0 disables.
        negative_ttl: if set, a loader returning ``None`` is remembered as "not
            found" for this many seconds; otherwise ``None`` is not cached.
        fallback: if Redis is unavailable, ``get_or_load`` calls the loader
            directly instead of raising.
        notify: publish each write and invalidation on :attr:`channel`, which
            :class:`~scalekit.caching.near_cache.NearCache` listens to.
        clock: wall clock in seconds, shared by all processes (fresh-until stamps).
        rng: random source for TTL jitter.

    Raises:
        ConfigurationError: on any invalid argument.
        BackendUnavailableError: (from every call) Redis unreachable within the
            client's timeouts.

    Thread-safe: share one instance across threads. Each call costs one round
    trip (``get_many``/``set_many``: one per hash slot on a cluster).
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
            self.lease_ttl
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
        self.stats = RedisCacheStats()
        self._set = client.register_script(_SET)
        self._invalidate = client.register_script(_INVALIDATE)
        self._acquire = client.register_script(_ACQUIRE)
        self._write_back = client.register_script(_WRITE_BACK)
        self._release = client.register_script(_RELEASE)

    @property
    def client(self) -> redis.Redis | redis.cluster.RedisCluster:
        """The Redis client this cache was given."""
        return self._client

    @property
    def notifies(self) -> bool:
        """True if writes and invalidations are published on :attr:`channel`."""
        return bool(self._channel_arg)

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
        """Keys grouped so each group can go in one multi-key command."""
        keys = list(keys)
        if not self._cluster:
            return [keys] if keys else []
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(key_slot(self._name(key).encode()), []).append(key)
        return list(groups.values())

    # -- plain operations --------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The fresh value of *key*, or *default*. Runtime complexity: O(1), one round trip."""
        return self._decode(self._call(self._client.get, self._name(key)), default)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """A dict of the keys that hold a fresh value.

        Runtime complexity: O(n), one MGET per hash slot group.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        found: dict[str, Any] = {}
        for group in self._groups(keys):
            names = [self._name(k) for k in group]
            for key, data in zip(group, self._call(self._client.mget, names), strict=True):
                value = self._decode(data, _MISS)
                if value is not _MISS:
                    found[key] = value
        return found

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Write *value*, bump the key's version and publish an invalidation.

        Runtime complexity: O(1), one script call.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        self.set_many({key: value}, ttl)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        """Write every item, each with its own jittered TTL, bumping each version.

        Runtime complexity: O(n), one script per hash slot group.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        for group in self._groups(mapping):
            keys: list[str] = []
            args: list[Any] = [self._channel_arg, self._lease_ms]
            for key in group:
                name = self._name(key)
                keys += [name, name + ":ver"]
                fresh_until, px = self._expiry(ttl)
                args += [key, "v", fresh_until, px, self.serializer.dumps(mapping[key])]
            self._call(self._set, keys=keys, args=args)

    def delete(self, key: str) -> bool:
        """Remove *key*'s value and bump its version; True if a value was there.

        Runtime complexity: O(1), one script call.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        name = self._name(key)
        removed = self._call(
            self._invalidate,
            keys=[name, name + ":ver"],
            args=[self._channel_arg, self._lease_ms, key],
        )
        return bool(removed)

    def invalidate(self, key: str) -> None:
        """Drop *key*'s value and reject any load in flight (call after changing the source).

        Runtime complexity: O(1), one script call.
        Raises BackendUnavailableError if Redis is unreachable.
        """
        self.delete(key)

    # -- cache-aside -------------------------------------------------------
    def get_or_load(self, key: str, loader: Callable[[], Any], *, ttl: float | None = None) -> Any:
        """The cached value of *key*, or *loader*'s result with one loader across all processes.

        On a miss one caller takes the lease and runs *loader*; the others
        poll (bounded backoff) until the value appears, or get the stale value
        at once if ``stale_ttl`` kept one. A loader exception is re-raised and
        not cached; the lease is released so the next caller retries.

        Raises:
            CacheLoadTimeoutError: no value within ``wait_timeout``.
            BackendUnavailableError: Redis unavailable and ``fallback`` is False.

        Runtime complexity: one round trip on a hit; 2-3 plus the load on a miss.
        """
        name = self._name(key)
        ran: list[bool] = []

        def tracked() -> Any:
            ran.append(True)
            return loader()

        try:
            value = self._decode(self._call(self._client.get, name), _MISS)
            if value is not _MISS:
                self.stats.add("hits")
                return value
            return self._load(name, tracked, ttl)
        except BackendUnavailableError:
            if not self.fallback or ran:  # never run the loader twice
                raise
            self.stats.add("fallbacks")
            return loader()

    def _load(self, name: str, loader: Callable[[], Any], ttl: float | None) -> Any:
        self.stats.add("misses")
        keys = [name, name + ":ver", name + ":lease"]
        token = secrets.token_hex(8)
        deadline = time.monotonic() + self.wait_timeout
        delay = 0.002
        waited = False
        while True:
            reply = self._call(
                self._acquire, keys=keys, args=[token, self._lease_ms, round(self._clock() * 1000)]
            )
            if reply[0] == 1:
                return self._hit_after_wait(reply[1], waited)
            stale = reply[-1]
            if reply[0] == 2:
                return self._run_loader(keys, token, reply[1], loader, ttl)
            if self.stale_ttl and stale is not None and stale[0] == 0x76:  # b"v": kept stale
                self.stats.add("stale_served")
                return self.serializer.loads(stale.split(b":", 2)[2])
            if not waited:
                waited = True
                self.stats.add("waits")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CacheLoadTimeoutError(
                    f"no value for {name!r} within wait_timeout={self.wait_timeout}s "
                    "while another caller held the load lease"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)

    def _hit_after_wait(self, data: bytes, waited: bool) -> Any:
        if not waited:
            self.stats.add("hits")
        return None if data[0] == 0x6E else self.serializer.loads(data.split(b":", 2)[2])

    def _run_loader(
        self,
        keys: list[str],
        token: str,
        version: bytes,
        loader: Callable[[], Any],
        ttl: float | None,
    ) -> Any:
        self.stats.add("loads")
        try:
            value = loader()
            payload = b"" if value is None else self.serializer.dumps(value)
        except BaseException:
            self.stats.add("load_errors")
            # The lease expires by itself if Redis is gone; the loader's error matters more.
            with contextlib.suppress(BackendError):
                self._call(self._release, keys=[keys[2]], args=[token])
            raise
        try:
            if value is None and self.negative_ttl is None:
                self._call(self._release, keys=[keys[2]], args=[token])
                return None
            kind = "v" if value is not None else "n"
            fresh_until, px = self._expiry(ttl if value is not None else self.negative_ttl)
            written = self._call(
                self._write_back,
                keys=keys,
                args=[token, version, kind, fresh_until, px, payload, self._lease_ms],
            )
        except BackendUnavailableError:
            if self.fallback:
                return value  # loaded once already: return it uncached
            raise
        self.stats.add("writebacks" if written == 1 else "writebacks_rejected")
        return value

    def __repr__(self) -> str:
        return (
            f"RedisCache(namespace={self.namespace!r}, ttl={self.ttl}, "
            f"serializer={self.serializer.name!r})"
        )
