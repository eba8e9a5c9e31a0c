"""Real `redis-server` processes: standalone and a Redis Cluster."""

from __future__ import annotations

import functools
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


def _bulk(reply: bytes) -> str:
    """The text of a RESP bulk-string reply (`$5\\r\\nabcde\\r\\n`)."""
    if not reply.startswith(b"$"):
        raise ServerStartError(f"expected a bulk string reply, got {reply!r}")
    return reply.split(b"\r\n", 2)[1].decode()


def _knows(node: RedisServer, node_id: str) -> bool:
    """Whether *node*'s `CLUSTER NODES` lists the node *node_id*."""
    return node_id.encode() in node.execute("CLUSTER", "NODES")


def _synced(replica: RedisServer) -> bool:
    """Whether *replica*'s link to its master is up (its first sync is done)."""
    return b"master_link_status:up" in replica.execute("INFO", "replication")


def _sees_replicas(node: RedisServer, count: int) -> bool:
    """Whether *node*'s `CLUSTER NODES` lists *count* nodes as replicas (flag `slave`)."""
    lines = node.execute("CLUSTER", "NODES").split(b"\r\n", 1)[-1].splitlines()
    flagged = sum(b"slave" in ln.split(b" ")[2].split(b",") for ln in lines if ln.count(b" ") > 2)
    return flagged == count


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
    """A Redis Cluster of `masters` nodes, each with `replicas` replicas, on loopback.

    Each node is a `RedisServer` started with `--cluster-enabled
    yes`; `redis-cli --cluster create` assigns the 16384 slots to the
    masters, `nodes`. With `replicas=r`, `r` more nodes per master follow it
    (`CLUSTER REPLICATE`): `replicas[j]` follows `nodes[j // r]`. A killed
    or paused master is replaced by one of its replicas once the others
    have not heard from it for `node_timeout_ms` (Redis's own automatic
    failover; `CLUSTER FAILOVER` on a replica forces one); `primaries()`
    says which nodes are masters now. `start()` returns once every replica
    has synchronised with its master and every node says `cluster_state:ok`,
    within `startup_timeout` or `ServerStartError`. Use it through
    `redis.cluster.RedisCluster(host=..., port=...)` with one of
    `startup_nodes`. The nodes keep their fault helpers: pause, restart or
    kill `cluster.nodes[i]` or `cluster.replicas[j]`; `stop()` stops every
    one, replicas included, by its pid.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        replicas: int = 0,
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
        most = MAX_NODES // masters - 1
        per_master = f"an integer in [0, {most}] (at most {MAX_NODES} nodes in all)"
        if not _is_int(replicas):
            raise wrong_type("replicas", replicas, per_master)
        if not 0 <= replicas <= most:
            raise ConfigurationError(
                f"replicas must be {per_master} for {masters} masters, got {replicas!r}"
            )
        positive_int("node_timeout_ms", node_timeout_ms)
        check_flag("appendonly", appendonly)
        self._cli = _which("redis-cli")
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self.replicas_per_master = replicas
        self.nodes: list[RedisServer] = []  # the masters the cluster was created with
        self.replicas: list[RedisServer] = []
        for i in range(masters * (1 + replicas)):
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
                    # A replica's first sync starts at once, not after the
                    # default 5 s wait for more replicas to share it.
                    "--repl-diskless-sync-delay",
                    "0",
                ],
            )
            node._port_offsets = (10000,)  # the cluster bus listens on port + 10000
            if i < masters:
                self.nodes.append(self._adopt(node, f"node{i}"))
            else:
                self.replicas.append(self._adopt(node, f"replica{i - masters}"))

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

    def master_of(self, replica: RedisServer) -> RedisServer:
        """The master *replica* was made to follow at start (not necessarily a master now)."""
        return self.nodes[self.replicas.index(replica) // self.replicas_per_master]

    def primaries(self) -> list[RedisServer]:
        """The running nodes, masters and replicas, that say they are masters now (`ROLE`)."""
        found = []
        for node in self.members:
            try:
                if node.running and node.execute("ROLE", timeout=0.5).startswith(
                    b"*3\r\n$6\r\nmaster"
                ):
                    found.append(node)
            except OSError:
                continue
        return found

    def wait_failover(self, master: RedisServer, timeout: float | None = None) -> RedisServer:
        """Block until a replica *master* was given is a master and the cluster is `ok`.

        Returns the promoted replica; `ServerStartError` after *timeout*
        (default `startup_timeout`). Call it after killing, pausing or
        `CLUSTER FAILOVER`-ing *master*.
        """
        followers = [r for r in self.replicas if self.master_of(r) is master]
        if not followers:
            raise ConfigurationError(f"{master!r} is not a master of this cluster with replicas")
        promoted: list[RedisServer] = []

        def done() -> bool:
            now = set(map(id, self.primaries()))
            promoted[:] = [r for r in followers if id(r) in now]
            return bool(promoted) and id(master) not in now and self.is_ok()

        self.wait_until(done, f"a replica of {master!r} taking over", timeout)
        return promoted[0]

    def start(self) -> None:
        """Start every node, create the cluster, attach the replicas, wait until it is `ok`."""
        try:
            for node in self.members:
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
            if self.replicas:
                self._attach_replicas()
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def _attach_replicas(self) -> None:
        """`CLUSTER MEET` every replica, `CLUSTER REPLICATE` its master, wait for the sync."""
        ids = {node.port: _bulk(node.execute("CLUSTER", "MYID")) for node in self.nodes}
        for replica in self.replicas:
            replica.execute("CLUSTER", "MEET", self.host, self.nodes[0].port)
        for replica in self.replicas:
            master_id = ids[self.master_of(replica).port]
            self.wait_until(
                functools.partial(_knows, replica, master_id),
                f"{replica!r} learning its master's id",
            )
            reply = replica.execute("CLUSTER", "REPLICATE", master_id)
            if not reply.startswith(b"+OK"):
                raise ServerStartError(
                    f"{replica!r}: CLUSTER REPLICATE {master_id} answered {reply!r}"
                )
        for replica in self.replicas:
            self.wait_until(
                functools.partial(_synced, replica),
                f"{replica!r} synchronising with {self.master_of(replica)!r}",
            )
        want = len(self.replicas)
        for node in self.members:  # every node must know every replica for a failover vote
            self.wait_until(
                functools.partial(_sees_replicas, node, want),
                f"{node!r} seeing all {want} replicas",
            )

    def is_ok(self) -> bool:
        """True when every running node (not paused) says `cluster_state:ok`."""
        try:
            return all(
                b"cluster_state:ok" in node.execute("CLUSTER", "INFO", timeout=0.5)
                for node in self.members
                if node.running and not node.paused  # a paused node answers nothing
            )
        except OSError:
            return False

    def wait_ok(self, timeout: float | None = None) -> None:
        """Block until `is_ok()`; raise ServerStartError after *timeout*."""
        self.wait_until(self.is_ok, "cluster_state:ok", timeout)
