"""Lock bugs the fault-schedule checker found, each reduced to a deterministic test.

ZooKeeper seed 1 of ``tests/locking/test_fault_schedules.py``: a holder frozen
by SIGSTOP for longer than its session timeout resumes, checks
``lease.lost.is_set()`` within a millisecond and must read True, since the
server has expired its session and a successor holds the lock. Before leases
were declared lost at 2/3 of the negotiated session timeout after the server
last answered, it read False for 0.1 s (108 samples), wrote (the fenced store
refused it), and its ``release()`` raised ``BackendUnavailableError`` with no
``on_lost``. With that deadline kept by a watch thread, the first sample after
resuming can still win the race against the thread (1 sample, within 1 ms of
the successor's grant, in about half the runs): ``is_set()`` must compare the
clock with the deadline itself, as a RedisLock lease does (it passes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking.redis_lock import RedisLock  # noqa: E402
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("backend", ["redis", "zookeeper"])
def test_a_holder_frozen_past_its_lease_reads_it_lost_as_soon_as_it_runs(
    backend: str, redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Every sample of ``lease.lost`` taken after the successor's grant must read True."""
    name = unique("frozen")
    if backend == "redis":
        target, lease_time = redis_server.url, 1.0
        successor_lock: Any = RedisLock(redis.Redis.from_url(target), name, ttl=5)
    else:
        zk = request.getfixturevalue("zookeeper_server")
        target, lease_time = zk.hosts, 1.0  # the session timeout (2 ticks of 500 ms)
        client = kazoo_client.KazooClient(hosts=target, timeout=5)
        client.start(timeout=15)
        request.addfinalizer(client.close)
        request.addfinalizer(client.stop)
        successor_lock = ZooKeeperLock(client, "/" + name)
    samples = tmp_path / "samples"
    child = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "_lost_sampler.py"),
            backend,
            target,
            name,
            str(lease_time),
            str(samples),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        line = child.stdout.readline().split()
        assert line and line[0] == "in", line
        os.kill(child.pid, signal.SIGSTOP)
        try:
            successor = successor_lock.acquire(timeout=20)
            granted = time.monotonic()
            assert successor is not None and successor.token > int(line[1])
        finally:
            os.kill(child.pid, signal.SIGCONT)
        done = child.stdout.readline().split()
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    after = [
        (float(at), lost == "1")
        for at, lost in (row.split() for row in samples.read_text().splitlines())
        if float(at) > granted
    ]
    assert after, "the holder took no sample after it resumed"
    held = [at - granted for at, lost in after if not lost]
    assert not held, (
        f"the resumed holder read its lease as held {len(held)} times, "
        f"up to {max(held):.3f}s after the successor was granted"
    )
    assert done == ["done", "LockLostError", "1"], done
    successor.release()
