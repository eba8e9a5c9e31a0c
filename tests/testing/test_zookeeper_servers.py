"""The ZooKeeper harness: a standalone server and a 3-node ensemble."""

from __future__ import annotations

import time
import uuid

import pytest

from scalekit.testing import ZooKeeperEnsemble, ZooKeeperServer

kazoo_client = pytest.importorskip("kazoo.client")
KazooClient = kazoo_client.KazooClient


def _client(hosts: str, timeout: float = 10.0) -> object:
    client = KazooClient(hosts=hosts, timeout=timeout, connection_retry={"max_tries": 3})
    client.start(timeout=15)
    return client


def test_create_and_read_a_znode(zookeeper_server: ZooKeeperServer) -> None:
    assert zookeeper_server.mode() == "standalone"
    assert zookeeper_server.four_letter("ruok") == "imok"
    client = _client(zookeeper_server.hosts)
    try:
        path = f"/harness/{uuid.uuid4().hex}"
        client.create(path, b"payload", makepath=True)
        data, stat = client.get(path)
        assert data == b"payload"
        assert stat.czxid > 0
    finally:
        client.stop()
        client.close()


def test_write_through_one_member_read_through_another(
    zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    modes = sorted(m.mode() or "none" for m in zookeeper_ensemble.members)
    assert modes == ["follower", "follower", "leader"]
    first, second = zookeeper_ensemble.members[0], zookeeper_ensemble.members[2]
    writer = _client(first.hosts)
    reader = _client(second.hosts)
    try:
        path = f"/harness/{uuid.uuid4().hex}"
        writer.create(path, b"replicated", makepath=True)
        reader.sync(path)  # a follower may lag; sync brings it up to the leader
        assert reader.get(path)[0] == b"replicated"
    finally:
        for c in (writer, reader):
            c.stop()
            c.close()


def test_killing_the_leader_elects_a_new_one_that_accepts_writes(
    fresh_zookeeper_ensemble: ZooKeeperEnsemble,
) -> None:
    old = fresh_zookeeper_ensemble.wait_for_leader()
    killed = fresh_zookeeper_ensemble.kill_leader()
    assert killed is old
    assert not killed.running
    new = fresh_zookeeper_ensemble.wait_for_leader(timeout=30)
    assert new is not old
    survivors = [m for m in fresh_zookeeper_ensemble.members if m.running]
    client = _client(",".join(m.hosts for m in survivors))
    try:
        client.create("/after-failover", b"ok")
        assert client.get("/after-failover")[0] == b"ok"
    finally:
        client.stop()
        client.close()
    # The old leader rejoins as a follower and sees the write.
    killed.start()
    assert killed.mode() == "follower"
    rejoined = _client(killed.hosts)
    try:
        rejoined.sync("/after-failover")
        assert rejoined.get("/after-failover")[0] == b"ok"
    finally:
        rejoined.stop()
        rejoined.close()


def test_a_paused_server_expires_its_client_session(
    fresh_zookeeper_server: ZooKeeperServer,
) -> None:
    client = _client(fresh_zookeeper_server.hosts, timeout=2.0)
    states: list[str] = []
    client.add_listener(lambda state: states.append(str(state)))
    try:
        fresh_zookeeper_server.pause()
        deadline = time.monotonic() + 10
        while "SUSPENDED" not in states and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "SUSPENDED" in states
    finally:
        fresh_zookeeper_server.resume()
        client.stop()
        client.close()


def test_ensemble_size_must_be_odd_and_at_least_three() -> None:
    with pytest.raises(ValueError, match=r"size must be an odd integer in \[3, 99\], got 2"):
        ZooKeeperEnsemble(2)
