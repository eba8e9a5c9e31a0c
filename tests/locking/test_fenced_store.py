"""The fenced stores: claim on read, check on write, on real Redis, Redis Cluster and SQLite.

The lost-update tests reproduce the experiment the stores exist for:
holders of a RedisLock that pause past their ttl between the read and
the write of a decrement. With the store no update is lost, with threads
in one process and with holder processes frozen by SIGSTOP. The two
threaded tests run the full experiment (8 threads x 150 decrements) and
take 5-10 s each on a loaded 2-core machine; the SIGSTOP one about 4 s.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import (
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    LockError,
    LockLostError,
    LockNotOwnedError,
    StaleTokenError,
)
from scalekit.locking import Lease, MemoryLock
from scalekit.locking.fencing import RedisFencedStore, SQLFencedStore
from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402

HERE = Path(__file__).resolve().parent
_LOCK = MemoryLock("fenced-store-tests")
_NO_DB = sqlite3.connect(":memory:")  # for the tests of the SQL text alone


def lease(token: int, owner: str = "a") -> Lease:
    """A lease with a chosen token and owner, as a lock server would hand out."""
    return Lease(_LOCK, token, owner, None, None)


@pytest.fixture(params=["redis", "cluster", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "redis":
        yield RedisFencedStore(
            request.getfixturevalue("redis_client"), namespace=unique("ns") + ":"
        )
    elif request.param == "cluster":
        from redis.cluster import RedisCluster

        cluster = request.getfixturevalue("redis_cluster")
        client = RedisCluster(host=cluster.host, port=cluster.port, socket_timeout=5)
        yield RedisFencedStore(client, namespace=unique("ns") + ":")
        client.close()
    elif request.param == "postgresql":
        connection = pg_connect(request.getfixturevalue("postgres_server"))
        sql = SQLFencedStore(
            connection, dialect="postgresql", table=unique("fenced_t").replace("-", "_")
        )
        sql.create_table()
        yield sql
        connection.close()
    else:
        connection = sqlite3.connect(tmp_path / "fenced.db")
        sql = SQLFencedStore(connection)
        sql.create_table()
        yield sql
        connection.close()


def pg_connect(server: Any) -> Any:
    """A psycopg connection to *server* whose statements give up after 2 s."""
    psycopg = pytest.importorskip("psycopg")
    return psycopg.connect(server.dsn, connect_timeout=5, options="-c statement_timeout=2000")


def as_int(value: Any) -> int | None:
    return None if value is None else int(value)


def test_read_claims_the_token_so_an_older_holder_cannot_write(store: Any) -> None:
    store.write("k", 10, lease(3, "old"))
    assert as_int(store.read("k", lease(3, "old"))) == 10
    assert as_int(store.read("k", lease(5, "new"))) == 10  # the new holder only read
    assert store.fence("k") == 5
    with pytest.raises(StaleTokenError) as info:
        store.write("k", 11, lease(3, "old"))
    assert (info.value.key, info.value.token, info.value.fence) == ("k", 3, 5)
    assert isinstance(info.value, LockError)
    with pytest.raises(StaleTokenError):
        store.incr("k", 1, lease(4, "older"))
    with pytest.raises(StaleTokenError):
        store.read("k", lease(4, "older"))
    assert as_int(store.get("k")) == 10
    store.write("k", 9, lease(5, "new"))
    assert as_int(store.get("k")) == 9


def test_a_lease_may_read_and_write_its_key_again(store: Any) -> None:
    mine = lease(7, "me")
    for expected in range(3):
        assert as_int(store.read("c", mine)) == (None if expected == 0 else expected)
        assert store.incr("c", 1, mine) == expected + 1
    assert store.fence("c") == 7


def test_an_equal_token_from_another_lease_is_refused(store: Any) -> None:
    store.read("k", lease(7, "first"))
    with pytest.raises(StaleTokenError):
        store.read("k", lease(7, "second"))
    with pytest.raises(StaleTokenError):
        store.write("k", 1, lease(7, "second"))
    with pytest.raises(StaleTokenError):
        store.incr("k", 1, lease(7, "second"))
    store.write("k", 1, lease(7, "first"))


def test_a_bare_token_claims_strictly_and_writes_after_its_claim(store: Any) -> None:
    assert store.read("k", 4) is None
    with pytest.raises(StaleTokenError):
        store.read("k", 4)  # two holders with token 4 cannot both read
    store.write("k", 1, 4)
    assert store.incr("k", 2, 4) == 3
    with pytest.raises(StaleTokenError):
        store.write("k", 5, 3)
    assert store.incr("k", 1, 5) == 4


def test_a_claim_on_a_missing_key_fences_too(store: Any) -> None:
    """A reads the empty key with 5 and pauses; B claims it with 6; A's first write is refused."""
    assert store.read("fresh", lease(5, "a")) is None
    assert store.read("fresh", lease(6, "b")) is None
    with pytest.raises(StaleTokenError):
        store.write("fresh", 1, lease(5, "a"))
    with pytest.raises(StaleTokenError):
        store.incr("fresh", 1, lease(5, "a"))
    assert store.incr("fresh", 1, lease(6, "b")) == 1


