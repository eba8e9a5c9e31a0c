"""Test helpers users may reuse: a fake clock and real servers.

`FakeClock` drives anything that takes `clock=` or `timer=`.
The server classes start real `redis-server`, ZooKeeper and PostgreSQL processes on
free loopback ports, each in its own temporary directory, and stop them by
the pid they started; `TCPProxy` sits between a client and a server
to delay, blackhole or reset the connection for partition tests.

None of this imports a database driver: the servers are probed with raw
sockets (`PING`, `ruok`), so the harness works with the core
dependencies alone.
"""

from .._lazy import public_dir
from .clock import FakeClock
from .postgres_servers import PostgresServer
from .process import (
    ServerGroup,
    ServerNotFoundError,
    ServerProcess,
    ServerStartError,
    find_free_port,
)
from .proxy import TCPProxy
from .redis_servers import RedisClusterServers, RedisServer
from .zookeeper_servers import ZooKeeperEnsemble, ZooKeeperServer

__all__ = [
    "FakeClock",
    "PostgresServer",
    "RedisClusterServers",
    "RedisServer",
    "ServerGroup",
    "ServerNotFoundError",
    "ServerProcess",
    "ServerStartError",
    "TCPProxy",
    "ZooKeeperEnsemble",
    "ZooKeeperServer",
    "find_free_port",
]

__dir__ = public_dir(__name__, globals())
