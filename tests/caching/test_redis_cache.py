"""RedisCache on the real standalone server and the 3-master cluster."""

# ruff: noqa: F811 - pytest fixtures imported from tests.caching._redis_helpers are redefined as arguments

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import random
import threading
import time
from typing import Any

import pytest

from scalekit.caching.redis_cache import CacheLoadTimeoutError, RedisCache
from scalekit.exceptions import (
    ArgumentTypeError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
)
from scalekit.sharding import key_slot
from scalekit.testing import FakeClock
from tests.caching._redis_helpers import (  # noqa: F401 - fixtures
    client,
    make_client,
    spec,
    stampede_worker,
    unique_namespace,
    wait_until,
)

pytestmark = pytest.mark.redis


def cache_for(client: Any, **kwargs: Any) -> RedisCache:
    return RedisCache(client, namespace=kwargs.pop("namespace", unique_namespace()), **kwargs)


# -- configuration ------------------------------------------------------------
def test_bad_arguments_raise_configuration_error(redis_server: Any) -> None:
    c = make_client(("standalone", redis_server.url))
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisCache(c, namespace="")
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisCache(c, namespace="a{b")
    with pytest.raises(ConfigurationError, match="ttl must be a positive"):
        RedisCache(c, namespace="n", ttl=0)
    with pytest.raises(ConfigurationError, match=r"jitter must be a number in \[0, 1\], got 2"):
        RedisCache(c, namespace="n", jitter=2)
    with pytest.raises(ConfigurationError, match="serializer must be one of"):
        RedisCache(c, namespace="n", serializer="yaml")
    with pytest.raises(ArgumentTypeError, match="client must be"):
        RedisCache(object(), namespace="n")  # type: ignore[arg-type]
    import redis

    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisCache(redis.Redis.from_url(redis_server.url, decode_responses=True), namespace="n")
    # The first jitter draw comes at the first write: a wrong rng is refused here.
    for bad_rng in (5, "abc", object()):
        with pytest.raises(ArgumentTypeError, match=r"rng must be a random\.Random .*uniform"):
            RedisCache(c, namespace="n", rng=bad_rng)  # type: ignore[arg-type]
    cache = RedisCache(c, namespace="n")
    for bad in ("", "}x"):
        with pytest.raises(ConfigurationError, match="key must be"):
            cache.get(bad)
    with pytest.raises(ArgumentTypeError, match="key must be"):
        cache.get(42)  # type: ignore[arg-type]
    # a lone surrogate cannot be sent to Redis: refused before any call, naming the key
    for op in (lambda: cache.get("\ud800"), lambda: cache.set("\ud800", 1)):
        with pytest.raises(ConfigurationError, match=r"key must be encodable as UTF-8.*ud800"):
            op()
    for op in (lambda: cache.get_many(["a", "\ud800"]), lambda: cache.set_many({"\ud800": 1})):
        with pytest.raises(ConfigurationError, match=r"key must be encodable as UTF-8.*ud800"):
            op()


# -- plain operations on both backends ----------------------------------------
def test_get_set_delete_roundtrip(client: Any) -> None:
    cache = cache_for(client)
    assert cache.get("goods:1") is None
    assert cache.get("goods:1", "absent") == "absent"
    cache.set("goods:1", {"id": 1, "name": "kettle", "tags": ["a", "b"]})
    assert cache.get("goods:1") == {"id": 1, "name": "kettle", "tags": ["a", "b"]}
    cache.set("goods:1", None)
    assert cache.get("goods:1", "absent") is None  # None is a value when set explicitly
    assert cache.delete("goods:1") is True
    assert cache.delete("goods:1") is False
    assert cache.get("goods:1", "absent") == "absent"


def test_keys_are_namespaced(client: Any) -> None:
    a, b = cache_for(client), cache_for(client)
    a.set("k", 1)
    assert b.get("k") is None
    raw = client.get(f"{a.namespace}:{{k}}")
    assert raw is not None and raw.endswith(b":1")


def test_get_many_set_many_span_slots(client: Any, spec: Any) -> None:
    cache = cache_for(client)
    items = {f"goods:{i}": {"i": i} for i in range(200)}
    cache.set_many(items)
    wanted = [*items, "missing:1", "missing:2"]
    assert cache.get_many(wanted) == items
    groups = cache._groups(wanted)
    assert sum(len(g) for g in groups) == len(wanted)
    if spec[0] == "cluster":
        assert len(groups) > 100  # one group per slot
        for group in groups:
            assert len({key_slot(cache._name(k).encode()) for k in group}) == 1
    else:
        assert len(groups) == 1


