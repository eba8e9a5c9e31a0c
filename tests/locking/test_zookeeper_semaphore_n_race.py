"""ZooKeeperSemaphore: a change of *n* between the check and the create is caught.

A client with n=2 checks the path's n, then pauses before creating its node
(a GC pause, a slow link). Meanwhile a client with n=1 finds the path idle,
takes it over and holds. The n=2 client must then be refused, not hold
beside the n=1 holder. On the real ZooKeeper server; about a second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError

from .conftest import unique

kazoo_client_mod = pytest.importorskip("kazoo.client")
from scalekit.locking import ZooKeeperSemaphore  # noqa: E402

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def second_client(zookeeper_server: Any) -> Iterator[Any]:
    client = kazoo_client_mod.KazooClient(hosts=zookeeper_server.hosts, timeout=5)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


def test_n_changed_between_check_and_create_is_refused(
    kazoo_client: Any, second_client: Any
) -> None:
    path = f"/scalekit-test/{unique('sem-n')}"
    two = ZooKeeperSemaphore(second_client, path, 2, op_timeout=2)
    two.release(two.acquire(timeout=2))  # the path was used with n=2; idle now
    checked = threading.Event()
    resume = threading.Event()
    original = two._check_n

    def paused_check(deadline: float | None) -> Any:
        result = original(deadline)
        if not checked.is_set():
            checked.set()
            resume.wait(5)  # paused between the check and the create
        return result

    two._check_n = paused_check  # type: ignore[method-assign]
    outcome: list[Any] = []

    def contend() -> None:
        try:
            outcome.append(two.acquire(timeout=3))
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    contender = threading.Thread(target=contend)
    contender.start()
    assert checked.wait(3)
    one = ZooKeeperSemaphore(kazoo_client, path, 1, op_timeout=2)
    exclusive = one.acquire(timeout=2)
    resume.set()
    contender.join(5)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ConfigurationError), outcome
    assert not exclusive.lost.is_set()
    one.release(exclusive)
