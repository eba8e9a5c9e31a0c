"""A TCP proxy on loopback that can pass, delay, blackhole or reset connections."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from types import TracebackType

from .._validation import bad_value, non_empty_str, non_negative_number, tcp_port
from .process import LOOPBACK

__all__ = ["TCPProxy"]

_PASS, _DELAY, _BLACKHOLE, _RESET = "pass", "delay", "blackhole", "reset"


def _abort(sock: socket.socket) -> None:
    """Close *sock* with a TCP RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class TCPProxy:
    """Forwards `127.0.0.1:port` to `target` and misbehaves on request.

    Point a client at `port` instead of the server's, then:

    * `pass_through()` forwards bytes both ways (the initial mode);
    * `delay()` holds every chunk for *seconds* before forwarding it;
    * `blackhole()` accepts and reads but forwards nothing, as a
      network partition does: the client waits until its own timeout;
    * `reset()` closes every open connection with a TCP RST and
      resets new ones at once, as a crashed peer or a firewall does.

    Modes apply to open connections as well as new ones. Each connection
    is served by two threads; `close()` stops them all.

    A client's connection is accepted before the target is tried, so a
    target that refuses shows as a reset right after the connect, not as a
    refused connect. `upstream_wait` (seconds, default 0) keeps trying a
    refusing target that long before resetting the client, for peers that
    retry a refused connect but give up on a reset one (a ZooKeeper
    follower connecting to a leader that is just starting to listen).
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int = 0,
        host: str = LOOPBACK,
        upstream_wait: float = 0.0,
    ) -> None:
        self.target = (
            non_empty_str("target_host", target_host),
            tcp_port("target_port", target_port),
        )
        tcp_port("port", port, allow_zero=True)
        non_empty_str("host", host)
        self.upstream_wait = non_negative_number("upstream_wait", upstream_wait)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
        except socket.gaierror as exc:
            self._listener.close()
            raise bad_value("host", host, f"an address of this machine ({exc})") from None
        self._listener.listen(128)
        self.host = host
        self.port = int(self._listener.getsockname()[1])
        self._mode = _PASS
        self._delay = 0.0
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, daemon=True, name=f"TCPProxy:{self.port}"
        )
        self._acceptor.start()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def mode(self) -> str:
        """`pass`, `delay`, `blackhole` or `reset`."""
        return self._mode

    @property
    def connection_count(self) -> int:
        """Connections currently open through the proxy."""
        with self._lock:
            return len(self._conns)

    def pass_through(self) -> None:
        """Forward bytes both ways without delay."""
        self._mode = _PASS

    def delay(self, seconds: float) -> None:
        """Hold each chunk *seconds* before forwarding it, in order."""
        self._delay = non_negative_number("seconds", seconds)
        self._mode = _DELAY

    def blackhole(self) -> None:
        """Stop forwarding in both directions, as a network partition does.

        Connections stay open and nothing is discarded: bytes sent meanwhile
        wait (in the proxy and the kernel's socket buffers, which a sender
        may fill) and are delivered in order after `pass_through()` or
        `delay()`, as TCP retransmits across a healed partition. New
        connections are accepted, but their handshakes hang likewise.
        """
        self._mode = _BLACKHOLE

    def reset(self) -> None:
        """Reset every open connection and each new one until the mode changes."""
        self._mode = _RESET
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream in conns:
            _abort(client)
            _abort(upstream)

    def close(self) -> None:
        """Stop accepting, close every connection and end the threads."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream in conns:
            client.close()
            upstream.close()
        self._acceptor.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                readable, _, _ = select.select([self._listener], [], [], 0.1)
                if not readable:
                    continue
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._mode == _RESET:
                _abort(client)
                continue
            if self.upstream_wait:  # may take a while: off the accepting thread
                threading.Thread(target=self._open, args=(client,), daemon=True).start()
            else:
                self._open(client)

    def _open(self, client: socket.socket) -> None:
        """Connect *client* to the target (retrying up to `upstream_wait`) and pump both ways."""
        give_up = time.monotonic() + self.upstream_wait
        while True:
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                break
            except OSError:
                if time.monotonic() >= give_up or self._mode == _RESET or self._closed.is_set():
                    _abort(client)
                    return
                self._closed.wait(0.05)
        upstream.settimeout(None)
        with self._lock:
            if self._closed.is_set():
                client.close()
                upstream.close()
                return
            self._conns.append((client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(src, dst, client, upstream), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, client: socket.socket, upstream: socket.socket
    ) -> None:
        try:
            while not self._closed.is_set():
                if self._mode == _BLACKHOLE:
                    # Read nothing: the bytes wait in the kernel's buffers, and are
                    # delivered in order once the partition heals, as TCP's
                    # retransmissions would deliver them.
                    self._closed.wait(0.01)
                    continue
                readable, _, _ = select.select([src], [], [], 0.1)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                while self._mode == _BLACKHOLE and not self._closed.is_set():
                    self._closed.wait(0.01)  # read just as the partition began: hold it
                if self._mode == _DELAY:
                    time.sleep(self._delay)
                dst.sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            with self._lock:
                if (client, upstream) in self._conns:
                    self._conns.remove((client, upstream))
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> TCPProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TCPProxy({self.host}:{self.port} -> {self.target[0]}:{self.target[1]}, {self._mode})"
        )