def test_ttl_jitter_spreads_expiry(client: Any) -> None:
    cache = cache_for(client, ttl=100, jitter=0.1, rng=random.Random(7))
    cache.set_many({f"k{i}": i for i in range(300)})
    ttls = [client.pttl(cache._name(f"k{i}")) for i in range(300)]
    assert all(89_000 <= t <= 110_000 for t in ttls), (min(ttls), max(ttls))
    assert max(ttls) - min(ttls) > 12_000  # spread over most of ±10 %
    flat = cache_for(client, ttl=100, jitter=0)
    flat.set_many({f"k{i}": i for i in range(20)})
    assert {round(client.pttl(flat._name(f"k{i}")), -3) for i in range(20)} == {100_000}


def test_json_default_never_unpickles(client: Any, tmp_path: Any) -> None:
    marker = tmp_path / "owned"

    class Exploit:
        def __reduce__(self) -> Any:
            return (open, (str(marker), "w"))

    cache = cache_for(client)
    client.set(cache._name("k"), b"v1:0:" + pickle.dumps(Exploit()))
    assert cache.get("k", "absent") == "absent"  # not JSON: a counted miss
    assert cache.stats().undecodable == 1
    assert not marker.exists()
    trusting = cache_for(client, namespace=cache.namespace, serializer="pickle")
    trusting.set("obj", {1, 2, 3})
    assert trusting.get("obj") == {1, 2, 3}


# -- cache-aside --------------------------------------------------------------
def test_get_or_load_loads_once_then_hits(client: Any) -> None:
    cache = cache_for(client)
    calls: list[int] = []
    assert cache.get_or_load("k", lambda: calls.append(1) or "v") == "v"
    assert cache.get_or_load("k", lambda: calls.append(1) or "other") == "v"
    assert calls == [1]
    assert cache.stats().writebacks == 1


def test_loader_exception_is_not_cached_and_frees_the_lease(client: Any) -> None:
    cache = cache_for(client, wait_timeout=0)
    with pytest.raises(KeyError):
        cache.get_or_load("k", lambda: {}["nope"])
    assert client.exists(cache._name("k") + ":lease") == 0
    assert cache.get_or_load("k", lambda: 5) == 5  # next caller loads; no wait, no timeout


def test_none_is_not_cached_unless_negative_caching(client: Any) -> None:
    calls: list[int] = []
    loader = lambda: calls.append(1)  # noqa: E731 - returns None
    plain = cache_for(client)
    assert plain.get_or_load("k", loader) is None
    assert plain.get_or_load("k", loader) is None
    assert len(calls) == 2
    calls.clear()
    negative = cache_for(client, ttl=300, negative_ttl=2)
    assert negative.get_or_load("k", loader) is None
    assert negative.get_or_load("k", loader) is None
    assert len(calls) == 1
    assert negative.get("k", "absent") == "absent"
    assert 0 < client.pttl(negative._name("k")) <= 2_200  # its own ttl, not the 300 s one


def _hold_lease(
    cache: RedisCache, key: str, value: Any
) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """Start a loader that takes the lease and blocks until the returned event is set."""
    started, release, out = threading.Event(), threading.Event(), []

    def loader() -> Any:
        started.set()
        assert release.wait(10)
        return value

    t = threading.Thread(target=lambda: out.append(cache.get_or_load(key, loader)))
    t.start()
    assert started.wait(10)
    return t, release, out


def test_waiters_get_the_loaded_value_or_time_out(client: Any) -> None:
    cache = cache_for(client, wait_timeout=0.3)
    t, release, out = _hold_lease(cache, "k", "loaded")
    start = time.monotonic()
    with pytest.raises(CacheLoadTimeoutError):
        cache.get_or_load("k", lambda: pytest.fail("second loader ran"))
    assert 0.29 <= time.monotonic() - start < 2.0
    waiter: list[Any] = []
    w = threading.Thread(
        target=lambda: waiter.append(
            cache_for(client, namespace=cache.namespace).get_or_load("k", lambda: "dup")
        )
    )
    w.start()
    release.set()
    t.join()
    w.join()
    assert out == ["loaded"] and waiter == ["loaded"]


