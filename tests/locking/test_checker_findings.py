"""Lock bugs the fault-schedule checker found, each reduced to a deterministic test.

A holder frozen by SIGSTOP for longer than its lease resumes, samples
``lease.lost.is_set()`` every millisecond, and must read True from its first
sample on, since a successor already holds the lock. RedisLock keeps it (its
deadline has passed). ZooKeeperLock's case is in
``test_zookeeper_faults.py`` (found by the checker as zookeeper seed 1 of the
fault schedules and seed 485885 of a 300 s soak: a frozen holder reading
its lease held for 0.1 s after SIGCONT, then within 1 ms; fixed by checking
the session deadline on every read).
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


def test_a_redis_holder_frozen_past_its_lease_reads_it_lost_as_soon_as_it_runs(
    redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    check_frozen_holder("redis", redis_server, tmp_path, request)


def check_frozen_holder(
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


def test_the_nemesis_logs_a_kill_before_it_sends_it(tmp_path: Path) -> None:
    """The checker takes a process as dead from the logged kill: never log it late.

    A nemesis descheduled between `kill()` and the log would make a lease the
    dead process held past its deadline look "told never" (a false violation).
    """
    import threading

    from scalekit.testing.history import HistoryRecorder, read_history
    from scalekit.testing.lock_workload import _Cluster
    from scalekit.testing.nemesis import Fault

    sent: list[float] = []

    class Child(subprocess.Popen[bytes]):
        def kill(self) -> None:
            sent.append(time.monotonic())
            super().kill()

    child = Child([sys.executable, "-c", "import time; time.sleep(60)"])
    cluster = object.__new__(_Cluster)
    cluster.children = {"w0": child}
    cluster._claim_lock = threading.Lock()
    cluster._claimed = set()
    cluster.pick = lambda fault, holder: ["w0"]  # type: ignore[method-assign]
    cluster.spawn = lambda: None  # type: ignore[method-assign]
    rec = HistoryRecorder(tmp_path / "nemesis.jsonl", "nemesis")
    cluster.kill(Fault(0.0, "kill-holder", 0.0, 0.0), rec, holder=True)
    rec.close()
    (kill,) = [e for e in read_history([tmp_path / "nemesis.jsonl"]) if e.f == "kill"]
    assert child.returncode is not None and kill.time <= sent[0]
