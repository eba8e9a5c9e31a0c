"""A fenced change whose reply was lost is applied once when it is tried again.

A call that the server applied but whose reply (or commit confirmation)
never came back raises `BackendUnavailableError`: "it may or may not have
happened". The natural retry, same lease, passes the fence (equal token,
same holder), and an `incr` used to be applied twice. With an operation id
(`op=`), the same on every try, the store recognises the replay from the
record it keeps with the fence and returns the first try's result (on
every store: `test_fenced_store.py::test_a_replayed_change_is_applied_once`).

Real Redis, SQLite and PostgreSQL; the lost replies go through `TCPProxy`
(Redis: replies delayed past `op_timeout`; PostgreSQL: the connection reset
after the commit reached the server). About 4 s in all.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, ConfigurationError
from scalekit.testing import RedisServer, TCPProxy

from .conftest import unique
from .test_fenced_store import lease, pg_connect

redis = pytest.importorskip("redis")
from scalekit.locking.fencing import RedisFencedStore, SQLFencedStore  # noqa: E402


def test_sql_store_without_an_op_column_refuses_an_operation_id(tmp_path: Any) -> None:
    import sqlite3

    sql = SQLFencedStore(sqlite3.connect(tmp_path / "x.db"), op_column=None)
    sql.create_table()
    assert "op" not in sql.statements["create"]
    assert sql.incr("k", 1, lease(2)) == 1
    with pytest.raises(ConfigurationError, match="op_column=None"):
        sql.incr("k", 1, lease(2), op="a")


def test_a_redis_incr_whose_reply_was_lost_is_applied_once_on_retry(
    redis_server: RedisServer, redis_client: Any
) -> None:
    namespace = unique("replay") + ":"
    with TCPProxy(*redis_server.address) as proxy:
        store = RedisFencedStore(
            redis.Redis(host=proxy.host, port=proxy.port), namespace=namespace, op_timeout=0.5
        )
        holder = lease(7, "me")
        store.write("stock", 10, holder)
        assert store.incr("stock", 0, holder) == 10  # the script loaded (no NOSCRIPT round)
        proxy.delay(0.3)  # the request lands at 0.3 s, its reply would come at 0.6 s
        with pytest.raises(BackendUnavailableError):
            store.incr("stock", -1, holder, op="order-1")
        direct = RedisFencedStore(redis_client, namespace=namespace)
        end = time.monotonic() + 1
        while direct.get("stock") != b"9":  # applied on the server
            assert time.monotonic() < end, "the increment never reached the server"
            time.sleep(0.01)
        proxy.pass_through()
        assert store.incr("stock", -1, holder, op="order-1") == 9  # the first result
        assert direct.get("stock") == b"9", "the retried increment was applied twice"


def test_a_postgresql_incr_whose_commit_reply_was_lost_is_applied_once_on_retry(
    postgres_server: Any,
) -> None:
    table = unique("replay_t").replace("-", "_")
    direct = SQLFencedStore(pg_connect(postgres_server), dialect="postgresql", table=table)
    direct.create_table()
    holder = lease(7, "me")
    direct.write("stock", 10, holder)
    with TCPProxy(postgres_server.host, postgres_server.port) as proxy:
        psycopg = pytest.importorskip("psycopg")

        def connect() -> Any:
            dsn = postgres_server.dsn.replace(f"port={postgres_server.port}", f"port={proxy.port}")
            return psycopg.connect(dsn, connect_timeout=5)

        store = SQLFencedStore(connect(), dialect="postgresql", table=table)
        outcome: list[BaseException | int] = []

        def first_try() -> None:
            try:
                outcome.append(store.incr("stock", -1, holder, op="order-1"))
            except BaseException as exc:
                outcome.append(exc)

        proxy.delay(0.2)
        worker = threading.Thread(target=first_try)
        worker.start()
        end = time.monotonic() + 5
        while direct.get("stock") != 9:  # committed on the server, its reply on the way
            assert time.monotonic() < end, "the increment was never committed"
            time.sleep(0.005)
        proxy.reset()
        worker.join(5)
        assert len(outcome) == 1 and isinstance(outcome[0], BackendUnavailableError), outcome
        proxy.pass_through()
        again = SQLFencedStore(connect(), dialect="postgresql", table=table)
        assert again.incr("stock", -1, holder, op="order-1") == 9  # the first result
        assert direct.get("stock") == 9, "the retried increment was applied twice"