def test_stale_while_revalidate(client: Any) -> None:
    clock = FakeClock(start=1_700_000_000.0)
    cache = cache_for(client, ttl=10, stale_ttl=60, jitter=0, clock=clock)
    cache.set("k", "old")
    clock.advance(11)
    assert cache.get("k", "stale") == "stale"  # get never serves a stale value
    t, release, out = _hold_lease(cache, "k", "new")
    assert cache.get_or_load("k", lambda: pytest.fail("second loader ran")) == "old"
    assert cache.stats().stale_served == 1
    release.set()
    t.join()
    assert out == ["new"] and cache.get("k") == "new"
    assert client.pttl(cache._name("k")) > 60_000  # kept ttl + stale_ttl


def test_loader_slower_than_lease_is_not_written_back(client: Any) -> None:
    cache = cache_for(client, lease_ttl=0.2, wait_timeout=5)
    t, release, out = _hold_lease(cache, "k", "slow")
    assert wait_until(lambda: client.exists(cache._name("k") + ":lease") == 0, timeout=5)
    other = cache_for(client, namespace=cache.namespace)  # another process's cache
    assert other.get_or_load("k", lambda: "fast") == "fast"  # lease expired: takeover
    release.set()
    t.join()
    assert out == ["slow"] and cache.get("k") == "fast"
    assert cache.stats().writebacks_rejected == 1


# -- no stale overwrite --------------------------------------------------------
@pytest.mark.parametrize("writer", ["invalidate", "set"])
def test_slow_loader_write_back_rejected_after_newer_write(client: Any, writer: str) -> None:
    cache = cache_for(client)
    db = {"k": 1}
    t, release, out = _hold_lease(cache, "k", dict(db))  # read version 1, then stalls
    db["k"] = 2
    if writer == "set":
        cache.set("k", dict(db))
    else:
        cache.invalidate("k")
    release.set()
    t.join()
    assert out == [{"k": 1}]  # its caller gets what it read...
    assert cache.stats().writebacks_rejected == 1  # ...but it is not cached
    assert cache.get_or_load("k", lambda: dict(db)) == {"k": 2}


