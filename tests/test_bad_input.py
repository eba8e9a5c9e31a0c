"""Every public constructor and main method, fed the usual bad values.

A user who passes `None`, a string, NaN, an infinity, `-1` or an int too
large for a float gets a `ScaleKitError` naming the argument, or the value is
accepted: never a raw `TypeError`, `OverflowError`, `AssertionError` or
`AttributeError` from deep inside. Which error is judged by the value the
table gives as working (see `_expected`): a value of another type is an
`ArgumentTypeError`, one of the right type out of range a
`ConfigurationError`. The table covers the local caches, balancing,
sharding, the locks (Redis and ZooKeeper ones too: their clients never
connect while they are constructed), the Redis cache tier and the
`scalekit.testing` constructors (none of which starts a server).
"""

from __future__ import annotations

import math
import random as random_module
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
import redis.asyncio
from kazoo.client import KazooClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from scalekit import ScaleKitError
from scalekit import balancing as B
from scalekit import caching as C
from scalekit import locking as L
from scalekit import sharding as S
from scalekit import testing as T
from scalekit.exceptions import (
    ArgumentTypeError,
    BackendUnavailableError,
    ConfigurationError,
    LockNotOwnedError,
)
from scalekit.testing.process import MAX_NODES

BAD: dict[str, Any] = {
    "None": None,
    "str": "x",
    "nan": math.nan,
    "inf": math.inf,
    "-1": -1,
    "10**400": 10**400,
}

#: Clients that are never connected: constructing a lock or a cache sends nothing.
#: No retries: a call that does go out (a RedisCache checks PUBLISH) fails at once.
REDIS = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
ASYNC_REDIS = redis.asyncio.Redis(port=1)
KAZOO = KazooClient(hosts="127.0.0.1:1")


def _remote() -> Any:
    return C.RedisCache(REDIS, namespace="n", notify=False)


