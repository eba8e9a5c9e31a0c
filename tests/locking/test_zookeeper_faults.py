"""ZooKeeperLock under faults: a frozen holder, and the seeded schedules CI runs.

A ZooKeeperLock holder frozen by SIGSTOP past its session must read its
lease as lost from its first look after SIGCONT. It used not to, in about
half the runs: the session deadline (2/3 of the negotiated timeout after
the server last answered) was enforced by a watch thread only, and
`lease.lost.is_set()` did not compare the clock with it, so the holder's
first read could run before the thread did.

The seeded schedules (slow: two of them, about 28 s in all) run four
worker processes on the 3-node ensemble (leader kill, a follower cut from
its leader, a blackholed or delayed proxy between the clients and a
member, SIGSTOP of the holder, kill -9 of holder and waiter, forced
session expiry, some of them overlapping) and on a standalone server (the
same without the ensemble's faults), and assert every invariant of the
checker from the merged history. Ensemble seed 817 cuts a follower from
its leader for 3.5 s alone, so the availability check judges it, then
blackholes a member's client proxy during a forced expiry (about 15 s);
standalone seed 3 has four blackholes, two delays and a forced expiry
(about 12 s). Longer schedules, with leader kills and partitions during a
SIGSTOP, are the soak's (`python -m benchmarks.locking soak`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockLostError
from scalekit.locking import Lease
from scalekit.testing import RedisServer, TCPProxy

from .conftest import unique
from .test_checker_findings import check_frozen_holder
from .test_fault_schedules import run_and_check

kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking._zk_session import LOST_AFTER  # noqa: E402
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

ZOOKEEPER_SEEDS = [("zookeeper", 817), ("zookeeper-standalone", 3)]


def test_a_zookeeper_holder_frozen_past_its_session_reads_it_lost_as_soon_as_it_runs(
    redis_server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    check_frozen_holder("zookeeper", redis_server, tmp_path, request)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "seed"), ZOOKEEPER_SEEDS)
def test_seeded_zookeeper_schedule_keeps_every_invariant(backend: str, seed: int) -> None:
    run_and_check(backend, seed)


def test_a_holder_whose_session_is_closed_under_its_release_is_told(
    zookeeper_server: Any,
) -> None:
    """Seed 3's "told never": the session is closed by force, then the holder releases.

    The server drops the holder's connection, so the delete fails with a
    connection loss (`BackendUnavailableError`); the lease used to leave the
    session watch before that call, and the `LOST` that followed found
    nothing to tell. The release must raise (lost, or unavailable) and the
    lease must get its `on_lost` notice once the session is known gone.
    """
    from .test_zookeeper_lock import expire_session

    rounds = 5
    outcomes: list[str] = []
    for _ in range(rounds):
        client = kazoo_client.KazooClient(hosts=zookeeper_server.hosts, timeout=5)
        client.start(timeout=15)
        told = threading.Event()
        lock = ZooKeeperLock(client, "/" + unique("closed"), on_lost=lambda _l, t=told: t.set())
        lease = lock.acquire(timeout=5)
        assert lease is not None
        expire_session(client, zookeeper_server.hosts)
        try:
            lease.release()
            outcomes.append("released")
        except (LockLostError, BackendUnavailableError) as exc:
            outcomes.append(type(exc).__name__)
        assert told.wait(5), f"no on_lost notice after {outcomes[-1]}"
        assert lease.lost.is_set()
        client.stop()
        client.close()
    assert "released" not in outcomes, outcomes


def test_a_lease_compares_the_clock_with_the_session_deadline_on_every_read(
    kazoo_client: Any,
) -> None:
    """Deterministic twin of the frozen holder: the deadline passed, no thread has run yet.

    Moving `last_heard` a minute back is what a SIGSTOP of that length does
    to the holder's view. The first read says lost, the notice comes once,
    and news that arrives afterwards (an answer to a later request) neither
    revives the lease nor hides a deadline that passed before it came.
    """
    told: list[Lease] = []
    lock = ZooKeeperLock(kazoo_client, "/" + unique("due"), on_lost=told.append)
    lease = lock.acquire(timeout=5)
    assert lease is not None and not lease.lost.is_set()
    watch = lock._watch
    with watch._cond:
        watch.last_heard -= 60
    assert lease.lost.is_set()  # on this read, not when the watch thread wakes
    watch.heard(time.monotonic())
    assert lease.lost.is_set()
    _poll(lambda: told == [lease])
    with pytest.raises(LockLostError):
        lease.release()  # deletes its node all the same: the session is alive

    second = lock.acquire(timeout=5)
    assert second is not None and not second.lost.is_set()
    with watch._cond:
        watch.last_heard -= 60
    watch.heard(time.monotonic())  # the news comes first: the deadline had passed all the same
    assert second.lost._event.is_set()
    _poll(lambda: told == [lease, second])
    with pytest.raises(LockLostError):
        second.release()
    assert told == [lease, second]  # one notice per lease


def _poll(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_a_release_that_got_no_answer_leaves_the_lease_watched(zookeeper_server: Any) -> None:
    """Partitioned under its release: `BackendUnavailableError`, then `on_lost` in time.

    The node may still exist (the delete never arrived), so the lease stays
    under the session watch and is declared lost at the usual session
    deadline (2/3 of the timeout after the server last answered), before
    the server can expire the session and let a successor in.
    """
    told: list[float] = []
    with TCPProxy(*zookeeper_server.address) as proxy:
        client = kazoo_client.KazooClient(hosts=f"{proxy.host}:{proxy.port}", timeout=4)
        client.start(timeout=15)
        try:
            lock = ZooKeeperLock(
                client,
                "/" + unique("unanswered"),
                op_timeout=0.5,
                on_lost=lambda _l: told.append(time.monotonic()),
            )
            lease = lock.acquire(timeout=5)
            assert lease is not None
            proxy.blackhole()
            cut_at = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                lease.release()
            _poll(lambda: bool(told), 10)
            assert told[0] - cut_at <= LOST_AFTER * lock._watch.timeout() + 0.2
        finally:
            proxy.reset()
            client.stop()
            client.close()