def _race_round(cache: RedisCache, rng: random.Random, invalidate: bool) -> None:
    """One cache-aside race: a loader reads the DB while a writer updates it."""
    db_lock = threading.Lock()
    db = {"v": 1}

    def loader() -> int:
        with db_lock:
            seen = db["v"]
        time.sleep(rng.random() * 0.004)
        return seen

    def writer() -> None:
        time.sleep(rng.random() * 0.004)
        with db_lock:
            db["v"] = 2
        if invalidate:
            cache.invalidate("k")
        else:
            cache.set("k", 2)

    threads = [
        threading.Thread(target=lambda: cache.get_or_load("k", loader)),
        threading.Thread(target=writer),
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert cache.get("k") in (None, 2), "a stale value survived"
    assert cache.get_or_load("k", loader) == 2


def test_stale_overwrite_race_many_interleavings(client: Any) -> None:
    rng = random.Random(20261125)
    rejected = 0
    for round_ in range(120):
        cache = cache_for(client)
        _race_round(cache, rng, invalidate=bool(round_ % 2))
        rejected += cache.stats().writebacks_rejected
    assert rejected > 0  # the dangerous interleaving did happen and was caught


# -- stampede across processes --------------------------------------------------
def test_stampede_4_processes_x_16_threads_loads_once(spec: Any, client: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    namespace = unique_namespace()
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=stampede_worker, args=(spec, namespace, "hot", 16, ready, go, results))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            assert ready.get(timeout=60)
        go.set()
        values = [v for _ in procs for v in results.get(timeout=60)]
    finally:
        for p in procs:
            p.join(30)
    assert len(values) == 64
    assert all(v == {"id": "hot", "price": 1999} for v in values)
    assert int(client.get(f"{namespace}-loads")) == 1


# -- Redis failing -------------------------------------------------------------
def test_redis_down_raises_or_falls_back_and_recovers(fresh_redis_server: Any) -> None:
    spec_ = ("standalone", fresh_redis_server.url)
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    strict = cache_for(make_client(spec_, **timeouts))
    lenient = cache_for(make_client(spec_, **timeouts), namespace=strict.namespace, fallback=True)
    strict.set("k", 1)
    calls: list[int] = []

    def loader() -> int:
        calls.append(1)
        return 7

    fresh_redis_server.stop()
    for call in (
        lambda: strict.get("k"),
        lambda: strict.set("k", 2),
        lambda: strict.get_or_load("k", loader),
        lambda: lenient.get("k"),
    ):
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            call()
        assert time.monotonic() - start < 2.0
    assert calls == []
    assert lenient.get_or_load("k", loader) == 7 and calls == [1]
    assert lenient.stats().fallbacks == 1

    fresh_redis_server.start()
    assert lenient.get_or_load("k", loader) == 7 and calls == [1, 1]
    assert strict.get("k") == 7  # cached again after recovery
    fresh_redis_server.pause()
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            strict.get("k")  # a frozen server: the socket timeout bounds the call
        assert time.monotonic() - start < 2.0
        assert lenient.get_or_load("k", loader) == 7 and calls == [1, 1, 1]
    finally:
        fresh_redis_server.resume()
    assert strict.get("k") == 7


def test_cluster_node_restart(redis_cluster: Any) -> None:
    spec_ = ("cluster", redis_cluster.host, redis_cluster.port)
    cache = cache_for(
        make_client(spec_, socket_timeout=0.5, socket_connect_timeout=0.5), fallback=True
    )
    cache.set_many({f"k{i}": i for i in range(30)})
    slot = key_slot(cache._name("k0").encode())
    owner = cache.client.get_node_from_key(cache._name("k0"))
    node = next(n for n in redis_cluster.nodes if n.port == owner.port)
    node.stop()
    try:
        start = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            cache.get("k0")
        assert time.monotonic() - start < 5.0
        assert cache.get_or_load("k0", lambda: "db") == "db"  # fallback
    finally:
        node.start()
        redis_cluster.wait_ok()
    assert wait_until(lambda: _answers(cache, "k0"), timeout=15)
    assert cache.get_or_load("k0", lambda: "reloaded") == "reloaded"  # node came back empty
    assert key_slot(cache._name("k0").encode()) == slot


def _answers(cache: RedisCache, key: str) -> bool:
    try:
        cache.get(key)
    except BackendUnavailableError:
        return False
    return True


def test_unserializable_value_raises_and_frees_the_lease(client: Any) -> None:
    cache = cache_for(client, wait_timeout=0)
    with pytest.raises(ConfigurationError, match=r"value is of type set"):
        cache.get_or_load("k", lambda: {1, 2})  # a set is not JSON
    assert client.exists(cache._name("k") + ":lease") == 0
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda: [1, 2]) == [1, 2]


# -- versions never repeat (a write-back never lands on a newer value) ----------
def _wait_past(seconds: float) -> None:
    """Let *seconds* of wall time pass: the fault being reproduced is a TTL running out."""
    if seconds > 0:
        deadline = time.monotonic() + seconds
        assert wait_until(lambda: time.monotonic() >= deadline, timeout=seconds + 1)


@pytest.mark.parametrize("how", ["invalidate", "set", "other_lease_ttl", "evicted_ver"])
def test_write_back_rejected_after_version_key_expired_or_evicted(client: Any, how: str) -> None:
    """The issue's repro: ttl 300, lease_ttl 1; the loader reads 2499 0.3 s after a write,
    the DB moves to 1999 at +1.05 s, after the `:ver` key that write set could have expired."""
    cache = cache_for(client, ttl=300, lease_ttl=1.0)
    writer = cache
    if how == "other_lease_ttl":  # an instance configured with a shorter lease
        writer = cache_for(client, namespace=cache.namespace, ttl=300, lease_ttl=0.2)
    start = time.monotonic()
    if how == "set":
        writer.set("p", {"price": 2499}, ttl=0.2)
    else:
        writer.invalidate("p")
    if how in ("invalidate", "set"):
        _wait_past(0.3)
    t, release, out = _hold_lease(cache, "p", {"price": 2499})  # the slow loader's read
    if how == "evicted_ver":
        client.delete(cache._name("p") + ":ver")  # what maxmemory-policy allkeys-* may do
    elif how == "other_lease_ttl":
        _wait_past(start + 0.3 - time.monotonic())
    else:
        _wait_past(start + 1.05 - time.monotonic())
    if how == "set":
        writer.set("p", {"price": 1999})
    else:
        writer.invalidate("p")  # the DB moved to 1999
    release.set()
    t.join()
    assert out == [{"price": 2499}]
    assert cache.get("p") in (None, {"price": 1999}), "the slow loader's old price was written back"
    assert cache.stats().writebacks_rejected == 1
    assert cache.get_or_load("p", lambda: {"price": 1999}) == {"price": 1999}


