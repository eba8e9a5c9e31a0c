"""Live resharding between two real Redis servers: nothing acknowledged is lost.

The randomized history test runs 5 seeds of about 3 s each; two of them freeze
the target of some moves so that `MIGRATE` times out.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit import ArgumentTypeError, BackendUnavailableError, ConfigurationError, RoutingError
from scalekit.sharding import HashRouter, MigratingRouter, MigrationState
from scalekit.testing import RedisServer

redis = pytest.importorskip("redis")

from scalekit.sharding.redis_store import RedisShardStore  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def clients(redis_pair: tuple[RedisServer, RedisServer]) -> Iterator[dict[str, Any]]:
    made = {
        name: redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
        for name, server in zip(("A", "B"), redis_pair, strict=True)
    }
    yield made
    for client in made.values():
        client.close()


def make_stores(clients: dict[str, Any]) -> dict[str, RedisShardStore]:
    return {name: RedisShardStore(client) for name, client in clients.items()}


def make_router(
    clients: dict[str, Any], stores: dict[str, RedisShardStore] | None = None, **kwargs: Any
) -> MigratingRouter[str]:
    stores = stores or make_stores(clients)
    return MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, **kwargs)


def moving_keys(router: MigratingRouter[str], prefix: str, count: int) -> list[str]:
    keys = (f"{prefix}{i}" for i in range(10_000))
    return [k for k, _ in zip((k for k in keys if router.moves(k)), range(count), strict=False)]


def where(clients: dict[str, Any], key: str) -> list[str]:
    return [name for name, client in clients.items() if client.exists(key)]


def test_rollback_serves_the_newest_write_and_moves_it_back(clients: dict[str, Any]) -> None:
    stores = make_stores(clients)
    router = make_router(clients, stores)
    moved, unmoved = moving_keys(router, "k", 2)
    for key in (moved, unmoved):
        clients["A"].set(key, "v1")
    router.start()
    stores["A"].move([moved], stores["B"], name=router.name)  # the mover has reached only `moved`
    for key in (moved, unmoved):
        assert router.execute(key, "SET", "v2") is not None
        assert router.execute(key, "GET") == "v2"
    router.rollback()
    for key in (moved, unmoved):
        assert router.execute(key, "GET") == "v2"  # acknowledged before the rollback
    assert router.complete() is router.old and router.phase == "aborted"
    for key in (moved, unmoved):
        assert where(clients, key) == ["A"] and clients["A"].get(key) == "v2"
        assert router.execute(key, "GET") == "v2"


def test_read_modify_write_commands_during_a_move_keep_every_update(
    clients: dict[str, Any],
) -> None:
    stores = make_stores(clients)
    router = make_router(clients, stores)
    counter, cart, log = moving_keys(router, "c", 3)
    clients["A"].set(counter, 10)
    clients["A"].hset(cart, mapping={"apple": 1})
    clients["A"].set(log, "a")
    router.start()
    assert router.execute(counter, "INCR") == 11  # before its move: served by the source
    stores["A"].move([counter, cart], stores["B"], name=router.name)
    assert router.execute(counter, "INCR") == 12  # after: by the target, from 11
    assert router.execute(cart, "HSET", "pear", 2) == 1
    assert router.execute(log, "APPEND", "b") == 2
    assert router.complete() is router.new and router.phase == "complete"
    with pytest.raises(ConfigurationError, match="already complete"):
        make_router(clients, stores).start()  # the name is taken until forgotten
    router.forget()
    assert clients["A"].get("scalekit:reshard:state:scalekit") == "3:forgotten"  # the tombstone
    assert clients["B"].get(counter) == "12"
    assert clients["B"].hgetall(cart) == {"apple": "1", "pear": "2"}
    assert clients["B"].get(log) == "ab"
    assert where(clients, counter) == where(clients, cart) == where(clients, log) == ["B"]


def test_new_keys_go_to_the_target_and_deletes_do_not_resurrect(clients: dict[str, Any]) -> None:
    router = make_router(clients)
    fresh, gone, late = moving_keys(router, "n", 3)
    clients["A"].set(gone, "old")
    router.start()
    assert router.execute(fresh, "SET", "new") is not None
    assert where(clients, fresh) == ["B"]
    assert router.execute(gone, "DEL") == 1
    assert router.execute(gone, "GET") is None
    router.rollback()
    assert router.execute(fresh, "GET") == "new"
    assert router.execute(gone, "GET") is None
    assert router.execute(late, "INCR") == 1
    assert where(clients, late) == ["A"]  # rolling back, new keys go to the old placement
    router.complete()
    assert where(clients, fresh) == ["A"] and where(clients, gone) == []
    assert where(clients, late) == ["A"]


def test_clients_of_another_process_follow_a_direction_change(clients: dict[str, Any]) -> None:
    mover = make_router(clients)
    other = make_router(clients)  # a second process: its own router, the same stores
    key = moving_keys(mover, "p", 1)[0]
    mover.start()
    assert other.execute(key, "SET", "1") is not None  # learns 1:forward from the stores
    assert other.state == MigrationState(1, "forward")
    mover.rollback()
    assert other.execute(key, "INCR") == 2  # refused under 1:forward, retried under 2:reverse
    assert other.state == MigrationState(2, "reverse")
    mover.complete()
    assert where(clients, key) == ["A"] and clients["A"].get(key) == "2"


def test_a_command_waits_for_lagging_stores_and_then_fails_within_its_timeout(
    clients: dict[str, Any],
) -> None:
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    stores = make_stores(clients)
    router = make_router(clients, stores, timeout=1.0, clock=lambda: now[0], sleep=sleep)
    key = moving_keys(router, "w", 1)[0]
    router.start()
    stores["A"].write_state(router.name, MigrationState(0, "forward"))  # lags behind
    with pytest.raises(RoutingError, match="disagree on its state") as info:
        router.execute(key, "GET")
    assert info.value.key == key
    assert 1.0 <= sum(waits) <= 1.0 + 0.05


def test_bad_arguments_are_configuration_errors(clients: dict[str, Any]) -> None:
    stores = {name: RedisShardStore(client) for name, client in clients.items()}
    with pytest.raises(ConfigurationError, match="must be routers"):
        MigratingRouter(HashRouter(["A"]), "B", stores)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no store for shard 'C'"):
        MigratingRouter(HashRouter(["A"]), HashRouter(["A", "C"]), stores)
    router = make_router(clients)
    with pytest.raises(ConfigurationError, match="not started"):
        router.move()
    router.start()
    for bad in ({"limit": 2.5}, {"limit": True}, {"batch": 0}, {"limit": -1}):
        with pytest.raises(ConfigurationError, match="must be a positive int"):
            router.move(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="moving forward already"):
        router.resume()
    with pytest.raises(ConfigurationError, match=r"must be a redis\.Redis"):
        RedisShardStore("redis://x")  # type: ignore[arg-type]


# -- the randomized history --------------------------------------------------------------

WRITERS = 3
PER_TYPE = 24


class History:
    """What the writers had acknowledged, per key; read floors come from it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.strings: dict[str, int] = {}  # the last version SET, or DELeted at
        self.deleted: dict[str, bool] = {}
        self.deleting: set[str] = set()  # a DEL sent, not yet acknowledged
        self.hashes: dict[str, dict[str, int]] = {}
        self.appends: dict[str, str] = {}
        self.errors: list[str] = []
        self.ops = 0
        self.timeouts = 0
        self.slow_moves = 0  # unfaulted moves whose 100 ms MIGRATE timed out anyway