def test_keys_are_independent(store: Any) -> None:
    store.read("x", lease(9, "a"))
    store.write("y", 1, lease(2, "b"))  # y never saw token 9
    assert store.fence("x") == 9 and store.fence("y") == 2 and store.fence("z") == 0


def test_tokens_past_two_to_the_53_compare_exactly(store: Any) -> None:
    big = 2**62 + 1
    store.read("big", lease(big, "a"))
    with pytest.raises(StaleTokenError):
        store.write("big", 1, lease(big - 1, "b"))
    assert store.fence("big") == big


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3", None])
def test_a_bad_token_names_the_argument(store: Any, bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="token must be"):
        store.read("k", bad)


def test_bad_keys_and_amounts_name_the_argument(store: Any) -> None:
    with pytest.raises(ConfigurationError, match="key must be"):
        store.read("", 1)
    with pytest.raises(ConfigurationError, match="amount must be an integer"):
        store.incr("k", 1.5, 1)


def test_redis_incr_of_a_non_integer_changes_nothing(redis_client: Any) -> None:
    store = RedisFencedStore(redis_client, namespace=unique("ns") + ":")
    store.read("k", lease(1))
    redis_client.set(store.keys("k")[0], "abc")  # written by something else than the store
    with pytest.raises(BackendError, match="not an integer"):
        store.incr("k", 1, lease(2))
    assert store.fence("k") == 1


def test_redis_value_and_fence_share_one_cluster_slot(redis_client: Any) -> None:
    from redis.crc import key_slot

    store = RedisFencedStore(redis_client)
    for key in ["stock:42", "a{b}c", "{x}", "plain"]:
        value, fence = store.keys(key)
        assert key_slot(value.encode()) == key_slot(fence.encode()), key


def test_redis_store_on_a_blackholed_server_raises_within_op_timeout() -> None:
    from scalekit.exceptions import BackendUnavailableError
    from scalekit.testing import TCPProxy

    with RedisServer() as server, TCPProxy(*server.address) as proxy:
        store = RedisFencedStore(redis.Redis(host=proxy.host, port=proxy.port), op_timeout=0.3)
        store.write("k", 1, lease(1))
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError):
            store.read("k", lease(2))
        assert time.monotonic() - started <= 0.3 + 0.1


def test_configuration_errors() -> None:
    connection = sqlite3.connect(":memory:")
    with pytest.raises(ConfigurationError, match="dialect must be one of"):
        SQLFencedStore(connection, dialect="oracle")
    with pytest.raises(ConfigurationError, match="table must be a plain SQL identifier"):
        SQLFencedStore(connection, table="t; DROP TABLE x")
    with pytest.raises(ConfigurationError, match="fence_column must be"):
        SQLFencedStore(connection, fence_column="a b")
    with pytest.raises(ConfigurationError, match="namespace must be"):
        RedisFencedStore(object(), namespace="")