def test_versions_are_random_tokens_never_reused(client: Any) -> None:
    cache = cache_for(client)
    seen = set()
    for i in range(50):
        cache.set("k", i)
        raw = client.get(cache._name("k"))
        version = raw[1:].split(b":", 1)[0]
        assert len(version) == 32 and version not in seen  # 128 random bits per write
        seen.add(version)
        if i % 10 == 0:
            client.delete(cache._name("k") + ":ver")


# -- single-flight under faults ---------------------------------------------------
def _killed_holder(spec_: Any, namespace: str, key: str, ready: Any) -> None:
    """Take the lease for *key*, say so, and hang in the loader until killed."""
    cache = RedisCache(make_client(spec_), namespace=namespace, lease_ttl=1.0)

    def loader() -> Any:
        ready.put(True)
        time.sleep(3600)

    cache.get_or_load(key, loader)


def test_lease_holder_killed_mid_load_waiters_take_over(spec: Any, client: Any) -> None:
    """48 waiters behind a holder killed with SIGKILL: all get the value, one reload."""
    ctx = multiprocessing.get_context("spawn")
    namespace = unique_namespace()
    ready = ctx.Queue()
    holder = ctx.Process(target=_killed_holder, args=(spec, namespace, "hot", ready))
    holder.start()
    try:
        assert ready.get(timeout=60)
        holder.kill()
    finally:
        holder.join(10)
    cache = RedisCache(client, namespace=namespace, lease_ttl=1.0)
    assert cache.wait_timeout > cache.lease_ttl
    calls: list[int] = []
    lock = threading.Lock()

    def loader() -> str:
        with lock:
            calls.append(1)
        time.sleep(0.2)
        return "loaded"

    out: list[Any] = []
    errors: list[BaseException] = []

    def waiter() -> None:
        other = RedisCache(make_client(spec), namespace=namespace, lease_ttl=1.0)
        try:
            out.append(other.get_or_load("hot", loader))
        except BaseException as exc:  # recorded, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(48)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert errors == []
    assert out == ["loaded"] * 48
    assert calls == [1]


