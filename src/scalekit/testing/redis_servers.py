"""Real ``redis-server`` processes: standalone and a Redis Cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .process import (
    LOOPBACK,
    ServerNotFoundError,
    ServerProcess,
    ServerStartError,
    find_free_port,
    query,
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


class RedisServer(ServerProcess):
    """A standalone ``redis-server`` on a free loopback port.

    >>> with RedisServer() as server:          # doctest: +SKIP
    ...     client = redis.Redis.from_url(server.url)

    ``appendonly=True`` turns on the append-only file (fsync every write)
    so data survives :meth:`restart` and :meth:`kill`; without it a
    restart starts empty. ``extra_args`` are passed to redis-server as is.
    """

    def __init__(self, port: int | None = None, *, appendonly: bool = False,
                 extra_args: Sequence[str] = (), binary: str = "redis-server",
                 workdir: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 20.0) -> None:
        self._binary = _which(binary)
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self.port = port if port is not None else find_free_port()
        self.appendonly = appendonly
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``redis.Redis.from_url``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        argv = [
            self._binary, "--port", str(self.port), "--bind", self.host,
            "--dir", str(self.workdir), "--daemonize", "no", "--save", "",
            "--protected-mode", "yes", "--loglevel", "warning",
            "--appendonly", "yes" if self.appendonly else "no",
        ]
        if self.appendonly:
            argv += ["--appendfsync", "always"]
        return argv + self.extra_args

    def execute(self, *args: str | bytes | int, timeout: float = 2.0) -> bytes:
        """Send one command over a fresh connection; return the raw reply.

        For probes and fault scripts only: use redis-py for real work.
        """
        return query(self.host, self.port, encode_command(*args), timeout=timeout)

    def is_ready(self) -> bool:
        try:
            return self.execute("PING", timeout=0.5).startswith(b"+PONG")
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, pid={self.pid})"


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes with no replicas, on loopback.

    Each node is a :class:`RedisServer` started with ``--cluster-enabled
    yes``; ``redis-cli --cluster create`` assigns the 16384 slots. Use it
    through ``redis.cluster.RedisCluster(host=..., port=...)`` with one of
    :attr:`startup_nodes`. The nodes keep their fault helpers: pause,
    restart or kill ``cluster.nodes[i]``.
    """

    def __init__(self, masters: int = 3, *, node_timeout_ms: int = 2000,
                 appendonly: bool = False, workdir: str | os.PathLike[str] | None = None,
                 startup_timeout: float = 30.0) -> None:
        if masters < 3:
            raise ValueError(f"masters must be at least 3 for a Redis Cluster, got {masters!r}")
        self._cli = _which("redis-cli")
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix="scalekit-rediscluster-"))
        self.startup_timeout = startup_timeout
        self.nodes: list[RedisServer] = []
        for i in range(masters):
            port = find_free_port(also_free=(10000,))
            self.nodes.append(RedisServer(
                port, appendonly=appendonly, workdir=self.workdir / f"node{i}",
                startup_timeout=startup_timeout,
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(node_timeout_ms)]))

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
        """Start every node, create the cluster and wait until it reports ``ok``."""
        try:
            for node in self.nodes:
                node.start()
            created = subprocess.run(
                [self._cli, "--cluster", "create",
                 *[f"{h}:{p}" for h, p in self.startup_nodes],
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, timeout=self.startup_timeout, check=False)
            if created.returncode != 0:
                raise ServerStartError(
                    "redis-cli --cluster create failed: "
                    f"{created.stdout.decode(errors='replace')}"
                    f"{created.stderr.decode(errors='replace')}")
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def is_ok(self) -> bool:
        """True when every running node says ``cluster_state:ok``."""
        try:
            return all(b"cluster_state:ok" in node.execute("CLUSTER", "INFO", timeout=0.5)
                       for node in self.nodes if node.running)
        except OSError:
            return False

    def wait_ok(self, timeout: float | None = None) -> None:
        """Block until :meth:`is_ok`; raise ServerStartError after *timeout*."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        while not self.is_ok():
            if time.monotonic() >= deadline:
                raise ServerStartError(f"{self!r} did not reach cluster_state:ok in time")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        """Stop every node and remove the working directory if this object made it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisClusterServers:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisClusterServers(ports={[n.port for n in self.nodes]})"
