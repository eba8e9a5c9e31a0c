"""ZooKeeperLock under faults: a frozen holder, and the seeded schedules CI runs.

A ZooKeeperLock holder frozen by SIGSTOP past its session must read its
lease as lost from its first look after SIGCONT. It used not to, in about
half the runs: the session deadline (2/3 of the negotiated timeout after
the server last answered) was enforced by a watch thread only, and
`lease.lost.is_set()` did not compare the clock with it, so the holder's
first read could run before the thread did.

The seeded schedules (slow: about 12 s each, four of them, so about 50 s)
run four worker processes on the 3-node ensemble (leader kill, SIGSTOP of
the holder, kill -9 of holder and waiter, forced session expiry) and on a
standalone server (the same without leader kill), and assert every
invariant of the checker from the merged history. Seed 3 of the ensemble
is the one with three forced session expiries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, LockLostError
from scalekit.testing import RedisServer

from .conftest import unique
from .test_checker_findings import check_frozen_holder
from .test_fault_schedules import run_and_check

kazoo_client = pytest.importorskip("kazoo.client")
from scalekit.locking.zookeeper_lock import ZooKeeperLock  # noqa: E402

ZOOKEEPER_SEEDS = [
    ("zookeeper", 1),
    ("zookeeper", 3),
    ("zookeeper-standalone", 2),
    ("zookeeper-standalone", 3),
]


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
