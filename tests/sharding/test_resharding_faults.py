"""A `MIGRATE` whose outcome is unknown (timed out) on two real Redis servers.

The target is frozen (SIGSTOP) or reached through a proxy that delays every
byte, so `MIGRATE` times out at the source while the target restores the
key later. Every test takes about a second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit import BackendUnavailableError, ConfigurationError
from scalekit.exceptions import KeyAbsentError, RoutingError
from scalekit.sharding import HashRouter, MigratingRouter
from scalekit.testing import RedisServer, TCPProxy

redis = pytest.importorskip("redis")

from scalekit.sharding.redis_store import RedisShardStore  # noqa: E402

pytestmark = pytest.mark.redis

TIMEOUT_MS = 200


def client(server: RedisServer) -> Any:
    return redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)


@pytest.fixture
def proxy(redis_pair: tuple[RedisServer, RedisServer]) -> Iterator[TCPProxy]:
    target = redis_pair[1]
    with TCPProxy(target.host, target.address[1]) as made:
        yield made


def stores_via(
    redis_pair: tuple[RedisServer, RedisServer], proxy: TCPProxy | None = None
) -> dict[str, RedisShardStore]:
    a, b = redis_pair
    return {
        "A": RedisShardStore(client(a), migrate_timeout_ms=TIMEOUT_MS),
        "B": RedisShardStore(
            client(b),
            address=proxy.address if proxy is not None else None,
            migrate_timeout_ms=TIMEOUT_MS,
        ),
    }


def router_of(stores: dict[str, RedisShardStore], name: str) -> MigratingRouter[str]:
    return MigratingRouter(HashRouter(["A"]), HashRouter(["B"]), stores, name=name, timeout=3)


def raw(redis_pair: tuple[RedisServer, RedisServer]) -> tuple[Any, Any]:
    return client(redis_pair[0]), client(redis_pair[1])


def restored_late(raw_b: Any, before: int) -> None:
    """Poll until the frozen target has run the delayed RESTORE (a new key on it)."""
    for _ in range(2000):
        if raw_b.dbsize() > before:
            return
        threading.Event().wait(0.005)  # bounded poll for the server's own progress
    raise AssertionError("the target never restored the timed-out MIGRATE")


def test_a_migrate_timed_out_by_a_frozen_target_resurrects_nothing(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    raw_a, raw_b = raw(redis_pair)
    raw_a.set("user:1", "old-value")
    router = router_of(stores_via(redis_pair), "frozen")
    router.start()
    before = raw_b.dbsize()
    redis_pair[1].pause()
    try:
        with pytest.raises(BackendUnavailableError):
            router.move(limit=10)
    finally:
        redis_pair[1].resume()
    restored_late(raw_b, before)  # the target now holds a copy from the timed-out MIGRATE
    assert router.execute("user:1", "SET", "new-value") is True
    assert router.execute("user:1", "DEL") == 1
    assert router.execute("user:1", "GET") is None
    assert router.execute("user:1", "EXISTS") == 0
    assert router.execute("user:1", "APPEND", "X") == 1
    assert router.execute("user:1", "GET") == "X"
    final = router.complete()
    assert final.route("user:1") == "B"
    assert raw_b.get("user:1") == "X" and raw_a.get("user:1") is None


@pytest.mark.parametrize("through_mover", [False, True])
def test_a_migrate_timed_out_by_a_slow_link_resurrects_nothing(
    redis_pair: tuple[RedisServer, RedisServer], proxy: TCPProxy, through_mover: bool
) -> None:
    raw_a, raw_b = raw(redis_pair)
    raw_a.set("k", "v1")
    stores = stores_via(redis_pair, proxy)
    mover = router_of(stores, "slow")
    mover.start()
    before = raw_b.dbsize()
    proxy.delay(0.7)
    with pytest.raises(BackendUnavailableError):
        mover.move(limit=10)
    restored_late(raw_b, before)
    proxy.pass_through()
    other = mover if through_mover else router_of(stores_via(redis_pair, proxy), "slow")
    assert other.execute("k", "SET", "v2") is True
    assert other.execute("k", "DEL") == 1
    assert other.execute("k", "GET") is None
    assert mover.execute("k", "GET") is None
    assert other.execute("k", "INCR") == 1
    mover.complete()
    assert raw_b.get("k") == "1" and raw_a.get("k") is None


def test_a_restarted_mover_rolls_back_a_failed_move_without_losing_a_write(
    redis_pair: tuple[RedisServer, RedisServer], proxy: TCPProxy
) -> None:
    raw_a, raw_b = raw(redis_pair)
    raw_a.set("k", "v1")
    first = router_of(stores_via(redis_pair, proxy), "restart")
    first.start()
    before = raw_b.dbsize()
    proxy.delay(0.7)
    with pytest.raises(BackendUnavailableError):
        first.move(limit=10)
    restored_late(raw_b, before)
    proxy.pass_through()
    del first  # the mover's process ends; what it saw is gone with it
    writer = router_of(stores_via(redis_pair, proxy), "restart")
    assert writer.execute("k", "SET", "v2") is True  # acknowledged
    second = router_of(stores_via(redis_pair, proxy), "restart")
    second.start()  # adopts 1:forward
    second.rollback()
    assert writer.execute("k", "GET") == "v2"
    assert second.complete() is second.old
    assert writer.execute("k", "GET") == "v2"
    assert raw_a.get("k") == "v2" and raw_b.get("k") is None


class StopsAfterMigrate(RedisShardStore):
    """A store whose mover process dies right after `MIGRATE` succeeded."""

    def resolve(self, name: str, keys: Any, target: Any) -> list[str]:
        if getattr(self, "dying", False):
            self.dying = False
            raise BackendUnavailableError("the mover died before settling")
        return super().resolve(name, keys, target)


def test_a_restarted_mover_finishes_a_move_whose_migrate_succeeded(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    raw_a, raw_b = raw(redis_pair)
    raw_a.set("k", "v1", px=60_000)
    a, b = redis_pair
    dying = StopsAfterMigrate(client(a), migrate_timeout_ms=TIMEOUT_MS)
    first = router_of({"A": dying, "B": RedisShardStore(client(b))}, "done")
    first.start()
    dying.dying = True
    with pytest.raises(BackendUnavailableError):
        first.move(limit=10)
    assert raw_a.get("k") is None and raw_b.get("k") is None  # staged on B, not served yet
    writer = router_of(stores_via(redis_pair), "done")
    assert writer.execute("k", "APPEND", "+") == 3  # the moved copy, promoted on the target
    assert 59_000 < raw_b.pttl("k") <= 60_000  # with the key's own deadline
    second = router_of(stores_via(redis_pair), "done")
    second.start()
    assert second.complete() is second.new
    assert raw_b.get("k") == "v1+" and raw_a.get("k") is None
    assert raw_a.keys("scalekit:reshard:stage:*") == raw_b.keys("scalekit:reshard:stage:*") == []


def test_a_key_given_twice_to_one_move_moves_once(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    raw_a, raw_b = raw(redis_pair)
    raw_a.set("k", "v1")
    stores = stores_via(redis_pair)
    router = router_of(stores, "twice")
    router.start()
    assert stores["A"].move(["k", "k"], stores["B"], name="twice") == 1
    assert raw_a.get("k") is None and raw_b.get("k") == "v1"
    assert stores["A"].in_doubt("twice") == []


def test_a_redis_cluster_is_refused_with_a_clear_error(redis_cluster: Any) -> None:
    from redis.cluster import RedisCluster

    cluster = RedisCluster(host=redis_cluster.host, port=redis_cluster.port, socket_timeout=5)
    try:
        with pytest.raises(ConfigurationError, match="Redis Cluster moves its slots itself"):
            RedisShardStore(cluster)  # type: ignore[arg-type]
    finally:
        cluster.close()
    # A plain client of one cluster node, as a hostile user would try it.
    nodes = [redis.Redis(host=h, port=p, socket_timeout=5) for h, p in redis_cluster.startup_nodes]
    try:
        stores = {name: RedisShardStore(c) for name, c in zip("AB", nodes, strict=False)}
        with pytest.raises(ConfigurationError, match="is a Redis Cluster node"):
            # The router reads the recorded state when it is built.
            router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
            router.start()
            for i in range(50):  # keys of slots on every node
                router.execute(f"k{i}", "SET", "v")
    finally:
        for c in nodes:
            c.close()


def test_a_source_restarted_mid_scan_leaves_no_key_behind_at_complete() -> None:
    # A restarted Redis has a new hash table: a SCAN cursor of the old
    # incarnation skips keys in the new one. 20,000 keys (about 2 s).
    n = 20_000
    a, b = RedisServer(appendonly=True), RedisServer(appendonly=True)
    a.start()
    b.start()
    try:
        ca, cb = client(a), client(b)
        with ca.pipeline(transaction=False) as pipe:
            for i in range(n):
                pipe.set(f"u{i}", i)
            pipe.execute()
        old, new = HashRouter(["a"]), HashRouter(["a", "b"])
        stores = {"a": RedisShardStore(ca), "b": RedisShardStore(cb)}
        router = MigratingRouter(old, new, stores, name="scan-restart", timeout=3)
        router.start()
        assert router.move(limit=n // 10, batch=200) == n // 10
        a.restart()  # AOF reloaded: every key is back, in a new table
        assert router.complete() is new
        left = [f"u{i}" for i in range(n) if new.route(f"u{i}") == "b" and ca.exists(f"u{i}")]
        assert left == []
        assert all(router.execute(f"u{i}", "GET") == str(i) for i in range(0, n, 97))
    finally:
        a.stop()
        b.stop()


def test_a_stale_mover_after_another_process_rolled_back_is_refused_and_moves_nothing(
    redis_pair: tuple[RedisServer, RedisServer],
) -> None:
    ca, cb = raw(redis_pair)
    sa, sb = RedisShardStore(ca), RedisShardStore(cb)
    old, new = HashRouter(["a"]), HashRouter(["a", "b"])
    key = next(f"c{i}" for i in range(1000) if old.route(f"c{i}") != new.route(f"c{i}"))
    ca.set(key, 10)
    woken: list[Any] = []

    class WakesTheMover(RedisShardStore):
        """The stale mover wakes up between the client's ABSENT on B and its step on A."""

        def execute(self, k: Any, command: Any, **kw: Any) -> Any:
            try:
                return super().execute(k, command, **kw)
            except KeyAbsentError:
                while woken:
                    woken.pop()()
                raise

    mover = MigratingRouter(old, new, {"a": sa, "b": sb}, name="m")
    mover.start()  # forward; then it stalls
    operator = MigratingRouter(old, new, {"a": sa, "b": sb}, name="m")
    operator.start()
    operator.rollback()
    refused: list[Exception] = []

    def stale_move() -> None:
        with pytest.raises(RoutingError, match="acted on state") as info:
            mover.move(limit=10)
        refused.append(info.value)

    woken.append(stale_move)
    client = MigratingRouter(old, new, {"a": sa, "b": WakesTheMover(cb)}, name="m")
    assert client.execute(key, "INCR") == 11
    assert refused and not woken
    assert (ca.get(key), cb.get(key)) == ("11", None)
    assert operator.complete() is old
    assert (ca.get(key), cb.get(key)) == ("11", None)