#: (callable, keyword arguments that work); each keyword is replaced by each BAD value in turn.
#: The working value's type says what the parameter takes: `10` an int, `10.0`
#: a float, `"n"` a string, anything else an object (a flag, a callable, a list).
CONSTRUCTORS: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (C.LRUCache, {"maxsize": 10}),
    (C.FIFOCache, {"maxsize": 10}),
    (C.LFUCache, {"maxsize": 10}),
    (C.RRCache, {"maxsize": 10}),
    (C.SIEVECache, {"maxsize": 10}),
    (C.S3FIFOCache, {"maxsize": 10, "small_ratio": 0.1, "ghost_ratio": 0.9}),
    (C.TinyLFUCache, {"maxsize": 10}),
    (C.TTLCache, {"maxsize": 10, "ttl": 5.0}),
    (C.TLRUCache, {"maxsize": 10, "ttu": lambda key, value, now: now + 1}),
    (C.lru_cache, {"maxsize": 10}),
    (C.fifo_cache, {"maxsize": 10}),
    (C.tinylfu_cache, {"maxsize": 10}),
    (C.ttl_cache, {"maxsize": 10, "ttl": 5.0}),
    (C.cached, {"cache": C.LRUCache(maxsize=2)}),
    (B.RoundRobin, {"endpoints": ["a", "b"], "health": None}),
    (B.RandomBalancer, {"endpoints": ["a", "b"]}),
    (B.WeightedRoundRobin, {"endpoints": {"a": 1, "b": 2}}),
    (B.SmoothWeightedRoundRobin, {"endpoints": {"a": 1, "b": 2}}),
    (B.LeastRequest, {"endpoints": ["a", "b"], "choice_count": 2, "active_request_bias": 1.0}),
    (B.PeakEWMA, {"endpoints": ["a", "b"], "decay": 10.0}),
    (
        B.ConsistentHashBalancer,
        {"endpoints": ["a", "b"], "balance_factor": 1.25, "points_per_server": 160},
    ),
    (B.HealthPolicy, {"panic_threshold": 50.0}),
    (
        B.OutlierDetection,
        {
            "consecutive_failures": 5,
            "base_ejection_time": 30.0,
            "max_ejection_time": 300.0,
            "max_ejection_percent": 10.0,
            "interval": 10.0,
        },
    ),
    (B.SlowStart, {"window": 10.0, "aggression": 1.0, "min_weight_percent": 10.0}),
    (
        B.ActiveHealthChecker,
        {
            "balancer": B.RoundRobin(["a"], health=B.HealthPolicy()),
            "check": lambda endpoint: True,
            "interval": 1.0,
            "timeout": 1.0,
        },
    ),
    (S.HashRouter, {"shards": ["a", "b"], "strategy": "maglev", "maglev_size": 65537}),
    (S.HashRouter, {"shards": ["a", "b"], "maglev_size": 65537, "ketama_compat": "uhashring"}),
    (
        B.ConsistentHashBalancer,
        {"endpoints": ["a"], "table": "maglev", "maglev_size": 65537, "points_per_server": 160},
    ),
    (B.ConsistentHashBalancer, {"endpoints": ["a"], "maglev_size": 65537}),
    (S.HashRouter, {"shards": ["a", "b"], "strategy": "rendezvous", "weights": {"a": 1}}),
    (S.KetamaRing, {"nodes": ["a", "b"], "points_per_server": 160}),
    (S.MaglevTable, {"nodes": ["a", "b"], "size": 65537}),
    (S.Rendezvous, {"nodes": ["a", "b"]}),
    (S.RangeRouter, {"split_points": [10], "shards": ["a", "b"], "sample_size": 64}),
    (S.RangeRouter.from_ranges, {"ranges": [(None, 10, "a"), (10, None, "b")]}),
    (S.HashRouter.from_slot_ranges, {"ranges": [(0, 16383, "a")]}),
    (S.TimeRouter, {"interval": "month", "template": "t_{:%Y_%m}"}),
    (S.Rollover, {"prefix": "logs", "max_docs": 10, "max_size": 100}),
    (L.MemoryLock, {"name": "n", "ttl": 10.0, "on_lost": None}),
    (T.FakeClock, {"start": 0.0}),
    (T.TCPProxy, {"target_host": "127.0.0.1", "target_port": 1, "port": 0}),
    (T.RedisServer, {"port": 6390, "startup_timeout": 20.0}),
    (T.ZooKeeperServer, {"port": 2190, "tick_time_ms": 500, "heap_mb": 256}),
    (T.ZooKeeperEnsemble, {"size": 3, "tick_time_ms": 500}),
    (T.RedisClusterServers, {"masters": 3, "node_timeout_ms": 2000}),
    (T.RedisServer, {"appendonly": False, "extra_args": ["--maxclients", "100"]}),
    (T.RedisServer, {"workdir": "/nonexistent/w", "binary": "redis-server"}),
    (T.RedisClusterServers, {"appendonly": False, "startup_timeout": 20.0}),
    (T.ZooKeeperServer, {"workdir": "/nonexistent/w", "startup_timeout": 20.0}),
    (T.ZooKeeperEnsemble, {"workdir": "/nonexistent/w", "startup_timeout": 20.0}),
    (T.PostgresServer, {"port": 5440, "startup_timeout": 20.0}),
    (T.PostgresServer, {"extra_args": ["-c", "max_connections=50"], "workdir": "/nonexistent/w"}),
    (T.PostgresServer, {"run_as": "postgres"}),
    (T.TCPProxy, {"target_host": "127.0.0.1", "target_port": 1, "host": "127.0.0.1"}),
    (T.find_free_port, {"host": "127.0.0.1"}),
    (
        L.RedisLock,
        {
            "client": REDIS,
            "name": "n",
            "ttl": 10.0,
            "op_timeout": 2.0,
            "waiter_ttl": 3.0,
            "claim_window": 0.5,
        },
    ),
    (
        L.RedisLock,
        {
            "reentrant": False,
            "auto_renew": False,
            "on_lost": print,
            "clock": time.monotonic,
            "client": REDIS,
            "name": "n",
        },
    ),
    (L.RedisReadWriteLock, {"client": REDIS, "name": "n", "ttl": 10.0, "op_timeout": 2.0}),
    (L.RedisSemaphore, {"client": REDIS, "name": "n", "n": 2, "ttl": 10.0}),
    (L.AsyncRedisLock, {"client": ASYNC_REDIS, "name": "n", "ttl": 10.0, "op_timeout": 2.0}),
    (
        L.AsyncRedisLock,
        {"client": ASYNC_REDIS, "name": "n", "waiter_ttl": 3.0, "claim_window": 0.5},
    ),
    (
        L.Redlock,
        {
            "clients": [REDIS, REDIS, REDIS],
            "name": "n",
            "ttl": 10.0,
            "instance_timeout": 0.1,
            "drift_factor": 0.01,
            "retry_delay": 0.05,
        },
    ),
    (L.ZooKeeperLock, {"client": KAZOO, "path": "/n", "op_timeout": 5.0, "suspended_grace": 1.0}),
    (L.ZooKeeperSemaphore, {"client": KAZOO, "path": "/n", "n": 2, "op_timeout": 5.0}),
    (L.ZooKeeperReadWriteLock, {"client": KAZOO, "path": "/n", "op_timeout": 5.0}),
    (
        C.RedisCache,
        {
            "client": REDIS,
            "namespace": "n",
            "ttl": 300.0,
            "serializer": "json",
            "jitter": 0.1,
            "lease_ttl": 10.0,
            "wait_timeout": 1.0,
            "stale_ttl": 1.0,
            "negative_ttl": 1.0,
        },
    ),
    (C.RedisCache, {"client": REDIS, "namespace": "n", "fallback": False, "notify": False}),
    (
        C.NearCache,
        {
            "local": C.LRUCache(maxsize=10),
            "remote": _remote(),
            "max_staleness": 1.0,
            "local_ttl": 1.0,
            "connect_timeout": 0.01,
            "invalidation": "tracking",
        },
    ),
]