def run_history(
    clients: dict[str, Any],
    seed: int,
    servers: tuple[RedisServer, RedisServer] | None = None,
) -> tuple[History, MigratingRouter[str]]:
    """Writers and a mover; with *servers*, some moves meet a frozen target.

    A frozen target (SIGSTOP for 0.3 s) makes `MIGRATE` time out at the
    source (after 100 ms) while the target restores the keys once it wakes:
    every such move has an unknown outcome that the writers' commands settle.
    """
    rng = random.Random(seed)
    stores = None
    if servers is not None:
        stores = {
            name: RedisShardStore(client, migrate_timeout_ms=100)
            for name, client in clients.items()
        }
    router = make_router(clients, stores)
    history = History()
    counters = [f"c:{seed}:{i}" for i in range(PER_TYPE)]
    strings = [f"s:{seed}:{i}" for i in range(PER_TYPE)]
    hashes = [f"h:{seed}:{i}" for i in range(PER_TYPE)]
    appends = [f"a:{seed}:{i}" for i in range(PER_TYPE)]
    for i in range(PER_TYPE):  # half of the keys exist before the move, half are created during it
        if i % 2 == 0:
            clients["A"].set(counters[i], 10)
            clients["A"].set(strings[i], 0)
            clients["A"].hset(hashes[i], "w0", 0)
            clients["A"].set(appends[i], "^")
        history.counters[counters[i]] = 10 if i % 2 == 0 else 0
        history.strings[strings[i]] = 0 if i % 2 == 0 else -1
        history.deleted[strings[i]] = i % 2 == 1
        history.hashes[hashes[i]] = {"w0": 0} if i % 2 == 0 else {}
        history.appends[appends[i]] = "^" if i % 2 == 0 else ""
    router.start()
    stop = threading.Event()

    def writer(w: int) -> None:
        local = random.Random(seed * 100 + w)
        mine = [i for i in range(PER_TYPE) if i % WRITERS == w]
        version = 0
        while not stop.is_set():
            version += 1
            kind = local.randrange(5)
            if kind == 0:
                key = local.choice(counters)
                value = router.execute(key, "INCR")
                with history.lock:
                    history.counters[key] += 1
                    if int(value) > history.counters[key] + WRITERS:
                        history.errors.append(f"INCR {key} answered {value}")
            elif kind == 1:
                key = strings[local.choice(mine)]
                gone = local.random() < 0.25
                if gone:
                    with history.lock:
                        history.deleting.add(key)  # from now on a read may see it gone
                router.execute(key, *(("DEL",) if gone else ("SET", version)))
                with history.lock:
                    history.strings[key] = version
                    history.deleted[key] = gone
                    history.deleting.discard(key)
                value = router.execute(key, "GET")  # only this writer writes the key
                if value != (None if gone else str(version)):
                    with history.lock:
                        history.errors.append(f"{key} read {value} after its own write {version}")
            elif kind == 2:
                key = local.choice(hashes)
                router.execute(key, "HSET", f"w{w + 1}", version)
                with history.lock:
                    history.hashes[key][f"w{w + 1}"] = version
            elif kind == 3:
                key = appends[local.choice(mine)]
                token = f"{w}.{version};"
                router.execute(key, "APPEND", token)
                with history.lock:
                    history.appends[key] += token
            else:
                read(local)
            with history.lock:
                history.ops += 1

    def read(local: random.Random) -> None:
        kind = local.randrange(4)
        if kind == 0:
            key = local.choice(counters)
            floor = history.counters[key]
            value = router.execute(key, "GET")
            if int(value or 0) < floor:
                history.errors.append(f"{key} read {value}, {floor} acknowledged")
        elif kind == 1:
            key = local.choice(strings)
            floor, gone = history.strings[key], history.deleted[key]
            value = router.execute(key, "GET")
            deleting = key in history.deleting  # a DEL sent before the reply
            if gone and value is not None and int(value) <= floor:  # resurrected
                history.errors.append(f"{key} read {value}, deleted at {floor}")
            if not gone and value is None and (history.strings[key] != floor or deleting):
                return  # the key's writer deleted it since, or is deleting it
            if not gone and (value is None or int(value) < floor):
                history.errors.append(f"{key} read {value}, {floor} acknowledged")
        elif kind == 2:
            key = local.choice(hashes)
            floors = dict(history.hashes[key])
            got = router.execute(key, "HGETALL")
            fields = got  # a dict, as execute_command("HGETALL", key) gives
            for field, floor in floors.items():
                if int(fields.get(field, -1)) < floor:
                    history.errors.append(f"{key}.{field} read {fields.get(field)}, {floor} acked")
        else:
            key = local.choice(appends)
            floor_text = history.appends[key]
            value = router.execute(key, "GET") or ""
            if not value.startswith(floor_text):
                history.errors.append(f"{key} read {value!r}, {floor_text!r} acknowledged")

    def wait_for_ops(more: int) -> None:
        target = history.ops + more
        deadline = time.monotonic() + 10
        while history.ops < target and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.001)  # polls the writers' progress, bounded

    calls = [0]

    def move() -> int:
        limit = rng.randint(3, 12)
        calls[0] += 1
        if servers is None or calls[0] % 2 == 0:  # every other move meets a frozen target
            for _ in range(3):
                try:
                    return router.move(limit=limit, batch=5)
                except BackendUnavailableError:
                    # A 100 ms MIGRATE can time out on a loaded machine with no fault:
                    # the protocol's answer is the same (in doubt, then moved again).
                    with history.lock:
                        history.slow_moves += 1
            return router.move(limit=limit, batch=5)
        frozen = servers[1] if router.phase == "forward" else servers[0]  # the target
        frozen.pause()
        thaw = threading.Timer(0.3, frozen.resume)
        thaw.start()
        try:
            router.move(limit=12, batch=12)
        except BackendUnavailableError:
            with history.lock:
                history.timeouts += 1
        finally:
            thaw.join()
        wait_for_ops(300)  # writers meet whatever the timed-out MIGRATE left behind
        return 1

    def mover() -> None:
        try:
            forward_steps = rng.randint(1, 4)
            for _ in range(forward_steps):
                move()
                wait_for_ops(rng.randint(5, 40))
            wait_for_ops(100)  # paused: writers alone
            router.rollback()
            for _ in range(rng.randint(0, 3)):
                move()
                wait_for_ops(rng.randint(5, 40))
            router.resume()
            while move():
                wait_for_ops(rng.randint(5, 40))
            router.complete()
            wait_for_ops(200)  # writers after the switch
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            history.errors.append(f"mover failed: {exc!r}")
        finally:
            stop.set()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    threads.append(threading.Thread(target=mover))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    return history, router