def test_sql_store_on_an_existing_table_without_a_holder_column(tmp_path: Path) -> None:
    """The pattern on a table of the user's own, as a shop's stock table: strict claims."""
    connection = sqlite3.connect(tmp_path / "shop.db")
    connection.execute(
        "CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL,"
        " fence INTEGER NOT NULL DEFAULT 0, initial INTEGER NOT NULL)"
    )
    connection.execute("INSERT INTO stock VALUES ('sku-1', 5, 0, 5)")
    connection.commit()
    store = SQLFencedStore(
        connection,
        table="stock",
        key_column="sku",
        value_column="qty",
        holder_column=None,
        op_column=None,
    )
    assert store.read("sku-1", lease(3)) == 5
    assert store.read("sku-1", lease(4)) == 5
    with pytest.raises(StaleTokenError):
        store.write("sku-1", 4, lease(3))
    store.write("sku-1", 4, lease(4))
    assert store.incr("sku-1", -1, lease(4)) == 3
    assert connection.execute("SELECT qty, fence, initial FROM stock").fetchall() == [(3, 4, 5)]


def test_sql_store_inside_the_callers_transaction(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "tx.db")
    store = SQLFencedStore(connection, commit=False)
    store.create_table()
    store.write("k", 1, lease(1))
    connection.rollback()
    assert store.get("k") is None


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_sql_text_places_one_parameter_per_placeholder(dialect: str) -> None:
    """Every statement's placeholders match the parameters the store passes, in both dialects."""
    for holders, ops in itertools.product((True, False), (True, False)):
        store = SQLFencedStore(
            _NO_DB,
            dialect=dialect,
            table="app.stock",
            holder_column="holder" if holders else None,
            op_column="op" if ops else None,
        )
        mark = "?" if dialect == "sqlite" else "%s"
        other = "%s" if dialect == "sqlite" else "?"
        for name, sql in store.statements.items():
            assert other not in sql, sql
            if name in ("create",):
                continue
            one = name in ("fence", "get", "last")
            count = 1 if one else len(store._params(name, "k", 1, "o", 0, "x" * 17))
            assert sql.count(mark) == count, (name, sql)
        assert store.statements["claim"].startswith('UPDATE "app"."stock" SET "fence" = ')
        assert 'ON CONFLICT ("key") DO UPDATE' in store.statements["insert_claim"]
        if not holders:
            assert '"fence" < ' in store.statements["claim"]
            assert '"fence" <= ' in store.statements["write"]


# -- the lost-update experiment ---------------------------------------------------------

TTL = 0.08
PAUSE = 1.5 * TTL
PAUSE_P = 0.06


def _decrement(
    lock: RedisLock, step: Any, rng: random.Random, decrements: int, counts: dict[str, int]
) -> None:
    for _ in range(decrements):
        held = lock.acquire(timeout=30)
        assert held is not None
        try:
            if step(held, rng.random() < PAUSE_P):
                counts["accepted"] += 1
            else:
                counts["refused"] += 1
        finally:
            try:
                held.release()
            except LockLostError:
                counts["lost"] += 1


