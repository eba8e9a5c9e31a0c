"""Redlock over three independent redis-servers: quorum, faults and fencing across quorums."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scalekit.exceptions import BackendUnavailableError, ConfigurationError
from scalekit.testing import RedisServer

from .conftest import unique

redis = pytest.importorskip("redis")
from scalekit.locking.redlock import Redlock  # noqa: E402

pytestmark = pytest.mark.redis


@pytest.fixture
def masters() -> Iterator[list[RedisServer]]:
    """Three redis-servers of this test's own, to stop and start."""
    servers: list[RedisServer] = []
    try:
        for _ in range(3):
            server = RedisServer()
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


def _clients(servers: list[RedisServer]) -> list[Any]:
    return [redis.Redis.from_url(s.url) for s in servers]


def test_keys_are_set_on_every_master(redlock_clients: list[Any]) -> None:
    lock = Redlock(redlock_clients, "stock:7", ttl=5)
    lease = lock.acquire()
    assert lease is not None and lease.token > 1  # a new counter starts from the clock in µs
    for client in redlock_clients:
        assert client.get("scalekit:redlock:{stock:7}") == lease.owner.encode()
        assert client.get("scalekit:redlock:{stock:7}:fence") == str(lease.token).encode()
    assert lock.quorum == 2
    assert lease.deadline is not None
    lease.release()
    for client in redlock_clients:
        assert client.exists("scalekit:redlock:{stock:7}") == 0


def test_a_minority_holder_blocks_nobody_and_a_majority_holder_everybody(
    redlock_clients: list[Any],
) -> None:
    name = unique()
    key = f"scalekit:redlock:{{{name}}}"
    redlock_clients[0].set(key, "other", px=10_000)
    lease = Redlock(redlock_clients, name).acquire(blocking=False)
    assert lease is not None  # 2 of 3 granted
    lease.release()
    assert redlock_clients[0].get(key) == b"other"  # release is owner-checked
    redlock_clients[1].set(key, "other", px=10_000)
    assert Redlock(redlock_clients, name).acquire(blocking=False) is None
    # A failed round released what it had taken on the third master.
    assert redlock_clients[2].exists(key) == 0


def test_one_master_down_still_acquires(masters: list[RedisServer]) -> None:
    clients = _clients(masters)
    masters[0].stop()
    lock = Redlock(clients, unique(), ttl=5)
    lease = lock.acquire(timeout=2)
    assert lease is not None
    lease.release()


def test_two_masters_down_times_out(masters: list[RedisServer]) -> None:
    clients = _clients(masters)
    masters[0].stop()
    masters[2].stop()
    lock = Redlock(clients, unique(), ttl=5, rng=random.Random(7))
    round_bound = 3 * lock.instance_timeout
    for blocking, timeout, bound in (
        (True, 0.5, 0.5),  # retried until the deadline
        (True, None, 2 * round_bound),  # retried for one more round's bound
        (False, None, round_bound),  # tried once
    ):
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="only 1 of 3 Redis masters answered"):
            lock.acquire(blocking=blocking, timeout=timeout)
        assert time.monotonic() - started <= bound + 0.1
    assert clients[1].exists(f"scalekit:redlock:{{{lock.name}}}") == 0


def test_tokens_grow_when_the_quorum_moves(masters: list[RedisServer]) -> None:
    """Known answer: the token is written back, so a later quorum starts above it."""
    clients = _clients(masters)
    name = unique()
    fence = f"scalekit:redlock:{{{name}}}:fence"
    # Counters ahead of every clock (below it, a counter jumps to the clock).
    big = 4 * 10**15  # (exact in Lua's doubles)
    for client, start in zip(clients, (big + 10, big + 3, 0), strict=True):
        client.set(fence, start)
    masters[2].stop()
    first = Redlock(clients, name).acquire(timeout=2)
    assert first is not None and first.token == big + 11  # max(big + 11, big + 4)
    assert clients[1].get(fence) == str(big + 11).encode()  # written back to every granter
    first.release()
    masters[2].start()  # no persistence: its counter starts again at 0
    masters[0].stop()
    second = Redlock(clients, name).acquire(timeout=2)
    # The restarted master lost its counter, which restarts from its clock in
    # microseconds; the written-back counter of master 1 gives big + 12, above it.
    # Without the write-back it would be big + 5.
    assert second is not None and second.token == big + 12
    second.release()


def _server_us(client: Any) -> int:
    secs, micros = client.time()
    return int(secs) * 1_000_000 + int(micros)


def _restart_after(server: RedisServer, ttl: float, granted: float) -> None:
    """Restart *server* without persistence, no sooner than *ttl* after the last grant
    it made (the restart rule docs/locking.md assumes)."""
    server.stop()
    while time.monotonic() < granted + ttl:
        time.sleep(0.01)
    server.start()