def test_none_result_is_single_flight_in_process(client: Any) -> None:
    cache = cache_for(client)  # no negative_ttl: None is not cached
    calls: list[int] = []
    barrier = threading.Barrier(16)

    def loader() -> None:
        calls.append(1)
        time.sleep(0.3)

    def run(out: list[Any]) -> None:
        barrier.wait()
        out.append(cache.get_or_load("absent", loader))

    out: list[Any] = []
    threads = [threading.Thread(target=run, args=(out,)) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert out == [None] * 16
    # Callers that began before the loader was called share its call; one that
    # began after it takes the next load (a write may have come in between).
    assert 1 <= len(calls) <= 2


def test_redis_down_fallback_is_single_flight(fresh_redis_server: Any) -> None:
    cache = cache_for(
        make_client(("standalone", fresh_redis_server.url), socket_timeout=0.5), fallback=True
    )
    fresh_redis_server.stop()
    calls: list[int] = []
    barrier = threading.Barrier(32)

    def loader() -> str:
        calls.append(1)
        time.sleep(0.3)
        return "db"

    def run(out: list[Any]) -> None:
        barrier.wait()
        out.append(cache.get_or_load("k", loader))

    out: list[Any] = []
    threads = [threading.Thread(target=run, args=(out,)) for _ in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    fresh_redis_server.start()
    assert out == ["db"] * 32
    assert 1 <= len(calls) <= 2  # at most one more load, for callers begun after the first


# -- every call is bounded, retries included ------------------------------------
@pytest.mark.parametrize("retry", ["redis-py default", "Retry(NoBackoff(), 1)"])
def test_blackholed_calls_return_within_call_timeout(redis_server: Any, retry: str) -> None:
    """redis-py >= 6's `redis.Redis()` retries 10 times by default (jittered backoff,
    10 ms base, 1 s cap): the documented bound counts them. About 8 s for the default."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from scalekit.testing import TCPProxy

    with TCPProxy(*redis_server.address) as proxy:
        if retry == "redis-py default":
            c = redis.Redis(*proxy.address, socket_timeout=0.1, socket_connect_timeout=0.1)
            longest = sum(min(1.0, 0.01 * 2**f) for f in range(1, 11))
            calls = ["get"]  # each blackholed call takes most of its 7.5 s bound
            expected = 11 * (0.1 + 0.1) + longest
        else:
            c = make_client(
                ("standalone", f"redis://{proxy.address[0]}:{proxy.address[1]}/0"),
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 1),
            )
            calls = ["get", "get_or_load"]
            expected = 2 * (0.5 + 0.5)
        cache = cache_for(c, fallback=True)
        assert cache.call_timeout == pytest.approx(expected)
        cache.set("k", 1)
        proxy.blackhole()
        margin = 0.5  # thread scheduling on a loaded machine
        ops = {"get": lambda: cache.get("k"), "get_or_load": lambda: cache.get_or_load("k", str)}
        for name in calls:
            start = time.monotonic()
            with contextlib.suppress(BackendUnavailableError):
                ops[name]()
            assert time.monotonic() - start <= cache.call_timeout + margin, name
        proxy.pass_through()
        assert cache.get("k") == 1  # the same client works once the partition heals
        c.close()


# -- cluster batches: one round trip per node --------------------------------------
def test_cluster_get_many_set_many_one_round_trip_per_node(redis_cluster: Any) -> None:
    c = make_client(("cluster", redis_cluster.host, redis_cluster.port))
    cache = cache_for(c)
    items = {f"goods:{i}": i for i in range(200)}
    cache.set_many(items)
    sent: list[Any] = []
    nodes = c.get_primaries()
    for node in nodes:
        pool = node.redis_connection.connection_pool
        real = pool.get_connection

        def counting(*a: Any, _real: Any = real, _node: Any = node, **k: Any) -> Any:
            sent.append(_node.name)
            return _real(*a, **k)

        pool.get_connection = counting  # type: ignore[method-assign]
    try:
        assert cache.get_many(items) == items
        got = list(sent)
        sent.clear()
        cache.set_many(items)
        put = list(sent)
    finally:
        for node in nodes:
            del node.redis_connection.connection_pool.get_connection
    assert sorted(got) == sorted(n.name for n in nodes)  # one connection use per node
    assert sorted(put) == sorted(n.name for n in nodes)
    c.close()


def test_serializers_refuse_at_write_time_what_they_cannot_read(client: Any) -> None:
    packed = cache_for(client, serializer="msgpack")
    packed.set("user", {7: "alice"})
    assert packed.get("user") == {7: "alice"}  # readable for the whole TTL
    with pytest.raises(ConfigurationError, match="64 bits"):
        packed.set("big", 2**64)
    plain = cache_for(client)
    with pytest.raises(ConfigurationError, match="nan"):
        plain.set("p", {"price": float("nan")})
    with pytest.raises(ConfigurationError, match="merged"):
        plain.get_or_load("m", lambda: {1: "a", "1": "b"})
    assert client.exists(plain._name("p"), plain._name("m"), plain._name("m") + ":lease") == 0


def test_pickle_refuses_at_write_time_a_value_it_cannot_pickle(client: Any) -> None:
    trusting = cache_for(client, serializer="pickle", wait_timeout=0)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigurationError, match="'pickle' cannot store this value: it is nested"):
        trusting.set("deep", deep)
    with pytest.raises(ConfigurationError, match="'pickle' cannot store this value"):
        trusting.get_or_load("fn", lambda: threading.Lock())
    assert client.exists(trusting._name("deep"), trusting._name("fn") + ":lease") == 0
    assert trusting.get_or_load("fn", lambda: (1, {2})) == (1, {2})


class _TwoArgError(Exception):
    """Pickles, but unpickling calls `__init__` with one argument and fails."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")


def test_pickle_refuses_at_write_time_a_value_it_cannot_unpickle(client: Any) -> None:
    trusting = cache_for(client, serializer="pickle", wait_timeout=0)
    with pytest.raises(ConfigurationError, match="'pickle' cannot read back this value"):
        trusting.set("err", _TwoArgError(1, "x"))
    with pytest.raises(ConfigurationError, match="'pickle' cannot read back this value"):
        trusting.get_or_load("err2", lambda: _TwoArgError(2, "y"))
    assert client.exists(trusting._name("err"), trusting._name("err2") + ":lease") == 0
    # such a pickle written by an older version is a miss: loaded and written back
    poisoned = b"v" + b"0" * 32 + b":0:" + pickle.dumps(_TwoArgError(1, "x"))
    client.set(trusting._name("old"), poisoned, px=30_000)
    assert trusting.get("old", "absent") == "absent"
    assert trusting.get_or_load("old", lambda: (1, "loaded")) == (1, "loaded")
    assert trusting.get("old") == (1, "loaded") and trusting.stats().undecodable == 2


@pytest.mark.parametrize("fallback", [False, True])
def test_undecodable_entry_is_a_miss_loaded_and_written_back(client: Any, fallback: bool) -> None:
    """Bytes the cache cannot read (another tool's, another serializer's, a pickle that
    does not come back) are a counted miss: `get` gives the default, `get_or_load`
    loads once and writes back, and the key serves the loaded value afterwards."""
    cache = cache_for(client, ttl=30, fallback=fallback, serializer="json")
    other = RedisCache(client, namespace=cache.namespace, serializer="msgpack")
    header = b"v" + b"0" * 32 + b":0:"
    foreign = [
        b"hello",
        b"",
        b"v0123:notanumber:{}",
        header + b"{bad json",
        b"xABC:0:{}",
    ]
    for n, raw in enumerate(foreign):
        key = f"k{n}"
        client.set(cache._name(key), raw, px=30_000)
        assert cache.get(key, "absent") == "absent", raw
        assert cache.get_many([key]) == {}
        calls: list[int] = []
        assert cache.get_or_load(key, lambda c=calls: c.append(1) or "fresh") == "fresh", raw
        assert calls == [1]
        assert cache.get(key) == "fresh"
        assert cache.get_or_load(key, lambda c=calls: c.append(1) or "again") == "fresh"
        assert calls == [1]
    # two serializers on one namespace (a rolling deploy): each reads the other's
    # value as a miss, loads and writes back its own
    other.set("mixed", {"id": 1})
    assert cache.get_or_load("mixed", lambda: {"id": 2}) == {"id": 2}
    assert other.get_or_load("mixed", lambda: {"id": 3}) == {"id": 3}
    stats = cache.stats()
    assert stats.undecodable == 3 * len(foreign) + 1  # get, get_many, then get_or_load
    assert stats.loads == len(foreign) + 1 and stats.writebacks == len(foreign) + 1


# -- a refused PUBLISH: the write and its report agree ----------------------------
def test_refused_publish_is_refused_at_construction_and_writes_nothing(
    fresh_redis_server: Any,
) -> None:
    """Redis 7's default `acl-pubsub-default resetchannels` grants a new user no channel."""
    import redis

    admin = make_client(("standalone", fresh_redis_server.url))
    namespace = unique_namespace()
    channel = f"{namespace}:__invalidations__"
    admin.acl_setuser(
        "nochan", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"], channels=[]
    )
    user = make_client(("standalone", fresh_redis_server.url), username="nochan", password="pw")
    with pytest.raises(ConfigurationError, match=f"PUBLISH.*{channel}"):
        RedisCache(user, namespace=namespace)
    RedisCache(user, namespace=namespace, notify=False).set("quiet", 1)  # no channel needed

    # Rights revoked after construction: each refused write leaves nothing written.
    admin.acl_setuser(
        "nochan",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all"],
        channels=[channel],
    )
    cache = RedisCache(user, namespace=namespace)
    admin.acl_setuser("nochan", enabled=True, reset_channels=True)
    admin.execute_command("CLIENT", "KILL", "USER", "nochan")
    reader = RedisCache(admin, namespace=namespace)
    reader.set("d", "before")
    for write in (
        lambda: cache.set("a", 1),
        lambda: cache.set_many({"b": 1, "c": 2}),
        lambda: cache.get_or_load("e", lambda: "loaded"),
        lambda: cache.delete("d"),
    ):
        with pytest.raises(BackendError, match="nothing was written") as info:
            write()
        assert isinstance(info.value.__cause__, redis.ResponseError)
    assert reader.get_many(list("abcde")) == {"d": "before"}
    admin.close()


def test_call_timeout_counts_the_pool_wait_and_refuses_an_unknown_backoff(
    redis_server: Any,
) -> None:
    """Threads queued on a BlockingConnectionPool while Redis is blackholed wait for a
    connection first: call_timeout counts that wait. A backoff whose longest sleep is
    unknown cannot be bounded: refused, not sampled once."""
    import redis
    from redis.backoff import AbstractBackoff, FullJitterBackoff, NoBackoff
    from redis.retry import Retry

    from scalekit.testing import TCPProxy

    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    with TCPProxy(*redis_server.address) as proxy:
        pool = redis.BlockingConnectionPool(
            host=proxy.address[0], port=proxy.address[1], max_connections=2, timeout=1,
            retry=Retry(NoBackoff(), 1), **timeouts,
        )  # fmt: skip
        cache = cache_for(redis.Redis(connection_pool=pool))
        assert cache.call_timeout == pytest.approx(1 + 2 * (0.5 + 0.5))
        cache.get("warm")
        proxy.blackhole()
        took: list[float] = []

        def timed_get() -> None:
            start = time.monotonic()
            with contextlib.suppress(BackendUnavailableError):
                cache.get("k")
            took.append(time.monotonic() - start)

        threads = [threading.Thread(target=timed_get) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        proxy.pass_through()
        margin = 0.5  # thread scheduling on a loaded machine
        assert len(took) == 8 and max(took) <= cache.call_timeout + margin
        pool.disconnect()

    class Jitter(AbstractBackoff):
        def compute(self, failures: int) -> float:
            return random.uniform(0, 1.0)

    c = make_client(("standalone", redis_server.url), retry=Retry(Jitter(), 4), **timeouts)
    with pytest.raises(ConfigurationError, match=r"backoff Jitter .* cannot be bounded"):
        cache_for(c)
    c = make_client(
        ("standalone", redis_server.url),
        retry=Retry(FullJitterBackoff(cap=1.0, base=0.2), 4),
        **timeouts,
    )
    longest = sum(min(1.0, 0.2 * 2**f) for f in range(1, 5))  # 0.4 + 0.8 + 1 + 1
    assert cache_for(c).call_timeout == pytest.approx(5 * (0.5 + 0.5) + longest)


def test_loader_asking_for_its_own_key_fails_at_once(client: Any) -> None:
    from scalekit.exceptions import InvalidStateError

    cache = cache_for(client, wait_timeout=5)
    start = time.monotonic()
    with pytest.raises(InvalidStateError, match="its own key"):
        cache.get_or_load("re", lambda: cache.get_or_load("re", lambda: "inner"))
    assert time.monotonic() - start < 1.0  # not after wait_timeout
    assert client.exists(cache._name("re") + ":lease") == 0  # the lease was released
    assert cache.get_or_load("re", lambda: "outer") == "outer"


def test_get_many_refuses_a_single_string(client: Any) -> None:
    cache = cache_for(client)
    cache.set_many({"a": 1, "b": 2, "ab": 3})
    with pytest.raises(ConfigurationError, match="not a single str"):
        cache.get_many("ab")
    assert cache.get_many(["ab"]) == {"ab": 3}


def test_cluster_client_reading_from_replicas_is_refused(redis_cluster: Any) -> None:
    """A lagging replica would serve a value after its invalidation was acknowledged."""
    from redis.cluster import LoadBalancingStrategy

    for option in (
        {"read_from_replicas": True},
        {"load_balancing_strategy": LoadBalancingStrategy.ROUND_ROBIN},
    ):
        c = make_client(("cluster", redis_cluster.host, redis_cluster.port), **option)
        with pytest.raises(ConfigurationError, match="primaries only"):
            cache_for(c)
        c.close()


def test_fallback_covers_a_redis_that_refuses_writes(fresh_redis_server: Any) -> None:
    """Out of memory under `noeviction`: Redis answers, but every write is refused."""
    import redis

    admin = make_client(("standalone", fresh_redis_server.url))
    lenient = cache_for(make_client(("standalone", fresh_redis_server.url)), fallback=True)
    strict = cache_for(admin, namespace=lenient.namespace)
    calls: list[int] = []

    def loader() -> int:
        calls.append(1)
        return 7

    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        assert lenient.get_or_load("k", loader) == 7 and calls == [1]
        assert lenient.stats().fallbacks == 1
        with pytest.raises(BackendError) as info:
            strict.get_or_load("k", loader)
        assert isinstance(info.value.__cause__, redis.exceptions.OutOfMemoryError)
        assert calls == [1]  # without fallback the loader is not called
    finally:
        admin.config_set("maxmemory", 0)
    assert lenient.get_or_load("k", loader) == 7 and calls == [1, 1]
    assert strict.get("k") == 7  # cached once writes are accepted again
