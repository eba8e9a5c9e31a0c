"""`call_timeout` is a deadline: every call of the tier returns or raises within it.

Faults on the real servers: a proxy that delivers a reply slowly in pieces
(each piece sooner than `socket_timeout`), a script running past
`busy-reply-threshold`, a SIGSTOPped server or cluster master. After each
fault ends the next call succeeds on the same client (no half-read
connection is reused). About 15 s in all.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from scalekit.exceptions import BackendUnavailableError
from tests.caching._redis_helpers import make_client, unique_namespace, wait_until

pytestmark = pytest.mark.redis

MARGIN = 0.3  # seconds: thread scheduling on a loaded 2-core machine
BIG = "x" * 1_000_000  # a reply the proxy forwards in ~16 pieces

# A read-only script that runs for ARGV[1] seconds (killable by SCRIPT KILL).
SPIN = (
    "local t = redis.call('TIME') local stop = tonumber(t[1]) + tonumber(ARGV[1]) "
    "while tonumber(redis.call('TIME')[1]) < stop do end return 1"
)


def _wait_busy(host: str, port: int) -> None:
    """Poll until the server answers BUSY (the script is past its threshold)."""
    import redis

    probe = redis.Redis(host=host, port=port, socket_timeout=1)
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline:
            try:
                probe.ping()
            except redis.ResponseError as exc:
                if str(exc).startswith("BUSY"):
                    return
    finally:
        probe.close()
    raise AssertionError("the script never made the server BUSY")


def _ops(cache: RedisCache, near: NearCache, key: str) -> dict[str, Callable[[], Any]]:
    return {
        "get": lambda: cache.get(key),
        "get_many": lambda: cache.get_many([key, key + "-2"]),
        "get_or_load": lambda: cache.get_or_load(key, lambda: "db"),
        "set": lambda: cache.set(key + "-3", "v"),
        "set_many": lambda: cache.set_many({key + "-3": "v", key + "-4": "w"}),
        "invalidate": lambda: cache.invalidate(key + "-3"),
        "near.get": lambda: near.get(key),
        "near.get_or_load": lambda: near.get_or_load(key, lambda: "db"),
        "near.set": lambda: near.set(key + "-3", "v"),
    }


def _assert_bounded(cache: RedisCache, ops: dict[str, Callable[[], Any]]) -> None:
    for name, op in ops.items():
        start = time.monotonic()
        with contextlib.suppress(BackendUnavailableError):
            op()
        took = time.monotonic() - start
        assert took <= cache.call_timeout + MARGIN, (name, took, cache.call_timeout)


@contextlib.contextmanager
def _tier(client: Any) -> Iterator[tuple[RedisCache, NearCache]]:
    cache = RedisCache(client, namespace=unique_namespace())
    with NearCache(LRUCache(100), cache, max_staleness=0.5) as near:
        yield cache, near


def test_a_reply_trickling_in_pieces_is_cut_at_call_timeout(redis_server: Any) -> None:
    """Each piece comes 0.2 s after the last (< socket_timeout), the reply in ~4 s: cut by 2 s."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from scalekit.testing import TCPProxy

    with TCPProxy(*redis_server.address) as proxy:
        client = make_client(
            ("standalone", f"redis://{proxy.address[0]}:{proxy.address[1]}/0"),
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 1),
        )
        with _tier(client) as (cache, near):
            assert cache.call_timeout == pytest.approx(2 * (0.5 + 0.5))
            cache.set_many({"k": BIG, "k-2": BIG})
            proxy.delay(0.2)
            ops = _ops(cache, near, "k")
            near.clear_local()
            _assert_bounded(cache, ops)
            proxy.pass_through()
            assert cache.get("k") == BIG  # the cut connection was not reused half-read
            assert near.get("k") == BIG
        client.close()


