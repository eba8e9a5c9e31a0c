"""Real ZooKeeper servers: standalone and an ensemble, run from the installed jars."""

from __future__ import annotations

import glob
import os
import shutil

from .._validation import _is_int, positive_int, tcp_port, wrong_type
from ..exceptions import ConfigurationError, InvalidStateError
from .process import (
    MAX_NODES,
    ServerGroup,
    ServerNotFoundError,
    ServerProcess,
    check_flag,
    find_free_port,
    query,
)
from .proxy import TCPProxy

__all__ = ["ZooKeeperEnsemble", "ZooKeeperServer", "zookeeper_classpath"]

_INSTALL_HINT = (
    "install it with 'apt-get install zookeeper' (Debian/Ubuntu), or point "
    "SCALEKIT_ZOOKEEPER_CLASSPATH at the ZooKeeper jars"
)
_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# How long a link's proxy retries a member that refuses (not listening yet).
_LINK_WAIT = 3.0


def zookeeper_classpath() -> str:
    """The Java class path of an installed ZooKeeper server.

    Looked for, in order: `$SCALEKIT_ZOOKEEPER_CLASSPATH`; the jars of a
    release unpacked at `$ZOOKEEPER_HOME`; Debian's
    `/usr/share/java/zookeeper.jar` (its manifest lists its dependencies).
    """
    explicit = os.environ.get("SCALEKIT_ZOOKEEPER_CLASSPATH")
    if explicit:
        return explicit
    home = os.environ.get("ZOOKEEPER_HOME")
    if home:
        jars = sorted(
            glob.glob(os.path.join(home, "lib", "*.jar"))
            + glob.glob(os.path.join(home, "zookeeper-*.jar"))
        )
        if jars:
            return os.pathsep.join(jars)
    debian = "/usr/share/java/zookeeper.jar"
    if os.path.exists(debian):
        return debian
    raise ServerNotFoundError("no ZooKeeper server jars were found", _INSTALL_HINT)


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServerNotFoundError("'java' was not found on PATH", _INSTALL_HINT)
    return java