@pytest.mark.parametrize("how", ["denied-the-grant", "down-at-the-grant", "back-for-an-extend"])
def test_tokens_never_go_back_when_masters_clocks_differ(
    masters: list[RedisServer], how: str
) -> None:
    """Master 0's clock runs 5 s ahead (its counter is set where its own restart
    rule would put it); the lease is granted on masters 0 and 1 while master 2
    refuses it (a key left by another owner) or is cut off. Then master 1
    restarts without its data and master 0 goes down: the next quorum is {1, 2}.
    The token reached master 2 (the commit raises every answering master's
    counter; the release, or an extension, that of a master that was cut off at
    the grant), so the next token is above it whatever the clocks say. It used
    to come out about 5 s lower. About 2 s each."""
    from scalekit.testing import TCPProxy

    proxy = TCPProxy(*masters[2].address)
    try:
        clients = [*_clients(masters[:2]), redis.Redis(host=proxy.host, port=proxy.port)]
        name = unique()
        key, fence = f"scalekit:redlock:{{{name}}}", f"scalekit:redlock:{{{name}}}:fence"
        direct = _clients(masters)
        direct[0].set(fence, _server_us(direct[0]) + 5_000_000)
        if how == "denied-the-grant":
            direct[2].set(key, "another-owner", px=60_000)
        else:
            proxy.blackhole()
        lock = Redlock(clients, name, ttl=1, instance_timeout=0.1)
        first = lock.acquire(timeout=2)
        granted = time.monotonic()
        if how == "denied-the-grant":  # raised by the commit, before anything else
            assert int(direct[2].get(fence) or 0) >= first.token, "the commit skipped master 2"
        else:
            assert int(direct[2].get(fence) or 0) < first.token
        proxy.pass_through()
        direct[2].delete(key)
        if how == "back-for-an-extend":
            first.extend()
            proxy.blackhole()  # the release reaches masters 0 and 1 only
        first.release()
        proxy.pass_through()
        assert int(direct[2].get(fence) or 0) >= first.token, "the token never reached master 2"
        _restart_after(masters[1], 1.0, granted)
        masters[0].stop()
        second = Redlock(clients, name, ttl=1, instance_timeout=0.1).acquire(timeout=2)
        assert second.token > first.token, f"token went back: {second.token} < {first.token}"
        second.release()
    finally:
        proxy.close()


def test_tokens_never_go_back_with_clock_offsets_within_a_ttl(
    masters: list[RedisServer],
) -> None:
    """The documented assumption: master clocks differ by less than a ttl. Master 0 runs
    0.6 s ahead (ttl 1 s); master 2 never sees the lease (down throughout); master 1
    restarts without its data a ttl after the grant. The new quorum {1, 2} issues
    from clocks that moved on by more than the offset. About 1.5 s."""
    clients = _clients(masters)
    name = unique()
    fence = f"scalekit:redlock:{{{name}}}:fence"
    clients[0].set(fence, _server_us(clients[0]) + 600_000)
    masters[2].stop()
    first = Redlock(clients, name, ttl=1, instance_timeout=0.1).acquire(timeout=2)
    granted = time.monotonic()
    assert first.token >= int(clients[0].get(fence) or 0)
    _restart_after(masters[1], 1.0, granted)
    masters[0].stop()
    masters[2].start()
    second = Redlock(clients, name, ttl=1, instance_timeout=0.1).acquire(timeout=2)
    assert second.token > first.token, f"token went back: {second.token} < {first.token}"
    second.release()


def test_bad_options_are_configuration_errors(redlock_clients: list[Any]) -> None:
    with pytest.raises(ConfigurationError, match="clients must list at least one Redis"):
        Redlock([], "x")
    with pytest.raises(ConfigurationError, match="drift_factor must be a number in"):
        Redlock(redlock_clients, "x", drift_factor=2)
    with pytest.raises(ConfigurationError, match="instance_timeout must be a positive"):
        Redlock(redlock_clients, "x", instance_timeout=0)


def test_a_minority_outage_is_not_a_lost_lease(masters: list[RedisServer]) -> None:
    """Held on 2 of 3 masters; one of those is blackholed: extend and release are not a loss."""
    from scalekit.locking import Lease
    from scalekit.testing import TCPProxy

    proxies = [TCPProxy(*server.address) for server in masters]
    try:
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        seen: list[Lease] = []
        proxies[2].blackhole()  # down while acquiring: held on masters 0 and 1
        lock = Redlock(clients, unique(), ttl=3, instance_timeout=0.1, on_lost=seen.append)
        lease = lock.acquire(timeout=2)
        assert lease is not None
        proxies[1].blackhole()
        with pytest.raises(BackendUnavailableError, match="did not answer"):
            lease.extend()
        assert not lease.lost.is_set()
        proxies[1].pass_through()
        lease.extend()  # the outage is over: renewal goes on
        assert not lease.lost.is_set()
        proxies[1].blackhole()
        with pytest.raises(BackendUnavailableError):
            lease.release()
        assert not seen
    finally:
        for proxy in proxies:
            proxy.close()