def _label(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


CASES = [
    pytest.param(func, kwargs, name, bad, id=f"{_label(func)}({name}={label})")
    for func, kwargs in CONSTRUCTORS
    for name in kwargs
    for label, bad in BAD.items()
]


def _close(made: Any) -> None:
    close = getattr(made, "close", None)
    if callable(close):
        close()


#: int parameters that take a float too: a cache's maxsize may be math.inf (unbounded).
TAKES_FLOAT = {"maxsize"}
#: A program or user the host lacks is `ServerNotFoundError` (a `FileNotFoundError`),
#: which names it and says how to install it.
ENVIRONMENT = {(T.RedisServer, "binary"), (T.PostgresServer, "run_as")}


def _expected(good: Any, bad: Any, name: str = "") -> type[ScaleKitError]:
    """The error a refused *bad* value must be, for a parameter *name* that takes *good*."""
    if name in TAKES_FLOAT:
        good = float(good)
    if isinstance(good, bool) or not isinstance(good, (int, float, str)):
        return ArgumentTypeError  # an object, a flag, a callable: no BAD value is one
    if isinstance(good, str):
        return ConfigurationError if isinstance(bad, str) else ArgumentTypeError
    if bad is None or isinstance(bad, str):
        return ArgumentTypeError
    if isinstance(good, int) and isinstance(bad, float):
        return ArgumentTypeError  # NaN or an infinity where an int belongs, as range(1.5)
    return ConfigurationError  # -1, NaN, inf, 10**400: a number out of range


def test_expected_sorts_wrong_types_from_bad_values() -> None:
    assert (
        _expected(5.0, None) is _expected(5.0, "x") is _expected(5, math.nan) is ArgumentTypeError
    )
    assert (
        _expected(5.0, math.nan) is _expected(5, -1) is _expected(5, 10**400) is ConfigurationError
    )
    assert _expected("n", "x") is ConfigurationError and _expected("n", -1) is ArgumentTypeError
    assert _expected(False, -1) is _expected([1], "x") is _expected(None, "x") is ArgumentTypeError


@pytest.mark.parametrize(("func", "kwargs", "name", "bad"), CASES)
def test_a_constructor_refuses_with_the_error_the_rule_names(
    func: Callable[..., Any], kwargs: dict[str, Any], name: str, bad: Any
) -> None:
    try:
        made = func(**{**kwargs, name: bad})
    except ScaleKitError as exc:
        missing = (func, name) in ENVIRONMENT and isinstance(bad, str)
        expected = T.ServerNotFoundError if missing else _expected(kwargs[name], bad, name)
        assert isinstance(exc, expected), f"{type(exc).__name__}, not {expected.__name__}: {exc}"
        named = re.search(rf"\b{name}\b", str(exc)) or (missing and repr(bad) in str(exc))
        assert named, f"the message does not name {name}: {exc}"
        assert "0" * 100 not in str(exc), f"the message prints 10**400 digit by digit: {exc}"
    else:
        _close(made)


def _adding_weight(strategy: Any) -> Callable[[Any], Any]:
    def call(weight: Any) -> None:
        router = S.HashRouter(["a", "b"], strategy=strategy)
        try:
            router.add_shard("c", weight)  # None: the default weight
        except ScaleKitError as exc:  # the same rule for every strategy
            assert weight is not None and "weight" in str(exc), str(exc)
            assert router.shards == ("a", "b")  # a refused shard leaves nothing behind
            raise

    return call


def _adding_shard(strategy: Any) -> Callable[[Any], Any]:
    def call(shard: Any) -> None:
        router = S.HashRouter(["a", "b"], strategy=strategy)
        try:
            router.add_shard(shard)
        except ScaleKitError as exc:
            # None, a float: not a shard id of any strategy; -1 and 10**400 are ints (accepted).
            assert isinstance(exc, ArgumentTypeError) and "shard" in str(exc), str(exc)
            raise
        assert isinstance(shard, (str, int)), f"{strategy} accepted the shard {shard!r}"

    return call


#: A method argument that is an endpoint or shard id: any hashable but None,
#: so an unknown one is a bad value.
ID = object()
#: A call that checks what it refuses itself.
CHECKED = object()


def _filled_ttl() -> Any:
    cache = C.TTLCache(maxsize=4, ttl=10.0)
    cache["a"] = 1
    return cache


def _releasing(lease: Any) -> None:
    try:
        L.MemoryLock(f"r{id(lease)}").release(lease)
    except ScaleKitError as exc:  # None: the caller's lease, which it does not hold
        expected = LockNotOwnedError if lease is None else ArgumentTypeError
        assert isinstance(exc, expected) and (lease is None or "lease" in str(exc)), str(exc)
        raise


def _weighted(cls: Any) -> Callable[[Any], Any]:
    return lambda weight: cls({"a": weight, "b": 1}).pick()


def _methods() -> list[tuple[str, Callable[[Any], Any], Any, str]]:
    """(label, call with the value, a value of the type it takes, the argument's name)."""
    ttl = C.TTLCache(maxsize=4, ttl=10)
    router = S.RangeRouter([10, 20], ["a", "b", "c"])
    hashed = S.HashRouter(["a", "b"])
    timed = S.TimeRouter("month", "orders_{:%Y_%m}")
    utc = timezone.utc
    lock = L.MemoryLock("n", ttl=10)
    peak = B.PeakEWMA(["a", "b"])
    rr = B.RoundRobin(["a", "b"])
    roll = S.Rollover("logs", max_docs=10)
    clock = T.FakeClock()
    remote = C.RedisCache(REDIS, namespace="n", notify=False)
    now = datetime(2026, 1, 1, tzinfo=utc)
    return [
        ("TTLCache.set(ttl=)", lambda v: ttl.set("k", 1, ttl=v), 1.0, "ttl"),
        ("TTLCache.expire(time=)", lambda v: _filled_ttl().expire(v), 1.0, "time"),
        ("RoundRobin.add(weight=)", lambda v: rr.add(f"n{id(v)}", weight=v), 1, "weight"),
        ("RoundRobin.add(endpoint)", lambda v: B.RoundRobin(["a"]).add(v), ID, "endpoint"),
        ("RoundRobin.reweight()", lambda v: rr.reweight("a", v), 1, "weight"),
        *(
            (f"{cls.__name__}({{endpoint: weight}})", _weighted(cls), 1, "weight")
            for cls in (B.RoundRobin, B.RandomBalancer, B.LeastRequest, B.PeakEWMA)
        ),
        ("RoundRobin.release()", lambda v: rr.release(v), ID, "endpoint"),
        (
            "PeakEWMA.release(latency=)",
            lambda v: peak.release(peak.pick(), latency=v),
            0.1,
            "latency",
        ),
        ("PeakEWMA.cost()", lambda v: peak.cost(v), ID, "endpoint"),
        ("HashRouter.route()", lambda v: hashed.route(v), "k", "key"),
        ("HashRouter(shards)", lambda v: S.HashRouter(["a", v]), "c", "shard"),
        *(
            (f"HashRouter({strategy!r}).add_shard(weight=)", _adding_weight(strategy), CHECKED, "")
            for strategy in S.STRATEGIES
        ),
        *(
            (f"HashRouter({strategy!r}).add_shard(shard)", _adding_shard(strategy), CHECKED, "")
            for strategy in S.STRATEGIES
        ),
        ("HashRouter.route_many()", lambda v: hashed.route_many(v), ["k"], "keys"),
        ("RangeRouter.route()", lambda v: router.route(v), 5.0, "key"),
        ("RangeRouter.route_range(lo)", lambda v: router.route_range(v, 10), 5.0, "lo"),
        ("RangeRouter.route_range(hi)", lambda v: router.route_range(None, v), 5.0, "hi"),
        (
            "RangeRouter.split()",
            lambda v: S.RangeRouter([10, 20], ["a", "b", "c"]).split(v, "d"),
            15.0,
            "at",
        ),
        (
            "RangeRouter.suggest_split(min_requests=)",
            lambda v: router.suggest_split(min_requests=v),
            1,
            "min_requests",
        ),
        ("TimeRouter.route()", lambda v: timed.route(v), now, "key"),
        ("TimeRouter.parse()", lambda v: timed.parse(v), "orders_2026_01", "name"),
        ("TimeRouter.partitions(start)", lambda v: timed.partitions(v, now), now, "start"),
        ("TimeRouter.partitions(end=)", lambda v: timed.partitions(now, v), now, "end"),
        ("Rollover.record(docs=)", lambda v: roll.record(docs=v), 1, "docs"),
        ("Rollover.record(size=)", lambda v: roll.record(size=v), 1, "size"),
        ("MemoryLock.acquire(timeout=)", lambda v: lock.acquire(timeout=v), 1.0, "timeout"),
        (
            "MemoryLock.acquire(blocking=)",
            lambda v: L.MemoryLock(f"b{id(v)}", ttl=10).acquire(blocking=v),
            True,
            "blocking",
        ),
        (
            "RedisLock.acquire(blocking=)",
            lambda v: L.RedisLock(REDIS, "n", op_timeout=0.2).acquire(v),
            True,
            "blocking",
        ),
        ("MemoryLock.release()", _releasing, CHECKED, "lease"),
        ("MemoryLock.extend()", lambda v: L.MemoryLock("e").extend(v), lock, "lease"),
        ("FakeClock.advance()", lambda v: clock.advance(v), 1.0, "seconds"),
        ("jump_hash(num_buckets)", lambda v: S.jump_hash(5, v), 3, "num_buckets"),
        ("jump_hash(key)", lambda v: S.jump_hash(v, 3), 5, "key"),
        ("cluster_slot_ranges()", lambda v: S.cluster_slot_ranges(v), 3, "num_nodes"),
        ("key_slot()", lambda v: S.key_slot(v), "k", "key"),
        ("RedisCache.get()", lambda v: remote.get(v), "k", "key"),
        ("cached(info=)", lambda v: C.cached(C.LRUCache(maxsize=2), info=v), False, "info"),
    ]


METHOD_CASES = [
    pytest.param(call, good, argument, bad, id=f"{label}{name}")
    for label, call, good, argument in _methods()
    for name, bad in BAD.items()
]


@pytest.mark.parametrize(("call", "good", "argument", "bad"), METHOD_CASES)
def test_a_main_method_refuses_with_the_error_the_rule_names(
    call: Callable[[Any], Any], good: Any, argument: str, bad: Any
) -> None:
    try:
        call(bad)
    except BackendUnavailableError:
        pass  # the value passed the checks and the call went out (to a port nobody serves)
    except ScaleKitError as exc:
        if good is CHECKED:
            return
        if good is ID:  # any hashable but None is an id: an unknown one is a bad value
            expected: type[ScaleKitError] = ArgumentTypeError if bad is None else ConfigurationError
        else:
            expected = _expected(good, bad)
        assert isinstance(exc, expected), f"{type(exc).__name__}, not {expected.__name__}: {exc}"
        assert re.search(rf"\b{argument}\b", str(exc)), (
            f"the message does not name {argument}: {exc}"
        )
        assert "0" * 100 not in str(exc), f"the message prints 10**400 digit by digit: {exc}"


@pytest.mark.parametrize(
    "make",
    [
        lambda: C.LRUCache(maxsize="10"),
        lambda: C.LRUCache(maxsize=None),
        lambda: C.TinyLFUCache(maxsize=[2]),
        lambda: L.MemoryLock("n", ttl="5"),
        lambda: L.MemoryLock(None),
        lambda: B.RoundRobin({"a": "x"}),
        lambda: B.PeakEWMA(["a"], decay="fast"),
        lambda: S.TimeRouter(None, "x_{:%Y}"),
        lambda: S.RangeRouter([10, 20], ["a", "b", "c"]).route(None),
        lambda: S.RangeRouter([10, 20], ["a", "b", "c"]).route("x"),
        lambda: S.RangeRouter(None, ["a"]),
        lambda: S.KetamaRing(None),
        lambda: T.FakeClock(start=None),
        lambda: T.RedisClusterServers(masters="3"),
        lambda: T.RedisServer(port="6379"),
        lambda: T.RedisServer(appendonly="yes"),
        lambda: T.RedisServer(extra_args="--maxclients 100"),
        lambda: T.RedisServer(workdir=5),
        lambda: T.ZooKeeperServer(port=2181.0),
        lambda: T.ZooKeeperServer(heap_mb="256"),
        lambda: T.ZooKeeperEnsemble(tick_time_ms=None),
        lambda: T.RedisClusterServers(appendonly=1),
        lambda: T.PostgresServer(port="5432"),
        lambda: T.PostgresServer(extra_args=[1, 2]),
        lambda: T.PostgresServer(workdir=[]),
        lambda: T.TCPProxy(None, 1),
        lambda: T.TCPProxy("127.0.0.1", "1"),
    ],
)
def test_a_wrong_type_is_an_argument_type_error(make: Callable[[], Any]) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        make()
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.RedisLock(REDIS, "n", ttl=None),
        lambda: L.RedisReadWriteLock(REDIS, "n", ttl=None),
        lambda: L.RedisSemaphore(REDIS, "n", 2, ttl=None),
        lambda: L.Redlock([REDIS, REDIS, REDIS], "n", ttl=None),
        lambda: L.AsyncRedisLock(ASYNC_REDIS, "n", ttl=None),
    ],
    ids=["RedisLock", "RedisReadWriteLock", "RedisSemaphore", "Redlock", "AsyncRedisLock"],
)
def test_a_redis_lock_needs_a_ttl(make: Callable[[], Any]) -> None:
    # A Redis lease without a ttl would outlive a crashed holder: refused when
    # the lock is made, not by an assertion at the first acquire.
    with pytest.raises(ArgumentTypeError, match=r"^ttl must be a positive finite number"):
        make()


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: C.TTLCache(maxsize=4, ttl=10**400), "ttl"),
        (lambda: L.MemoryLock("n", ttl=10**400), "ttl"),
        (lambda: B.PeakEWMA(["a"], decay=math.inf), "decay"),
        (lambda: S.HashRouter(["a"], strategy="maglev", maglev_size=10), "maglev_size"),
        (lambda: S.RangeRouter([math.nan], ["a", "b"]), "split_points"),
        (lambda: T.FakeClock(start=math.nan), "start"),
        (lambda: T.RedisClusterServers(masters=2000), "masters"),
        (lambda: T.ZooKeeperEnsemble(size=4), "size"),
        (lambda: T.TCPProxy("127.0.0.1", 1, port=-1), "port"),
        (lambda: T.TCPProxy("127.0.0.1", 70000), "target_port"),
        (lambda: T.TCPProxy("", 1), "target_host"),
        (lambda: T.RedisServer(port=0), "port"),
        (lambda: T.RedisServer(startup_timeout=0), "startup_timeout"),
        (lambda: T.ZooKeeperServer(tick_time_ms=0), "tick_time_ms"),
        (lambda: T.ZooKeeperServer(heap_mb=-1), "heap_mb"),
        (lambda: T.ZooKeeperEnsemble(size=2001), "size"),
        (lambda: T.PostgresServer(port=70000), "port"),
        (lambda: T.PostgresServer(startup_timeout=math.nan), "startup_timeout"),
        (lambda: T.PostgresServer(run_as=""), "run_as"),
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_argument(
    make: Callable[[], Any], name: str
) -> None:
    with pytest.raises(ConfigurationError, match=rf"\b{name}\b") as info:
        make()
    assert isinstance(info.value, ValueError)