@pytest.mark.parametrize(
    ("seed", "faults"), [(1, False), (2, False), (3, False), (4, True), (5, True)]
)
def test_random_writers_lose_nothing_through_forward_pause_rollback_and_resume(
    redis_pair: tuple[RedisServer, RedisServer], clients: dict[str, Any], seed: int, faults: bool
) -> None:
    history, router = run_history(clients, seed, redis_pair if faults else None)
    assert history.errors == []
    assert (history.timeouts > 0) == faults  # every frozen target timed a MIGRATE out
    assert router.phase == "complete"
    assert history.ops > 300
    new = router.new
    for key, count in history.counters.items():
        assert where(clients, key) == [new.route(key)]
        assert int(clients[new.route(key)].get(key)) == count, key
    for key, version in history.strings.items():
        if history.deleted[key]:
            assert where(clients, key) == [], key
        else:
            assert where(clients, key) == [new.route(key)]
            assert int(clients[new.route(key)].get(key)) == version, key
    for key, fields in history.hashes.items():
        stored = clients[new.route(key)].hgetall(key)
        assert {f: int(v) for f, v in stored.items()} == fields, key
    for key, text in history.appends.items():
        assert (clients[new.route(key)].get(key) or "") == text, key
    moved = [k for k in history.counters if router.moves(k)]
    assert moved and all(where(clients, k) == ["B"] for k in moved)