def test_auto_renewal_outlives_a_minority_outage(masters: list[RedisServer]) -> None:
    from scalekit.locking import Lease
    from scalekit.testing import TCPProxy

    proxies = [TCPProxy(*server.address) for server in masters]
    try:
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        seen: list[Lease] = []
        proxies[2].blackhole()
        lock = Redlock(
            clients, unique(), ttl=1.2, instance_timeout=0.1, auto_renew=True, on_lost=seen.append
        )
        lease = lock.acquire(timeout=2)
        assert lease is not None
        proxies[1].blackhole()
        time.sleep(0.5)  # a renewal (due at 0.4 s) fails meanwhile
        proxies[1].pass_through()
        time.sleep(1.5)  # past the ttl: only renewal keeps it
        assert not lease.lost.is_set() and not seen
        lease.release()
    finally:
        for proxy in proxies:
            proxy.close()


def test_renewal_is_due_one_period_after_the_validity_began(masters: list[RedisServer]) -> None:
    """An acquire that spends half its validity on a dead master still keeps its lease.

    With one master blackholed, each of the acquire's two rounds waits out
    `instance_timeout` (0.3 s), so the lease is returned 0.6 s into its
    1.2 s validity. Renewals used to be due one period (0.4 s) after the
    renewal thread started: the first ran at 1.0 s and, waiting out the
    dead master again, ended after the lease had expired (the loss a late
    thread start on a loaded host caused in the test above). About 2 s.
    """
    from scalekit.locking import Lease
    from scalekit.testing import TCPProxy

    proxies = [TCPProxy(*server.address) for server in masters]
    try:
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        seen: list[Lease] = []
        proxies[2].blackhole()
        lock = Redlock(
            clients, unique(), ttl=1.2, instance_timeout=0.3, auto_renew=True, on_lost=seen.append
        )
        lease = lock.acquire(timeout=2)
        assert lease is not None
        end = time.monotonic() + 1.5  # past the ttl: only renewal keeps it
        while time.monotonic() < end and not lease.lost.is_set():
            time.sleep(0.05)
        assert not lease.lost.is_set() and not seen
        lease.release()
    finally:
        for proxy in proxies:
            proxy.close()


REDLOCK_SEEDS = (3, 9)


@pytest.mark.parametrize("seed", REDLOCK_SEEDS)
def test_a_slow_master_never_makes_a_second_holder(masters: list[RedisServer], seed: int) -> None:
    """A seeded schedule of slow or blackholed masters while a client acquires.

    One master is held by another key (so every round needs the other two),
    one of those is blackholed or delayed past `instance_timeout` for a
    random time: rounds fail, and the masters that did not answer are
    released in the background. Whatever the schedule, a lease that is not
    lost must be held on a quorum of masters, all along, and no other client
    may acquire meanwhile. (About 1 s per trial.)
    """
    from scalekit.testing import TCPProxy

    rng = random.Random(seed)
    print(f"redlock schedule seed {seed}")
    proxies = [TCPProxy(*server.address) for server in masters]
    direct = _clients(masters)
    try:
        clients = [redis.Redis(host=p.host, port=p.port) for p in proxies]
        for trial in range(3):
            name = unique("slow-master")
            key = f"scalekit:redlock:{{{name}}}"
            lock = Redlock(clients, name, ttl=5, instance_timeout=0.1)
            lock.acquire(timeout=2).release()  # connections to every master exist
            blocked, slow = rng.sample(range(3), 2)
            direct[blocked].set(key, "blocker", px=5000)
            fault = rng.uniform(0.15, 0.5)
            if rng.random() < 0.5:
                proxies[slow].blackhole()
                how = "blackhole"
            else:
                proxies[slow].delay(rng.uniform(0.12, 0.25))
                how = "delay"
            print(f"trial {trial}: master {slow} {how} {fault:.2f}s, master {blocked} blocked")
            heal = threading.Timer(fault, proxies[slow].pass_through)
            heal.start()
            lease = lock.acquire(timeout=3)
            assert lease is not None
            heal.join()
            # Past the heal, the background clean-up of the failed rounds runs (it retries
            # every 0.1 s): the lease must stay on a quorum throughout, or be lost.
            other = Redlock(direct, name, ttl=5, instance_timeout=0.1)
            watch_until = time.monotonic() + 0.4
            while time.monotonic() < watch_until:
                held = sum(d.get(key) == lease.owner.encode() for d in direct)
                assert lease.lost.is_set() or held >= 2, (seed, trial, held)
                time.sleep(0.02)
            direct[blocked].delete(key)
            assert lease.lost.is_set() or other.acquire(blocking=False) is None, (seed, trial)
            lease.release()
    finally:
        for proxy in proxies:
            proxy.close()