class ZooKeeperServer(ServerProcess):
    """One ZooKeeper server process, standalone or a member of an ensemble.

    `tick_time_ms` is ZooKeeper's `tickTime`: sessions may time out
    between 2 and 120 ticks, so the default 500 ms allows kazoo session
    timeouts from 1 s to 60 s, short enough for expiry tests.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        tick_time_ms: int = 500,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        heap_mb: int = 256,
    ) -> None:
        if port is not None:
            tcp_port("port", port)
        positive_int("tick_time_ms", tick_time_ms)
        positive_int("heap_mb", heap_mb)
        self._java = _java()
        self._classpath = zookeeper_classpath()
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        self._set_port(port)
        self.tick_time_ms = tick_time_ms
        self.heap_mb = heap_mb
        self.myid: int | None = None
        self.peers: list[tuple[int, int, int, int]] = []  # (myid, client, peer, election)
        # Where this member reaches each other member (myid -> quorum, election port):
        # through a TCPProxy of the link when the ensemble is partitionable.
        self.views: dict[int, tuple[int, int]] = {}

    @property
    def hosts(self) -> str:
        """`127.0.0.1:PORT`, for `KazooClient(hosts=...)`."""
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def prepare(self) -> None:
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"tickTime={self.tick_time_ms}",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={data}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            f"maxSessionTimeout={self.tick_time_ms * 120}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "maxClientCnxns=0",
        ]
        if self.myid is not None:
            (data / "myid").write_text(f"{self.myid}\n")
            for myid, _client, peer, election in self.peers:
                peer, election = self.views.get(myid, (peer, election))
                lines.append(f"server.{myid}={self.host}:{peer}:{election}")
        (self.workdir / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [
            self._java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Dzookeeper.admin.enableServer=false",
            "-Djava.net.preferIPv4Stack=true",
            "-cp",
            self._classpath,
            _MAIN,
            str(self.workdir / "zoo.cfg"),
        ]

    def four_letter(self, word: str, timeout: float = 1.0) -> str:
        """Send a four-letter command (`ruok`, `srvr`, `mntr`…) and return the answer."""
        return query(self.host, self.port, word.encode(), timeout=timeout).decode(errors="replace")

    def mode(self) -> str | None:
        """`standalone`, `leader` or `follower`; None when not serving."""
        try:
            answer = self.four_letter("srvr", timeout=0.5)
        except OSError:
            return None
        for line in answer.splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return None

    def is_ready(self) -> bool:
        try:
            if self.four_letter("ruok", timeout=0.5) != "imok":
                return False
        except OSError:
            return False
        return self.mode() is not None

    def __repr__(self) -> str:
        kind = "standalone" if self.myid is None else f"member {self.myid}"
        return f"ZooKeeperServer({kind}, port={self.port}, pid={self.pid})"


class ZooKeeperEnsemble(ServerGroup[ZooKeeperServer]):
    """A ZooKeeper ensemble of `size` servers (3 by default) on loopback.

    Every member is a `ZooKeeperServer` with its own `myid` and
    data directory, so it can be killed, paused or restarted alone.
    `leader()` finds the current leader through `srvr`;
    `kill_leader()` kills it and waits for the others to elect a new one.

    With `partitionable=True` each member reaches every other one through
    a [TCPProxy][scalekit.testing.TCPProxy] per direction (its quorum and
    election ports), so a link can be cut while both ends keep running:
    `partition(a, b)` blackholes the link between two members both ways,
    `heal()` restores every link. A follower cut from its leader keeps
    answering its clients' reads and pings until it gives up on the leader
    (`syncLimit` ticks, 5 s at the default tick), while the leader expires
    the sessions of that follower's clients, whose pings no longer reach
    it, after their timeout.

    Example:
        ```python
        with ZooKeeperEnsemble(partitionable=True) as zk:
            leader = zk.wait_for_leader()
            follower = next(m for m in zk.members if m is not leader)
            zk.partition(follower, leader)
            ...
            zk.heal()
        ```
    """

    def __init__(
        self,
        size: int = 3,
        *,
        tick_time_ms: int = 500,
        workdir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        partitionable: bool = False,
    ) -> None:
        expected = f"an odd integer in [3, {MAX_NODES}]"
        if not _is_int(size):
            raise wrong_type("size", size, expected)
        if not 3 <= size <= MAX_NODES or size % 2 == 0:
            raise ConfigurationError(f"size must be {expected}, got {size!r}")
        positive_int("tick_time_ms", tick_time_ms)
        self.partitionable = check_flag("partitionable", partitionable)
        # (from myid, to myid) -> the proxies of that direction: quorum, election.
        self._links: dict[tuple[int, int], tuple[TCPProxy, TCPProxy]] = {}
        super().__init__(workdir=workdir, startup_timeout=startup_timeout)
        for myid in range(1, size + 1):
            member = ZooKeeperServer(tick_time_ms=tick_time_ms, startup_timeout=startup_timeout)
            member.myid = myid
            self._adopt(member, f"zk{myid}")

    def _pick_peer_ports(self) -> None:
        """Give every member its quorum and election ports, once, before the first start."""
        if self.members[0].peers:
            return
        peers = [
            (member.myid or 0, member.port, find_free_port(), find_free_port())
            for member in self.members
        ]
        for member in self.members:
            member.peers = peers
        if self.partitionable:
            for member in self.members:
                for myid, _client, peer, election in peers:
                    if myid == member.myid:
                        continue
                    # A learner retries a refused connect to its leader but gives up
                    # on a reset one: wait for a leader that is about to listen.
                    quorum = TCPProxy(member.host, peer, upstream_wait=_LINK_WAIT)
                    elect = TCPProxy(member.host, election, upstream_wait=_LINK_WAIT)
                    self._links[(member.myid or 0, myid)] = (quorum, elect)
                    member.views[myid] = (quorum.port, elect.port)

    def link(self, source: ZooKeeperServer, target: ZooKeeperServer) -> tuple[TCPProxy, TCPProxy]:
        """The proxies *source* reaches *target* through: its quorum port, its election port.

        Raises:
            InvalidStateError: the ensemble is not `partitionable`, or not started yet.
            ConfigurationError: *source* or *target* is not a member, or they are the same.
        """
        if not self.partitionable:
            raise InvalidStateError("links exist only in a ZooKeeperEnsemble(partitionable=True)")
        if not self._links:
            raise InvalidStateError("the links are made by start(); start the ensemble first")
        for name, member in (("source", source), ("target", target)):
            if not any(member is m for m in self.members):
                raise ConfigurationError(
                    f"{name} must be a member of this ensemble, got {member!r}"
                )
        if source is target:
            raise ConfigurationError(f"source and target must differ, got {source!r} twice")
        return self._links[(source.myid or 0, target.myid or 0)]

    def partition(self, a: ZooKeeperServer, b: ZooKeeperServer) -> None:
        """Cut the link between members *a* and *b*, both ways (blackholed proxies).

        Both keep running and keep their links to the other members.
        Connections stay open and bytes wait, as in a real partition, until
        `heal()`.

        Raises:
            InvalidStateError: the ensemble is not `partitionable`, or not started.
            ConfigurationError: *a* or *b* is not a member, or they are the same.
        """
        for proxy in (*self.link(a, b), *self.link(b, a)):
            proxy.blackhole()

    def heal(self) -> None:
        """Restore every link between members (a no-op without `partitionable`)."""
        for proxies in self._links.values():
            for proxy in proxies:
                proxy.pass_through()

    def close(self) -> None:
        """Stop every member, close the links' proxies and remove the working directory."""
        try:
            super().close()
        finally:
            for proxies in self._links.values():
                for proxy in proxies:
                    proxy.close()
            self._links.clear()

    @property
    def hosts(self) -> str:
        """Every member's `host:port`, comma-separated, for `KazooClient(hosts=...)`."""
        return ",".join(m.hosts for m in self.members)

    def start(self) -> None:
        """Start every member, then wait until each one serves in a quorum."""
        self._pick_peer_ports()
        try:
            for member in self.members:
                member.spawn()
            for member in self.members:
                member.wait_ready()
        except BaseException:
            self.stop()
            raise

    def leader(self) -> ZooKeeperServer | None:
        """The member that says `Mode: leader`, or None during an election."""
        for member in self.members:
            if member.running and not member.paused and member.mode() == "leader":
                return member
        return None

    def wait_for_leader(self, timeout: float | None = None) -> ZooKeeperServer:
        """Block until a leader is elected and return it."""
        self.wait_until(lambda: self.leader() is not None, "a leader election", timeout)
        leader = self.leader()
        assert leader is not None  # elected just now; a new election takes seconds
        return leader

    def kill_leader(self) -> ZooKeeperServer:
        """SIGKILL the current leader, wait for a new one among the rest; return the killed."""
        old = self.wait_for_leader()
        old.kill()
        self.wait_for_leader()
        return old