def test_a_move_to_a_paused_target_fails_in_bounded_time_and_is_finished_later(
    redis_pair: tuple[RedisServer, RedisServer], clients: dict[str, Any]
) -> None:
    stores = {
        name: RedisShardStore(client, migrate_timeout_ms=300) for name, client in clients.items()
    }
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    keys = moving_keys(router, "f", 20)
    for i, key in enumerate(keys):
        clients["A"].set(key, i)
    router.start()
    redis_pair[1].pause()  # SIGSTOP: the target takes the connection and never answers
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            router.move(limit=100, batch=100)
        assert time.monotonic() - started < 0.3 + 2.0  # MIGRATE's timeout, plus a margin
        for i, key in enumerate(keys):  # still served by the source, every one
            assert router.execute(key, "INCR") == i + 1
    finally:
        redis_pair[1].resume()
    assert router.complete() is router.new
    for i, key in enumerate(keys):
        assert where(clients, key) == ["B"] and clients["B"].get(key) == str(i + 1)


def test_keys_under_the_reserved_prefix_are_refused_with_a_clear_error(
    clients: dict[str, Any],
) -> None:
    router = make_router(clients, name="users")
    clients["A"].hset("scalekit:reshard:state:users", "a", "user data")  # collides with a record
    with pytest.raises(ConfigurationError, match="keys under 'scalekit:reshard:' are reserved"):
        router.start()
    clients["A"].delete("scalekit:reshard:state:users")
    router.start()
    for key in ("scalekit:reshard:cfg", b"scalekit:reshard:x"):
        with pytest.raises(ConfigurationError, match="prefix reserved for the migration records"):
            router.execute(key, "SET", "user data")
    assert clients["A"].keys("scalekit:reshard:cfg") == []
    other = RedisShardStore(clients["B"], state_prefix="app:migrations:")
    assert other.reserved("app:migrations:x") and not other.reserved("scalekit:reshard:cfg")
    with pytest.raises(ConfigurationError, match="state_prefix must be a non-empty str"):
        RedisShardStore(clients["B"], state_prefix="")


