"""The partition proxy in front of a real Redis."""

from __future__ import annotations

import time

import pytest

from scalekit.testing import RedisServer, TCPProxy

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402


def _no_retry() -> Retry:
    """redis-py retries timeouts by default, which turns 0.5 s into many seconds."""
    return Retry(NoBackoff(), 0)


@pytest.fixture
def proxy(redis_server: RedisServer):  # type: ignore[no-untyped-def]
    with TCPProxy(*redis_server.address) as p:
        yield p


def test_pass_through_forwards_commands(proxy: TCPProxy) -> None:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2)
    client.set("proxy:key", "v")
    assert client.get("proxy:key") == b"v"
    assert proxy.connection_count == 1
    client.close()


def test_blackhole_makes_a_call_fail_within_its_timeout(proxy: TCPProxy) -> None:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=0.5, retry=_no_retry())
    assert client.ping() is True
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0
    proxy.pass_through()
    client.connection_pool.disconnect()
    assert client.ping() is True
    client.close()


def test_blackhole_holds_bytes_and_delivers_them_in_order_when_it_heals(
    proxy: TCPProxy, redis_server: RedisServer
) -> None:
    """A partition loses no bytes (TCP retransmits): requests and replies arrive late, in order."""
    direct = redis.Redis.from_url(redis_server.url)
    direct.delete("proxy:held")
    conn = redis.Connection(host=proxy.host, port=proxy.port, socket_timeout=2)
    conn.connect()
    proxy.blackhole()
    conn.send_command("INCR", "proxy:held")
    conn.send_command("INCR", "proxy:held")
    assert not conn.can_read(timeout=0.3)  # nothing comes back while partitioned
    assert direct.get("proxy:held") is None  # and nothing reached the server
    proxy.pass_through()
    assert conn.read_response() == 1
    assert conn.read_response() == 2
    conn.disconnect()
    direct.close()


def test_delay_holds_every_reply(proxy: TCPProxy) -> None:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=5)
    client.ping()
    proxy.delay(0.2)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.35  # request and reply are each held
    client.close()


def test_reset_breaks_open_connections_and_refuses_new_ones(proxy: TCPProxy) -> None:
    client = redis.Redis(host=proxy.host, port=proxy.port, socket_timeout=2, retry=_no_retry())
    client.ping()
    proxy.reset()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    assert proxy.connection_count == 0
    proxy.pass_through()
    assert client.ping() is True
    client.close()


def test_delay_rejects_a_negative_duration(proxy: TCPProxy) -> None:
    with pytest.raises(ValueError, match="seconds must be a non-negative finite number"):
        proxy.delay(-1)


def test_upstream_wait_bridges_a_target_that_starts_listening_late() -> None:
    """A client let in before its target listens is served, not reset, within `upstream_wait`."""
    import socket
    import threading

    from scalekit.testing import find_free_port

    port = find_free_port()
    with (
        TCPProxy("127.0.0.1", port) as eager,
        TCPProxy("127.0.0.1", port, upstream_wait=2.0) as patient,
    ):
        with (
            pytest.raises(ConnectionResetError),  # at once: nothing listens yet
            socket.create_connection(eager.address, timeout=2) as sock,
        ):
            sock.recv(1)
        late = socket.socket()
        late.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def listen_late() -> None:
            time.sleep(0.3)
            late.bind(("127.0.0.1", port))
            late.listen(1)
            conn, _ = late.accept()
            conn.sendall(conn.recv(5))
            conn.close()

        server = threading.Thread(target=listen_late)
        server.start()
        with socket.create_connection(patient.address, timeout=5) as sock:
            sock.sendall(b"hello")
            assert sock.recv(5) == b"hello"
        server.join()
        late.close()
    with pytest.raises(ValueError, match="upstream_wait"):
        TCPProxy("127.0.0.1", port, upstream_wait=-1)