def _prometheus() -> Any:
    from scalekit.observability import PrometheusCollector, Telemetry

    return PrometheusCollector(Telemetry())


def _register(registry: Any) -> Any:
    collector = _prometheus()
    try:
        return collector.register(registry)
    finally:
        collector.close()


def _otel(**kwargs: Any) -> Any:
    from scalekit.observability import OpenTelemetryExporter, Telemetry

    exporter = OpenTelemetryExporter(**{"telemetry": Telemetry(), **kwargs})
    exporter.close()
    return exporter


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: __import__("scalekit.observability").observability.PrometheusCollector("x"),
         "telemetry"),
        (lambda: _register("reg"), "registry"),
        (lambda: _register(42), "registry"),
        (lambda: _otel(telemetry="x"), "telemetry"),
        (lambda: _otel(meter_provider="x"), "meter_provider"),
        (lambda: _otel(meter_provider=object()), "meter_provider"),
    ],
)  # fmt: skip
def test_an_observability_constructor_refuses_a_wrong_type_naming_it(
    make: Callable[[], Any], name: str
) -> None:
    with pytest.raises(ArgumentTypeError, match=rf"^{name} must be") as info:
        make()
    assert isinstance(info.value, TypeError)
    assert " got " in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        T.RedisServer,
        T.ZooKeeperServer,
        T.RedisClusterServers,
        T.ZooKeeperEnsemble,
        T.PostgresServer,
        lambda: T.RedisClusterServers(masters=MAX_NODES),
    ],
    ids=["redis", "zookeeper", "cluster", "ensemble", "postgres", "cluster-max"],
)
def test_constructing_a_server_makes_no_directory_and_picks_no_port(
    make: Callable[[], Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    picked: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> int:
        picked.append(1)
        return 1

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for module in ("process", "redis_servers", "zookeeper_servers", "postgres_servers"):
        target = getattr(__import__(f"scalekit.testing.{module}").testing, module)
        if hasattr(target, "find_free_port"):
            monkeypatch.setattr(target, "find_free_port", counting)
    made = make()
    assert list(tmp_path.iterdir()) == []  # nothing left behind by a server never started
    assert picked == []  # ports are picked by start(), so they are free when it runs
    made.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "error", "name"),
    [
        (lambda: C.TTLCache(maxsize=4, ttl=10.0).expire([1]), ArgumentTypeError, "time"),
        (lambda: _filled_ttl().expire([1]), ArgumentTypeError, "time"),
        (lambda: L.MemoryLock("no", ttl=10).acquire(blocking="no"), ArgumentTypeError, "blocking"),
        (lambda: C.cached(C.LRUCache(maxsize=2), info=[1]), ArgumentTypeError, "info"),
        (lambda: B.RoundRobin(["a"]).add(None), ArgumentTypeError, "endpoint"),
        (lambda: B.RoundRobin(["a"]).add(math.nan), ConfigurationError, "endpoint"),
        (lambda: B.RoundRobin(["a", math.nan]), ConfigurationError, "endpoint"),
        (lambda: S.HashRouter(["a", None]), ArgumentTypeError, "shard"),
    ],
    ids=[
        "expire-empty",
        "expire-filled",
        "blocking-no",
        "info-list",
        "add-None",
        "add-nan",
        "endpoints-nan",
        "shard-None",
    ],
)
def test_nonsense_is_refused_not_taken_for_something(
    make: Callable[[], Any], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=rf"^{name} must be"):
        make()