def _run_threads(client: Any, step: Any, threads: int = 4, decrements: int = 100) -> dict[str, int]:
    name = unique("decrements")
    counts = [{"accepted": 0, "refused": 0, "lost": 0} for _ in range(threads)]
    workers = [
        threading.Thread(
            target=_decrement,
            args=(RedisLock(client, name, ttl=TTL), step, random.Random(i), decrements, counts[i]),
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return {key: sum(c[key] for c in counts) for key in counts[0]}


def test_no_update_is_lost_by_paused_holders_with_the_store(redis_client: Any) -> None:
    """4 threads x 100 decrements under a RedisLock, 6% of holders pause 1.5x the ttl."""
    store = RedisFencedStore(redis_client, namespace=unique("ns") + ":")
    store.write("stock", 400, 1)

    def step(held: Lease, pause: bool) -> bool:
        try:
            value = int(store.read("stock", held) or 0)
            if pause:
                time.sleep(PAUSE)
            store.write("stock", value - 1, held)
            return True
        except StaleTokenError:
            return False

    counts = _run_threads(redis_client, step)
    assert counts["accepted"] + counts["refused"] == 400
    assert counts["lost"] > 0, "no holder outlived its lease: the experiment tested nothing"
    assert int(store.get("stock") or 0) == 400 - counts["accepted"], counts


def test_without_the_store_the_same_pauses_lose_updates(redis_client: Any) -> None:
    """The control: plain GET and SET under the same lock and pauses lose decrements."""
    key = unique("unfenced")
    redis_client.set(key, 400)

    def step(held: Lease, pause: bool) -> bool:
        value = int(redis_client.get(key))
        if pause:
            time.sleep(PAUSE)
        redis_client.set(key, value - 1)
        return True

    counts = _run_threads(redis_client, step)
    lost = counts["accepted"] - (400 - int(redis_client.get(key)))
    assert lost > 0, f"no decrement was lost without fencing ({counts}): the pauses are too mild"


@pytest.mark.parametrize("kind", ["redis", "postgresql"])
def test_no_update_is_lost_by_sigstopped_holder_processes(
    redis_server: RedisServer, kind: str, request: pytest.FixtureRequest
) -> None:
    """4 holder processes; 3% freeze themselves with SIGSTOP between read and write for 1.5 ttl.

    A frozen holder resumes past its lease while a newer token has written:
    the store (Redis, or a PostgreSQL table) refuses its stale write.
    """
    client = redis.Redis.from_url(redis_server.url)
    extra: list[str] = []
    store: Any
    if kind == "redis":
        namespace = unique("ns") + ":"
        store = RedisFencedStore(client, namespace=namespace)
    else:
        server = request.getfixturevalue("postgres_server")
        namespace = unique("stopped_t").replace("-", "_")
        store = SQLFencedStore(pg_connect(server), dialect="postgresql", table=namespace)
        store.create_table()
        extra = [server.dsn]
    store.write("stock", 400, 1)
    name = unique("stopped")
    children = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "_fenced_decrementer.py"),
                redis_server.url,
                name,
                namespace,
                str(TTL),
                "100",
                str(seed),
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in range(4)
    ]
    stopped: dict[int, float] = {}
    resumed = 0
    try:
        while any(child.poll() is None for child in children):
            now = time.monotonic()
            for child in children:
                state = _state(child.pid)
                if state == "T" and child.pid not in stopped:
                    stopped[child.pid] = now
                elif child.pid in stopped and now - stopped[child.pid] >= PAUSE:
                    os.kill(child.pid, signal.SIGCONT)
                    del stopped[child.pid]
                    resumed += 1
            time.sleep(0.005)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    accepted = refused = 0
    for child in children:
        out, _ = child.communicate(timeout=10)
        got = dict(part.split("=") for part in out.split())
        accepted += int(got["accepted"])
        refused += int(got["refused"])
    assert accepted + refused == 400
    assert resumed > 0 and refused > 0, "no frozen holder came back after a successor"
    assert int(store.get("stock") or 0) == 400 - accepted


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


# -- what the documentation promises, to the letter ------------------------------------


