"""Fault tests on real servers, checked by a fenced store rather than by eye."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockError
from scalekit.locking import BaseLock
from scalekit.testing import RedisServer, TCPProxy

from .conftest import BOUND_MARGIN, unique
from .fencing import FencedStore, check

redis = pytest.importorskip("redis")
kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

HERE = Path(__file__).resolve().parent
ROUNDS = 4


def _contend(
    make_lock: Any,
    store: FencedStore,
    workers: int,
    stop: threading.Event,
    acquired: list[tuple[float, int]],
) -> list[threading.Thread]:
    """Start *workers* threads doing fenced sections until *stop*; errors are retried."""

    def work() -> None:
        lock: BaseLock = make_lock()
        while not stop.is_set():
            try:
                lease = lock.acquire(timeout=2)
            except (LockError, BackendUnavailableError):
                time.sleep(0.02)
                continue
            assert lease is not None
            acquired.append((time.monotonic(), lease.token))
            try:
                store.section(lease.token)
                time.sleep(0.001)
            finally:
                with contextlib.suppress(LockError, BackendUnavailableError):
                    lease.release()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.mark.parametrize("backend", ["redis", "zookeeper"])
def test_sigstopped_holder_is_fenced_off_and_told(
    backend: str, redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    """A holder frozen past its lease: the next holder wins, the frozen write is rejected."""
    name = unique("paused")
    if backend == "redis":
        target, ttl = redis_server.url, 0.6
        mine: BaseLock = RedisLock(redis.Redis.from_url(target), name, ttl=5)
    else:
        zk = request.getfixturevalue("zookeeper_server")
        target, ttl = zk.hosts, 1.0  # the session timeout: 2 ticks of 500 ms at least
        client = kazoo_client.KazooClient(hosts=target, timeout=5)
        client.start(timeout=15)
        request.addfinalizer(client.close)
        request.addfinalizer(client.stop)
        mine = ZooKeeperLock(client, "/" + name)
    store = FencedStore(redis_server.url, prefix=name)
    child = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_paused_holder.py"),
            backend,
            target,
            redis_server.url,
            name,
            str(ttl),
            str(HERE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        for _ in range(ROUNDS):
            child.stdin.write("go\n")
            line = child.stdout.readline().split()
            assert line[0] == "in", line
            paused_token = int(line[1])
            os.kill(child.pid, signal.SIGSTOP)
            try:
                lease = mine.acquire(timeout=20)  # granted once the frozen lease runs out
                assert lease is not None and lease.token > paused_token
                assert store.section(lease.token)
                lease.release()
            finally:
                os.kill(child.pid, signal.SIGCONT)
            child.stdin.write("resume\n")
            done = child.stdout.readline().split()
            # Not accepted, lost flag set, release raised LockLostError, on_lost fired.
            assert done == ["done", "0", "1", "LockLostError", "1"], done
        sections = check(store, min_sections=ROUNDS)
        assert len(sections) == ROUNDS
    finally:
        child.stdin.close()
        child.wait(10)


def test_redis_restart_with_aof_never_moves_tokens_back(
    fresh_redis_server_aof: RedisServer, redis_server: RedisServer
) -> None:
    server = fresh_redis_server_aof
    client = redis.Redis.from_url(server.url)
    name = unique("aof")
    store = FencedStore(redis_server.url, prefix=name)
    stop = threading.Event()
    acquired: list[tuple[float, int]] = []
    threads = _contend(
        lambda: RedisLock(client, name, ttl=1.0, op_timeout=0.5), store, 4, stop, acquired
    )
    try:
        for _ in range(2):
            target = len(acquired) + 20
            _wait_for(lambda target=target: len(acquired) >= target)
            before = max(token for _, token in acquired)
            server.restart()
            _wait_for(lambda before=before: max(t for _, t in acquired) > before + 5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    tokens = [token for _, token in sorted(acquired)]
    assert all(a < b for a, b in itertools.pairwise(tokens)), "a token moved back"
    check(store, min_sections=40)


def test_zookeeper_leader_killed_while_eight_clients_contend(
    fresh_zookeeper_ensemble: Any, redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    ensemble = fresh_zookeeper_ensemble
    clients = []
    for _ in range(8):
        client = kazoo_client.KazooClient(hosts=ensemble.hosts, timeout=6)
        client.start(timeout=30)
        clients.append(client)
    name = unique("leader")
    store = FencedStore(redis_server.url, prefix=name)
    stop = threading.Event()
    acquired: list[tuple[float, int]] = []
    pool = iter(clients)
    threads = _contend(
        lambda: ZooKeeperLock(next(pool), "/" + name, op_timeout=2), store, 8, stop, acquired
    )
    try:
        _wait_for(lambda: len(acquired) >= 30)
        killed_at = time.monotonic()
        ensemble.kill_leader()
        _wait_for(lambda: sum(1 for at, _ in acquired if at > killed_at + 0.5) >= 30, 40)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        for client in clients:
            client.stop()
            client.close()
    check(store, min_sections=60)


def test_partitioned_redis_holder_is_told_within_its_ttl(redis_server: RedisServer) -> None:
    ttl = 1.0
    name = unique("partition")
    told: list[float] = []
    with TCPProxy(*redis_server.address) as proxy:
        cut_off = RedisLock(
            redis.Redis(host=proxy.host, port=proxy.port),
            name,
            ttl=ttl,
            op_timeout=0.2,
            auto_renew=True,
            on_lost=lambda _l: told.append(time.monotonic()),
        )
        lease = cut_off.acquire()
        assert lease is not None
        time.sleep(ttl / 2)  # renewed at least once while the network is fine
        assert not lease.lost.is_set()
        proxy.blackhole()
        cut_at = time.monotonic()
        other = RedisLock(redis.Redis.from_url(redis_server.url), name, ttl=ttl)
        successor = other.acquire(timeout=5)
        got_at = time.monotonic()
        assert successor is not None and successor.token > lease.token
        # Lost (its flag says so) before anyone else got in...
        assert lease.lost.is_set()
        _wait_for(lambda: bool(told), 5)
        # ...and told by on_lost, which runs on a notifier thread just after the
        # watchdog marks the lease at its deadline, no later than its ttl after the cut.
        assert told[0] - cut_at <= ttl + BOUND_MARGIN
        assert got_at - cut_at <= ttl + BOUND_MARGIN
        successor.release()


def test_partitioned_zookeeper_holder_is_told_before_its_session_ends(
    zookeeper_server: Any,
) -> None:
    name = unique("zkpartition")
    session = 2.0
    told: list[float] = []
    with TCPProxy(*zookeeper_server.address) as proxy:
        cut_client = kazoo_client.KazooClient(hosts=f"{proxy.host}:{proxy.port}", timeout=session)
        other_client = kazoo_client.KazooClient(hosts=zookeeper_server.hosts, timeout=5)
        cut_client.start(timeout=15)
        other_client.start(timeout=15)
        try:
            lock = ZooKeeperLock(
                cut_client,
                "/" + name,
                op_timeout=1,
                on_lost=lambda _l: told.append(time.monotonic()),
            )
            lease = lock.acquire()
            assert lease is not None
            proxy.blackhole()
            cut_at = time.monotonic()
            successor = ZooKeeperLock(other_client, "/" + name).acquire(timeout=15)
            got_at = time.monotonic()
            assert successor is not None and successor.token > lease.token
            _wait_for(lambda: bool(told), 5)
            assert told[0] - cut_at <= session
            assert told[0] <= got_at
            successor.release()
        finally:
            for client in (cut_client, other_client):
                client.stop()
                client.close()