CACHES = [
    C.LRUCache,
    C.FIFOCache,
    C.LFUCache,
    C.RRCache,
    C.SIEVECache,
    C.S3FIFOCache,
    C.TinyLFUCache,
    lambda maxsize: C.TTLCache(maxsize, ttl=60.0),
    lambda maxsize: C.TLRUCache(maxsize, ttu=lambda key, value, now: now + 60),
]
CACHE_CLASSES = [
    C.LRUCache,
    C.FIFOCache,
    C.LFUCache,
    C.RRCache,
    C.SIEVECache,
    C.S3FIFOCache,
    C.TinyLFUCache,
    C.TTLCache,
    C.TLRUCache,
]


@pytest.mark.parametrize("make", CACHES, ids=[cls.__name__ for cls in CACHE_CLASSES])
def test_a_cache_does_what_its_docstring_says_of_maxsize(make: Callable[[Any], Any]) -> None:
    cls = CACHE_CLASSES[CACHES.index(make)]
    doc = " ".join((cls.__doc__ or "").split())
    assert "where `0` caches nothing" in doc and "`math.inf` for no bound" in doc, doc
    assert "ArgumentTypeError: `maxsize`" in doc and "positive integer" not in doc
    empty = make(0)
    with pytest.raises(ValueError, match=r"^value too large$"):
        empty["a"] = 1
    assert len(empty) == 0
    unbounded = make(math.inf)
    for key in range(300):
        unbounded[key] = key
    assert len(unbounded) == 300
    with pytest.raises(ArgumentTypeError, match=r"^maxsize must be"):
        make(None)
    with pytest.raises(ConfigurationError, match=r"got 100\.\.\.000 \(an int of 401 digits\)$"):
        make(10**400)