def test_a_replayed_change_is_applied_once(store: Any) -> None:
    holder = lease(7, "me")
    store.write("stock", 10, holder)
    assert store.incr("stock", -1, holder, op="order-1") == 9
    assert store.incr("stock", -1, holder, op="order-1") == 9  # the retry: not again
    assert as_int(store.get("stock")) == 9
    assert store.incr("stock", -1, holder, op="order-2") == 8  # another change applies
    store.write("stock", 20, holder, op="set-1")
    store.incr("stock", 1, holder)
    store.write("stock", 20, holder, op="set-1")  # not the last change: written again
    assert as_int(store.get("stock")) == 20
    # The same id from a newer holder is another change (the record has the token).
    newer = lease(8, "next")
    assert store.read("stock", newer) in (20, b"20")
    assert store.incr("stock", -1, newer, op="order-1") == 19
    with pytest.raises(StaleTokenError):  # the old holder's retry comes too late
        store.incr("stock", -1, holder, op="order-2")
    assert as_int(store.get("stock")) == 19


def test_a_replayed_change_on_a_missing_key_is_applied_once(store: Any) -> None:
    holder = lease(4, "me")
    assert store.incr("new", 5, holder, op="first") == 5  # the key had no row / no value
    assert store.incr("new", 5, holder, op="first") == 5
    assert as_int(store.get("new")) == 5


def test_changes_without_an_operation_id_are_never_taken_for_replays(store: Any) -> None:
    holder = lease(4, "me")
    assert store.incr("plain", 1, holder) == 1
    assert store.incr("plain", 1, holder) == 2  # the same call again is another change


def test_the_same_operation_id_with_a_newer_bare_token_is_another_change(store: Any) -> None:
    assert store.incr("bare", 1, 7, op="x") == 1
    assert store.read("bare", 8) in (1, b"1")  # a newer bare token claims the key
    assert store.incr("bare", 1, 8, op="x") == 2  # same id, other token: applied


def test_a_bad_operation_id_names_the_argument(store: Any) -> None:
    for bad in ("", 3, b"x"):
        with pytest.raises(ConfigurationError, match="op must be a non-empty string"):
            store.incr("k", 1, lease(2), op=bad)
    assert store.fence("k") == 0  # nothing was sent


def test_a_stale_token_error_says_what_happened(store: Any) -> None:
    store.read("k", lease(5, "new"))
    with pytest.raises(StaleTokenError) as info:
        store.write("k", 1, lease(3, "old"))
    assert str(info.value) == (
        "fencing token 3 for key 'k' is stale: the store has seen token 5; "
        "the lease was lost and a newer holder took over"
    )


def test_missing_keys_read_as_none_and_fence_zero(store: Any) -> None:
    assert store.get("nothing") is None
    assert store.fence("nothing") == 0


def test_redis_store_defaults_and_key_names(redis_client: Any) -> None:
    store = RedisFencedStore(redis_client)
    assert store.namespace == "scalekit:fenced:" and store.op_timeout == 2.0
    assert store.keys("stock:42") == (
        "scalekit:fenced:{stock:42}",
        "scalekit:fenced:{stock:42}:fence",
    )
    store.write("stock:42", 7, lease(3, "me"))
    assert redis_client.get("scalekit:fenced:{stock:42}") == b"7"
    fence = redis_client.hgetall("scalekit:fenced:{stock:42}:fence")
    assert (fence[b"t"], fence[b"h"]) == (b"3", b"me")
    assert fence[b"o"].startswith(b"3/me/~")  # the last change: token, holder, its random id
    store.write("stock:42", 8, lease(3, "me"), op="order-1")
    record = redis_client.hget("scalekit:fenced:{stock:42}:fence", "o")
    assert re.fullmatch(rb"3/me/order-1#[0-9a-f]{16}", record)  # op id and the change's digest
    with pytest.raises(ConfigurationError, match="op_timeout must be a positive finite number"):
        RedisFencedStore(redis_client, op_timeout=0)