@pytest.mark.parametrize("retry", ["redis-py default", "Retry(NoBackoff(), 1)"])
def test_a_script_running_past_busy_threshold_is_unavailable(
    fresh_redis_server: Any, retry: str
) -> None:
    """Redis answers BUSY while a slow script runs: unavailable, within call_timeout."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    if retry != "redis-py default":  # else redis.Redis()'s own: 10 retries, jittered backoff
        kwargs["retry"] = Retry(NoBackoff(), 1)
    client = redis.Redis(*fresh_redis_server.address, **kwargs)
    admin = make_client(("standalone", fresh_redis_server.url), socket_timeout=10)
    admin.config_set("busy-reply-threshold", 100)
    with _tier(client) as (cache, near):
        cache.set("k", "v")
        spinner = threading.Thread(target=admin.eval, args=(SPIN, 0, 3))
        spinner.start()
        _wait_busy(*fresh_redis_server.address)  # every command now gets BUSY
        for name, op in _ops(cache, near, "k").items():
            if name.startswith("near."):
                near.clear_local()
            start = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="busy"):
                op()
            assert time.monotonic() - start <= cache.call_timeout + MARGIN, name
        spinner.join(10)
        assert cache.get("k") == "v"
    client.close()
    admin.close()


def test_a_sigstopped_server_is_bounded_and_recovers(fresh_redis_server: Any) -> None:
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    client = make_client(
        ("standalone", fresh_redis_server.url),
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 2),
    )
    with _tier(client) as (cache, near):
        cache.set("k", "v")
        near.clear_local()
        fresh_redis_server.pause()
        try:
            _assert_bounded(cache, _ops(cache, near, "k"))
        finally:
            fresh_redis_server.resume()
        assert cache.get("k") == "v"
    client.close()


def test_cluster_master_stopped_or_busy_is_bounded_and_recovers(redis_cluster: Any) -> None:
    """On the 3-master cluster: the master of the key SIGSTOPped (< node timeout, so
    the cluster does not fail it over), then running a slow script."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = make_client(
        ("cluster", redis_cluster.host, redis_cluster.port),
        socket_timeout=0.25,
        socket_connect_timeout=0.25,
        retry=Retry(NoBackoff(), 1),
    )
    with _tier(client) as (cache, near):
        cache.set("k", "v")
        node = client.get_node_from_key(cache._name("k"))
        server = next(s for s in redis_cluster.nodes if s.address[1] == node.port)
        for name, op in _ops(cache, near, "k").items():
            near.clear_local()
            server.pause()
            start = time.monotonic()
            try:
                with contextlib.suppress(BackendUnavailableError):
                    op()
                took = time.monotonic() - start
            finally:
                server.resume()
            assert took <= cache.call_timeout + MARGIN, (name, took, cache.call_timeout)
            redis_cluster.wait_ok(timeout=10)
            assert cache.get("k") == "v", name

        admin = make_client(("standalone", f"redis://{node.host}:{node.port}/0"), socket_timeout=10)
        admin.config_set("busy-reply-threshold", 100)
        spinner = threading.Thread(target=admin.eval, args=(SPIN, 0, 2))
        spinner.start()
        _wait_busy(node.host, node.port)
        try:
            for name, op in _ops(cache, near, "k").items():
                near.clear_local()
                start = time.monotonic()
                with contextlib.suppress(BackendUnavailableError):
                    op()
                assert time.monotonic() - start <= cache.call_timeout + MARGIN, name
        finally:
            spinner.join(10)
            admin.config_set("busy-reply-threshold", 5000)
            admin.close()
        assert cache.get("k") == "v"
    client.close()