_EDGES = {
    "min": datetime.min.replace(tzinfo=timezone.utc),
    "max": datetime.max.replace(tzinfo=timezone.utc),
}
_TEMPLATES = {
    "minute": "t_{:%Y_%m_%d_%H_%M}",
    "hour": "t_{:%Y_%m_%d_%H}",
    "day": "t_{:%Y_%m_%d}",
    "week": "t_{:%G_%V}",
    "month": "t_{:%Y_%m}",
    "year": "t_{:%Y}",
}
_TIME_METHODS = {"route": "key", "floor": "when", "next_start": "start", "partition": "when"}


@pytest.mark.parametrize("edge", sorted(_EDGES))
@pytest.mark.parametrize("method", sorted(_TIME_METHODS))
@pytest.mark.parametrize("interval", sorted(_TEMPLATES))
@pytest.mark.parametrize("hours", [0, 5, -5])
def test_time_router_at_the_ends_of_datetime(
    edge: str, method: str, interval: str, hours: int
) -> None:
    # datetime.max is a common "forever"; its partition may end past year 9999
    from datetime import timedelta

    router = S.TimeRouter(interval, _TEMPLATES[interval], tz=timezone(timedelta(hours=hours)))
    try:
        result = getattr(router, method)(_EDGES[edge])
    except ConfigurationError as exc:
        assert re.search(rf"\b{_TIME_METHODS[method]}\b", str(exc)), str(exc)
        assert "range" in str(exc), str(exc)
        return
    if method == "route":  # a name the router gives, it reads back
        assert router.parse(result).name == result