def test_replies_have_the_shape_of_execute_command_and_other_commands_are_refused(
    clients: dict[str, Any],
) -> None:
    router = make_router(clients)
    moving = moving_keys(router, "r", 1)[0]
    still = next(f"q{i}" for i in range(1000) if not router.moves(f"q{i}"))
    direct = clients["A"]
    router.start()
    script = [
        ("SET", "v"),
        ("GET",),
        ("DEL",),
        ("HSET", "f", "1"),
        ("HGETALL",),
        ("HINCRBYFLOAT", "f", "0.5"),
        ("EXPIRE", 100),
        ("TTL",),
        ("TYPE",),
        ("DEL",),
        ("ZADD", 1.5, "m"),
        ("ZSCORE", "m"),
        ("ZRANGE", 0, -1, "WITHSCORES"),
        ("DEL",),
        ("RPUSH", "a", "b"),
        ("LPOP",),
        ("LRANGE", 0, -1),
        ("EXISTS",),
    ]
    for name, *args in script:
        expected = direct.execute_command(name, "mirror", *args)
        for key in (moving, still):
            assert router.execute(key, name, *args) == expected, (name, key)
    refused = [
        (("BLPOP", 1), "blocks"),
        (("BZPOPMIN", 0), "blocks"),
        (("XREAD", "STREAMS", "s", 0), "blocks"),
        (("MSET", "v", "k2", "v2"), "touches keys besides"),
        (("DEL", "k2"), "touches keys besides"),
        (("RENAME", "k2"), "touches keys besides"),
        (("SORT", "STORE", "k2"), "touches keys besides"),
        (("EVAL", "return 1", 0), "touches keys besides"),
    ]
    for command, message in refused:
        for key in (moving, still):
            with pytest.raises(ConfigurationError, match=message):
                router.execute(key, *command)
    assert clients["A"].exists("k2") == clients["B"].exists("k2") == 0