def test_sql_names_are_checked_one_by_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        SQLFencedStore(_NO_DB, key_column="a.b")
    assert str(info.value) == (
        "key_column must be a plain SQL identifier (letters, digits, underscores), got 'a.b'"
    )
    with pytest.raises(ConfigurationError) as info:
        SQLFencedStore(_NO_DB, table="a.b.c")
    assert str(info.value) == (
        "table must be a plain SQL identifier (letters, digits, underscores; schema.table "
        "allowed), got 'a.b.c'"
    )
    for column in ("value_column", "holder_column"):
        with pytest.raises(ConfigurationError, match=f"^{column} must be a plain SQL identifier"):
            SQLFencedStore(_NO_DB, **{column: "x y"})


def test_sql_defaults_commit_and_create_the_documented_table(tmp_path: Path) -> None:
    path = tmp_path / "defaults.db"
    store = SQLFencedStore(sqlite3.connect(path))
    assert store.dialect == "sqlite" and store.commit is True
    assert store.statements["create"] == (
        'CREATE TABLE IF NOT EXISTS "scalekit_fenced" ("key" TEXT PRIMARY KEY, "value" INTEGER, '
        '"fence" INTEGER NOT NULL DEFAULT 0, "holder" TEXT NOT NULL DEFAULT \'\', '
        "\"op\" TEXT NOT NULL DEFAULT '')"
    )
    assert SQLFencedStore(_NO_DB, dialect="postgresql").statements["create"] == (
        'CREATE TABLE IF NOT EXISTS "scalekit_fenced" ("key" TEXT PRIMARY KEY, "value" BIGINT, '
        '"fence" BIGINT NOT NULL DEFAULT 0, "holder" TEXT NOT NULL DEFAULT \'\', '
        "\"op\" TEXT NOT NULL DEFAULT '')"
    )
    store.create_table()
    store.write("k", 3, lease(2, "me"))
    other = sqlite3.connect(path)  # committed: another connection sees it
    assert other.execute(
        'SELECT "key", "value", "fence", "holder" FROM scalekit_fenced'
    ).fetchall() == [("k", 3, 2, "me")]


def test_sql_store_without_holder_column_fences_missing_keys(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "plain.db")
    store = SQLFencedStore(connection, table="counters", holder_column=None)
    store.create_table()
    assert store.statements["create"].endswith(
        '"fence" INTEGER NOT NULL DEFAULT 0, "op" TEXT NOT NULL DEFAULT \'\')'
    )
    assert store.read("a", lease(5, "x")) is None  # the claim inserts the row
    with pytest.raises(StaleTokenError):
        store.read("a", lease(5, "y"))  # strict: no holder column tells leases apart
    with pytest.raises(StaleTokenError):
        store.write("a", 1, lease(4, "x"))
    store.write("b", 10, 3)  # a blind write of a missing key
    assert store.incr("c", 2, 3) == 2  # an increment of a missing key
    with pytest.raises(StaleTokenError):
        store.incr("c", 1, 2)
    assert store.incr("a", 1, 5) == 1
    query = 'SELECT "key", "value", "fence" FROM counters ORDER BY key'
    assert connection.execute(query).fetchall() == [
        ("a", 1, 5),
        ("b", 10, 3),
        ("c", 2, 3),
    ]


# -- PostgreSQL under faults ------------------------------------------------------------


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_postgresql_keeps_the_fence_across_a_server_restart(postgres_server: Any, how: str) -> None:
    """A claim made before a restart (clean, or kill -9 and crash recovery) still fences after it.

    The call that meets the restart raises `BackendUnavailableError` (not the
    driver's error); on a new connection the older token is still refused
    and the claiming lease goes on.
    """
    table = unique("restart_t").replace("-", "_")
    connection = pg_connect(postgres_server)
    store = SQLFencedStore(connection, dialect="postgresql", table=table)
    store.create_table()
    store.write("stock", 10, lease(4, "old"))
    assert store.read("stock", lease(5, "new")) == 10
    if how == "restart":
        postgres_server.restart()
    else:
        postgres_server.kill()
        postgres_server.start()
    with pytest.raises(BackendUnavailableError, match="PostgreSQL"):
        store.write("stock", 9, lease(5, "new"))
    connection.close()
    store = SQLFencedStore(pg_connect(postgres_server), dialect="postgresql", table=table)
    with pytest.raises(StaleTokenError):
        store.write("stock", 9, lease(4, "old"))
    store.write("stock", 9, lease(5, "new"))
    assert store.get("stock") == 9 and store.fence("stock") == 5
    store.connection.close()