@pytest.mark.parametrize("name", ["t_9999_12", "t_0001_01", "t_9999", "t_9999_12_31_23"])
def test_time_router_parse_at_the_ends_of_datetime(name: str) -> None:
    interval = {1: "year", 2: "month", 4: "hour"}[name.count("_")]
    router = S.TimeRouter(interval, _TEMPLATES[interval], tz=timezone.utc)
    try:
        router.parse(name)
    except ConfigurationError as exc:
        assert re.search(r"\bname\b", str(exc)), str(exc)


@pytest.mark.parametrize("size", [None, "x", 1.5, 0, 4, 65536])
@pytest.mark.parametrize("table", ["maglev", "ring"])  # checked whether the table is used or not
def test_a_bad_maglev_size_names_it_and_asks_for_a_prime(size: Any, table: str) -> None:
    with pytest.raises(ScaleKitError) as info:
        B.ConsistentHashBalancer(["a"], table=table, maglev_size=size)
    expected = ConfigurationError if isinstance(size, int) else ArgumentTypeError
    assert isinstance(info.value, expected), repr(info.value)
    assert re.search(r"\bmaglev_size\b", str(info.value)) and "prime" in str(info.value)


#: (callable, working keyword arguments, the parameter, values it must refuse when
#: constructed): a callable, a flag or an rng checked at construction, not on first use.
REFUSED_AT_CONSTRUCTION: list[tuple[Callable[..., Any], dict[str, Any], str, list[Any]]] = [
    (S.Rollover, {"prefix": "p", "max_docs": 10}, "clock", [None, "x", 5]),
    (C.TTLCache, {"maxsize": 4, "ttl": 1.0}, "timer", [None, "x", 5]),
    (C.TLRUCache, {"maxsize": 4, "ttu": lambda k, v, now: now + 1}, "timer", [None, "x"]),
    (L.MemoryLock, {"name": "n"}, "clock", [None, "x", 5]),
    (L.MemoryLock, {"name": "n"}, "on_lost", ["x", 5]),
    (L.MemoryLock, {"name": "n"}, "reentrant", ["no", 1, None]),
    (L.MemoryLock, {"name": "n"}, "auto_renew", ["no", 0, None]),
    (L.RedisLock, {"client": REDIS, "name": "n"}, "clock", ["x"]),
    (L.RedisLock, {"client": REDIS, "name": "n"}, "on_lost", [5]),
    (S.RangeRouter, {"split_points": [10], "shards": ["a", "b"]}, "rng", ["x", 5, random_module]),
]
REFUSED_CASES = [
    pytest.param(func, kwargs, name, bad, id=f"{_label(func)}({name}={bad!r})")
    for func, kwargs, name, values in REFUSED_AT_CONSTRUCTION
    for bad in values
]


@pytest.mark.parametrize(("func", "kwargs", "name", "bad"), REFUSED_CASES)
def test_a_callable_or_flag_is_checked_at_construction(
    func: Callable[..., Any], kwargs: dict[str, Any], name: str, bad: Any
) -> None:
    with pytest.raises(ArgumentTypeError, match=rf"\b{name}\b"):
        _close(func(**kwargs, **{name: bad}))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["replay", "--quick", "--capacities", "nan"], "--capacities"),
        (["replay", "--quick", "--capacities", "-1"], "--capacities"),
        (["replay", "--quick", "--capacities", "x"], "--capacities"),
        (["speed", "--quick", "--capacities", "inf"], "--capacities"),
        (["speed", "--quick", "--policies", "NOPE"], "NOPE"),
        (["speed", "--quick", "--ops", "0"], "got 0, 3 and 1"),  # --quick repeats 3 times
    ],
)
def test_a_bad_benchmark_option_is_an_argparse_error(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.caching.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2  # argparse's usage error, before any run
    err = capsys.readouterr().err
    assert "error:" in err and says in err and "Traceback" not in err, err