@pytest.mark.parametrize("restart", [True, False], ids=["source restarted", "link reset"])
def test_an_incr_whose_reply_was_lost_runs_once_with_the_default_retries(restart: bool) -> None:
    # The command reaches the source, runs, and its reply is lost on the way
    # back (held by a delaying proxy that is then reset, while the source
    # restarts or not). redis-py's default client retries such a command; a
    # shard store must not, or INCR runs twice. About a second each.
    a, b = RedisServer(appendonly=True), RedisServer()
    a.start()
    b.start()
    try:
        with TCPProxy(a.host, a.address[1]) as link:
            via_link = redis.Redis(
                host=link.host, port=link.port, socket_timeout=5, decode_responses=True
            )
            assert via_link.get_retry()._retries > 0  # redis-py's default: it retries
            raw_a = client(a)
            raw_a.set("c", 10)
            stores = {
                "A": RedisShardStore(via_link, address=a.address),
                "B": RedisShardStore(client(b)),
            }
            router = router_of(stores, "lost-reply")
            router.start()
            assert router.execute("c", "GET") == "10"  # served by A (and its script loaded)
            link.delay(0.25)
            outcome: list[object] = []

            def incr() -> None:
                try:
                    outcome.append(router.execute("c", "INCR"))
                except Exception as exc:  # the outcome is what is checked
                    outcome.append(exc)

            writer = threading.Thread(target=incr)
            writer.start()
            for _ in range(2000):  # bounded poll: the source has run the INCR
                if raw_a.get("c") == "11":
                    break
                threading.Event().wait(0.002)
            else:
                raise AssertionError("the INCR never reached the source")
            link.reset()  # the reply, still in the proxy, is lost
            if restart:
                a.restart()  # AOF reloaded: the INCR is durable
            link.pass_through()
            writer.join(timeout=60)
            assert not writer.is_alive()
            assert client(a).get("c") == "11", "the INCR ran twice"
            [error] = outcome
            assert isinstance(error, BackendUnavailableError), error
            assert "may or may not have run" in str(error)
            # The store serves again (after a restart, with its script cache empty).
            assert router.execute("c", "INCR") == 12
            assert router.execute("c", "GET") == "12"
    finally:
        a.stop()
        b.stop()