def test_postgresql_claims_serialise_across_connections(postgres_server: Any) -> None:
    """Two connections: the newer token's claim wins whatever order the writes come in."""
    table = unique("two_t").replace("-", "_")
    a = SQLFencedStore(pg_connect(postgres_server), dialect="postgresql", table=table)
    a.create_table()
    b = SQLFencedStore(pg_connect(postgres_server), dialect="postgresql", table=table)
    assert a.read("k", lease(1, "a")) is None
    assert b.read("k", lease(2, "b")) is None
    with pytest.raises(StaleTokenError, match="2"):
        a.write("k", 1, lease(1, "a"))
    b.write("k", 2, lease(2, "b"))
    assert a.get("k") == 2
    a.connection.close()
    b.connection.close()


def test_postgresql_racing_first_claims_never_refuse_the_newest_token(
    postgres_server: Any,
) -> None:
    """8 connections claim then write a key that has no row yet, at once.

    Under READ COMMITTED the claim's UPDATE found no row (another insert
    was not committed), the store then saw the committed row and refused
    the token as stale without trying the conditional statement again:
    the newest holder was told it had lost its lease. Ten keys, about 1 s.
    """
    table = unique("race_t").replace("-", "_")
    stores = [
        SQLFencedStore(pg_connect(postgres_server), dialect="postgresql", table=table)
        for _ in range(8)
    ]
    stores[0].create_table()
    wrong: list[str] = []
    for round_ in range(10):
        key = f"k{round_}"
        barrier = threading.Barrier(len(stores))
        refused: dict[int, int] = {}

        def claim_and_write(
            store: SQLFencedStore,
            token: int,
            key: str = key,
            barrier: threading.Barrier = barrier,
            refused: dict[int, int] = refused,
        ) -> None:
            barrier.wait()
            try:
                store.read(key, token)
                store.write(key, token, token)
            except StaleTokenError as exc:
                refused[token] = exc.fence

        threads = [
            threading.Thread(target=claim_and_write, args=(store, 10 + i))
            for i, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        if 17 in refused or stores[0].fence(key) != 17:
            wrong.append(f"{key}: refused {refused}, fence {stores[0].fence(key)}")
    assert not wrong, wrong
    for store in stores:
        store.connection.close()


def test_a_released_or_lost_lease_is_refused_before_anything_is_sent(
    store: Any, redis_client: Any
) -> None:
    """The process knows such a lease ended: the store refuses it locally, writing nothing."""
    lock = RedisLock(redis_client, unique(), ttl=0.3)
    with lock.acquire(timeout=2) as lease_:
        store.write("k", 8, lease_)
    with pytest.raises(LockNotOwnedError, match=r"was released"):
        store.incr("k", 1, lease_)
    with pytest.raises(LockNotOwnedError, match=r"was released"):
        store.read("k", lease_)
    lost = lock.acquire(timeout=2)
    assert lost.lost.wait(0.3 + 1.0)  # the ttl passes; the watchdog tells the lease
    with pytest.raises(StaleTokenError, match=r"was lost .* for key 'k'") as info:
        store.write("k", 0, lost)
    assert (info.value.key, info.value.token, info.value.fence) == ("k", lost.token, 0)
    with pytest.raises(StaleTokenError, match=r"was lost"):
        store.incr("k", 1, lost, op="x")
    with pytest.raises(StaleTokenError, match=r"was lost"):
        store.read("k", lost)
    assert as_int(store.get("k")) == 8