def test_near_cache_treats_busy_during_listener_setup_as_unavailable(
    fresh_redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """BUSY while a listener sets up is a server that cannot answer, not an ACL refusal."""
    import redis

    caplog.set_level("DEBUG", logger="scalekit.caching.near_cache")
    admin = make_client(("standalone", fresh_redis_server.url), socket_timeout=30)
    admin.config_set("busy-reply-threshold", 100)
    cache = RedisCache(
        make_client(("standalone", fresh_redis_server.url)), namespace=unique_namespace()
    )
    cache.set("k", "v")

    def spin() -> None:
        with contextlib.suppress(redis.ResponseError):  # ended by SCRIPT KILL
            admin.eval(SPIN, 0, 20)

    def busy() -> threading.Thread:
        spinner = threading.Thread(target=spin)
        spinner.start()
        _wait_busy(*fresh_redis_server.address)
        return spinner

    def kill(spinner: threading.Thread) -> None:
        make_client(("standalone", fresh_redis_server.url)).script_kill()
        spinner.join(10)

    def busy_logged() -> bool:
        return any("BUSY" in r.getMessage() for r in caplog.records)

    spinner = busy()
    try:
        # constructed while the server is busy: no ConfigurationError, just untrusted
        near = NearCache(LRUCache(10), cache, max_staleness=0.5, connect_timeout=0.5)
        assert near.state == "untrusted"
        assert wait_until(busy_logged)
    finally:
        kill(spinner)
    try:
        assert wait_until(lambda: near.state == "trusted")
        assert near.get("k") == "v"
        caplog.clear()
        spinner = busy()
        try:
            # the heartbeat goes unanswered: the listener reconnects into BUSY replies
            assert wait_until(busy_logged)
            assert near.state == "untrusted"
        finally:
            kill(spinner)
        assert wait_until(lambda: near.state == "trusted")
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        near.close()


@pytest.mark.parametrize("health_check_interval", [0, 1])
def test_a_call_that_must_reconnect_over_a_slow_link_is_bounded(
    redis_server: Any, health_check_interval: int
) -> None:
    """The connection handshake (AUTH, CLIENT SETNAME, CLIENT SETINFO, SELECT) counts too.

    Each piece is held 0.22 s (below socket_timeout), so a handshake of five
    round trips lasts ~2.2 s: the call is cut at call_timeout all the same.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from scalekit.testing import TCPProxy

    user = unique_namespace()
    admin = make_client(("standalone", redis_server.url))
    admin.acl_setuser(
        user, enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    try:
        with TCPProxy(*redis_server.address) as proxy:
            client = redis.Redis(
                *proxy.address,
                db=1,
                username=user,
                password="pw",
                client_name="shop-web",
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=health_check_interval,
            )
            cache = RedisCache(client, namespace=unique_namespace())
            cache.set("k", "v")
            proxy.delay(0.22)
            for _ in range(3):
                client.connection_pool.disconnect()  # a fresh connection, as after any cut
                start = time.monotonic()
                with contextlib.suppress(BackendUnavailableError):
                    cache.get("k")
                took = time.monotonic() - start
                assert took <= cache.call_timeout + MARGIN, (took, cache.call_timeout)
            proxy.pass_through()
            assert cache.get("k") == "v"
            client.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_construction_and_close_against_a_blackholed_redis_are_bounded(redis_server: Any) -> None:
    """redis-py's default retry (10 retries) would make each take 5-10 s (about 4 s in all).

    Bounds: `RedisCache()` one attempt (`socket_connect_timeout + socket_timeout`),
    `NearCache()` its `connect_timeout`, `close()` `CLOSE_TIMEOUT`; 0.3 s of scheduling
    margin each.
    """
    from scalekit.caching.near_cache import CLOSE_TIMEOUT
    from scalekit.testing import TCPProxy

    with TCPProxy(*redis_server.address) as proxy:
        import redis

        host, port = proxy.address
        client = redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        cache = RedisCache(client, namespace=unique_namespace())
        assert cache.call_timeout > 10  # the default retry policy
        near = NearCache(LRUCache(10), cache, max_staleness=0.5)
        near.set("k", 1)
        assert near.get("k") == 1
        proxy.blackhole()

        def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
            started = time.monotonic()
            result = fn()
            return result, time.monotonic() - started

        _, built = timed(lambda: RedisCache(client, namespace=unique_namespace()))
        assert built <= 0.5 + 0.5 + 0.3
        late, waited = timed(
            lambda: NearCache(LRUCache(10), cache, max_staleness=0.5, connect_timeout=1)
        )
        assert waited <= 1 + 0.3
        assert late.state == "untrusted"
        _, closed = timed(late.close)
        assert closed <= CLOSE_TIMEOUT + 0.3
        _, closed = timed(near.close)
        assert closed <= CLOSE_TIMEOUT + 0.3
        assert len(near._local) == 0  # closed: nothing served locally
        proxy.pass_through()
        client.close()
