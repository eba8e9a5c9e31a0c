"""A ZooKeeper lease has no ttl: `extend(ttl)` is refused, `extend()` only checks the lease.

One real ZooKeeper server; about 1 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError
from scalekit.locking import Lease, ZooKeeperLock

from .conftest import unique

pytestmark = pytest.mark.zookeeper


def test_extend_with_a_ttl_is_refused_and_the_lease_stays_whole(kazoo_client: Any) -> None:
    seen: list[Lease] = []
    lock = ZooKeeperLock(kazoo_client, f"/locks/{unique('zk')}", on_lost=seen.append)
    lease = lock.acquire(timeout=5)
    assert lease is not None
    with pytest.raises(ConfigurationError, match=r"ttl must be None .* got 0\.001"):
        lease.extend(0.001)
    lease.extend()  # the session bounds the lease: this checks it is still held
    assert lease.remaining() is None
    assert not lease.lost.is_set() and not seen
    assert ZooKeeperLock(kazoo_client, lock.path).acquire(blocking=False) is None
    lease.release()  # the node is deleted and the release says so without error
    assert kazoo_client.get_children(lock.path) == []
    assert not seen
