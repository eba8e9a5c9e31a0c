"""Read-write locks on Redis and ZooKeeper: shared readers, exclusive writers, no starvation."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from scalekit.locking import Lease

from .conftest import unique

pytest.importorskip("redis")
pytest.importorskip("kazoo")


@pytest.fixture(params=["redis", "zookeeper"])
def make_rw(request: pytest.FixtureRequest) -> Any:
    if request.param == "redis":
        from scalekit.locking import RedisReadWriteLock

        client = request.getfixturevalue("redis_client")
        return lambda name: RedisReadWriteLock(client, name)
    from scalekit.locking import ZooKeeperReadWriteLock

    zk = request.getfixturevalue("kazoo_client")
    return lambda name: ZooKeeperReadWriteLock(zk, "/scalekit-tests/" + name)


def test_readers_share_and_writers_exclude(make_rw: Any) -> None:
    name = unique("rw")
    r1 = make_rw(name).read.acquire(blocking=False)
    r2 = make_rw(name).read.acquire(blocking=False)
    assert r1 is not None and r2 is not None and r2.token > r1.token
    assert make_rw(name).write.acquire(blocking=False) is None
    r1.release()
    assert make_rw(name).write.acquire(blocking=False) is None
    r2.release()
    w = make_rw(name).write.acquire(blocking=False)
    assert w is not None and w.token > r2.token
    assert make_rw(name).read.acquire(blocking=False) is None
    assert make_rw(name).write.acquire(blocking=False) is None
    w.release()


def test_a_waiting_writer_is_not_starved_by_new_readers(make_rw: Any) -> None:
    name = unique("rw")
    reader = make_rw(name).read.acquire()
    assert reader is not None
    got: list[Lease] = []
    writer = threading.Thread(target=lambda: got.append(make_rw(name).write.acquire(timeout=10)))
    writer.start()
    time.sleep(0.3)
    # A reader arriving after the writer queues behind it.
    assert make_rw(name).read.acquire(blocking=False) is None
    late: list[Lease] = []
    late_reader = threading.Thread(
        target=lambda: late.append(make_rw(name).read.acquire(timeout=10))
    )
    late_reader.start()
    time.sleep(0.3)
    assert not got and not late
    reader.release()
    writer.join(10)
    assert got and got[0].token > reader.token
    time.sleep(0.2)
    assert not late  # still behind the writer
    got[0].release()
    late_reader.join(10)
    assert late and late[0].token > got[0].token
    late[0].release()


def test_mixed_workers_never_see_a_writer_with_company(make_rw: Any) -> None:
    name = unique("rw")
    state = {"r": 0, "w": 0}
    seen_readers_together = [0]
    violations: list[dict[str, int]] = []
    guard = threading.Lock()

    def work(i: int) -> None:
        rw = make_rw(name)
        for k in range(10):
            write = (i + k) % 3 == 0
            side = rw.write if write else rw.read
            with side:
                key = "w" if write else "r"
                with guard:
                    state[key] += 1
                    if state["w"] > 1 or (state["w"] == 1 and state["r"] > 0):
                        violations.append(dict(state))
                    seen_readers_together[0] = max(seen_readers_together[0], state["r"])
                time.sleep(0.003)
                with guard:
                    state[key] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert violations == []
    assert seen_readers_together[0] >= 2  # readers did overlap
