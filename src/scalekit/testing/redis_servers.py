"""Real `redis-server` processes: standalone and a Redis Cluster."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Sequence

from .._validation import _is_int, non_empty_str, positive_int, tcp_port, wrong_type
from ..exceptions import BackendUnavailableError, ConfigurationError
from .process import (
    LOOPBACK,
    MAX_NODES,
    ServerGroup,
    ServerNotFoundError,
    ServerProcess,
    ServerStartError,
    check_args,
    check_flag,
)

__all__ = ["RedisClusterServers", "RedisServer"]

_INSTALL_HINT = "install it with 'apt-get install redis-server' (Debian/Ubuntu)"


def _which(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ServerNotFoundError(f"{binary!r} was not found on PATH", _INSTALL_HINT)
    return path


def encode_command(*args: str | bytes | int) -> bytes:
    """Encode one command in RESP, the Redis protocol."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(stream: socket.SocketIO) -> bytes:
    """Read exactly one RESP reply from *stream*, returned raw."""
    import io

    reader = io.BufferedReader(stream)
    out = bytearray()

    def one() -> None:
        line = reader.readline()
        if not line.endswith(b"\r\n"):
            raise BackendUnavailableError("connection closed in the middle of a reply")
        out.extend(line)
        kind, rest = line[:1], line[1:-2]
        if kind == b"$" and int(rest) >= 0:
            out.extend(reader.read(int(rest) + 2))
        elif kind == b"*" and int(rest) > 0:
            for _ in range(int(rest)):
                one()

    one()
    return bytes(out)


class RedisServer(ServerProcess):
    """A standalone `redis-server` on a free loopback port.

    ```python
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
    ```

    `appendonly=True` turns on the append-only file (fsync every write)
    so data survives `restart()` and `kill()`; without it a
    restart starts empty. `extra_args` are passed to redis-server as is.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        binary: str = "redis-server",
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if port is not None:
            tcp_port("port", port)
        check_flag("appendonly", appendonly)
        args = check_args("extra_args", extra_args)
        non_empty_str("binary", binary)
        self._binary = _which(binary)
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self._set_port(port)
        self.appendonly = appendonly
        self.extra_args = args

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT/0`, for `redis.Redis.from_url`."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        argv = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        return argv + self.extra_args

    def execute(self, *args: str | bytes | int, timeout: float = 2.0) -> bytes:
        """Send one command over a fresh connection; return the raw reply.

        For probes and fault scripts only: use redis-py for real work.
        """
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(encode_command(*args))
            return _read_reply(socket.SocketIO(sock, "rb"))

    def is_ready(self) -> bool:
        try:
            return self.execute("PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid})"


class RedisClusterServers(ServerGroup[RedisServer]):
    """A Redis Cluster of `masters` nodes with no replicas, on loopback.

    Each node is a `RedisServer` started with `--cluster-enabled
    yes`; `redis-cli --cluster create` assigns the 16384 slots. Use it
    through `redis.cluster.RedisCluster(host=..., port=...)` with one of
    `startup_nodes`. The nodes keep their fault helpers: pause,
    restart or kill `cluster.nodes[i]`.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        node_timeout_ms: int = 2000,
        appendonly: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        expected = f"an integer in [3, {MAX_NODES}] for a Redis Cluster"
        if not _is_int(masters):
            raise wrong_type("masters", masters, expected)
        if not 3 <= masters <= MAX_NODES:
            raise ConfigurationError(f"masters must be {expected}, got {masters!r}")
        positive_int("node_timeout_ms", node_timeout_ms)
        check_flag("appendonly", appendonly)
        self._cli = _which("redis-cli")
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self.nodes = self.members  # the same list, under the name cluster users expect
        for i in range(masters):
            node = RedisServer(
                appendonly=appendonly,
                startup_timeout=startup_timeout,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                ],
            )
            node._port_offsets = (10000,)  # the cluster bus listens on port + 10000
            self._adopt(node, f"node{i}")

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [node.address for node in self.nodes]

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        """The first node's port: enough for a cluster client to discover the rest."""
        return self.nodes[0].port

    def start(self) -> None:
        """Start every node, create the cluster and wait until it reports `ok`."""
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [
                    self._cli,
                    "--cluster",
                    "create",
                    *[f"{h}:{p}" for h, p in self.startup_nodes],
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=self.startup_timeout,
                check=False,
            )
            if created.returncode != 0:
                raise ServerStartError(
                    "redis-cli --cluster create failed: "
                    f"{created.stdout.decode(errors='replace')}"
                    f"{created.stderr.decode(errors='replace')}"
                )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def is_ok(self) -> bool:
        """True when every running node says `cluster_state:ok`."""
        try:
            return all(
                b"cluster_state:ok" in node.execute("CLUSTER", "INFO", timeout=0.5)
                for node in self.nodes
                if node.running
            )
        except OSError:
            return False

    def wait_ok(self, timeout: float | None = None) -> None:
        """Block until `is_ok()`; raise ServerStartError after *timeout*."""
        self.wait_until(self.is_ok, "cluster_state:ok", timeout)