def test_an_unknown_or_malformed_command_is_a_clear_error_naming_it(
    clients: dict[str, Any],
) -> None:
    router = make_router(clients)
    moving = moving_keys(router, "u", 1)[0]
    still = next(f"q{i}" for i in range(1000) if not router.moves(f"q{i}"))
    router.start()
    for key in (moving, still):
        with pytest.raises(ConfigurationError, match="unknown Redis command 'NOSUCH'") as info:
            router.execute(key, "nosuch", "x")
        assert info.value.__cause__ is None or not isinstance(info.value, redis.ResponseError)
        with pytest.raises(ConfigurationError, match=r"command HINCRBY with arguments \['f'\]"):
            router.execute(key, "HINCRBY", "f")
        with pytest.raises(ArgumentTypeError, match="command name must be a str or bytes"):
            router.execute(key, 42)
    assert where(clients, moving) == where(clients, still) == []


def test_the_protocol_errors_live_in_scalekit_exceptions_and_keep_their_old_paths() -> None:
    from scalekit import exceptions
    from scalekit.sharding import resharding, shard_store

    for name in ("StaleStateError", "KeyAbsentError", "KeyInDoubtError"):
        cls = getattr(exceptions, name)
        assert cls.__module__ == "scalekit.exceptions" and name in exceptions.__all__
        assert getattr(shard_store, name) is cls and getattr(resharding, name) is cls
        assert issubclass(cls, exceptions.ScaleKitError)


def test_a_router_of_a_forgotten_migration_cannot_write(clients: dict[str, Any]) -> None:
    stores = make_stores(clients)
    mover = make_router(clients, stores, name="users")
    early = make_router(clients, stores, name="users")  # learns 1:forward, then sleeps
    late = make_router(clients, stores, name="users")  # learns 2:complete, then sleeps
    moved = moving_keys(mover, "f", 1)[0]
    still = next(f"q{i}" for i in range(1000) if not mover.moves(f"q{i}"))
    mover.start()
    assert early.execute(moved, "SET", "1") is not None
    mover.complete()
    assert late.execute(moved, "INCR") == 2
    mover.forget()
    for stale in (early, late):
        for key in (moved, still):
            with pytest.raises(RoutingError, match="migration 'users' was forgotten"):
                stale.execute(key, "SET", "lost")
    # The name is free again: a new migration of it (here back to one shard) starts
    # after the forgotten one, and no router of the old one writes under it.
    back = MigratingRouter(HashRouter(["A", "B"]), HashRouter(["A"]), stores, name="users")
    back.start()
    assert back.state is not None and back.state.epoch > 3
    for stale in (early, late):
        for key in (moved, still):
            with pytest.raises(RoutingError, match="migration 'users' was forgotten"):
                stale.execute(key, "SET", "lost")
    assert back.complete() is back.new
    assert where(clients, moved) == ["A"] and clients["A"].get(moved) == "2"
    assert where(clients, still) == []


def test_a_router_built_for_a_migration_never_adopts_the_next_one_of_its_name(
    clients: dict[str, Any],
) -> None:
    stores = make_stores(clients)
    idle = make_router(clients, stores, name="users")  # built for migration 1, never used
    first = make_router(clients, stores, name="users")
    first.start()
    placement = first.complete()
    first.forget()
    second = MigratingRouter(placement, HashRouter(["A"]), stores, name="users")
    second.start()
    key = next(f"u{i}" for i in range(1000) if placement.route(f"u{i}") == "B")
    assert second.execute(key, "SET", "right") is True
    with pytest.raises(RoutingError, match="migration 'users' was forgotten"):
        idle.execute(key, "SET", "stale")
    assert idle.state is None
    # A router built once the first one was forgotten belongs to the second one.
    joined = MigratingRouter(placement, HashRouter(["A"]), stores, name="users")
    assert joined.execute(key, "GET") == "right"
    assert second.complete() is second.new
    assert where(clients, key) == ["A"] and clients["A"].get(key) == "right"
