"""The per-node listener of NearCache: client tracking or the cache's channel, and heartbeats."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

try:
    import redis
    import redis.cluster
except ModuleNotFoundError as _exc:
    from .._lazy import missing_driver

    raise missing_driver(__name__, _exc) from _exc

from ..exceptions import BackendUnavailableError
from .redis_cache import _busy

if TYPE_CHECKING:
    from .near_cache import NearCache

_log = logging.getLogger("scalekit.caching.near_cache")
NEVER = float("-inf")
_TRACKING_CHANNEL = b"__redis__:invalidate"


def permission_message(listener: Listener, channel: str) -> str:
    if listener.near.invalidation == "channel":
        needs = f"the commands SUBSCRIBE and PING and the channel {channel!r}"
        grant = f"+subscribe +ping &{channel}"
    else:
        needs = (
            "the commands CLIENT ID, CLIENT TRACKING, SUBSCRIBE and PING (not renamed or "
            "disabled on the server) and the channel '__redis__:invalidate'"
        )
        grant = "+client|id +client|tracking +subscribe +ping &__redis__:invalidate"
    if isinstance(listener.near.remote.client, redis.cluster.RedisCluster):
        needs += ", and on a Cluster ROLE"
        grant += " +role"
    return (
        f"NearCache cannot listen for invalidations on Redis node {listener.node}: "
        f"{listener.step} was refused ({listener.denied}). The Redis user needs {needs}, "
        f"e.g. ACL SETUSER <user> {grant}"
    )


class Listener(threading.Thread):
    """One node's invalidation connection and heartbeat."""

    def __init__(self, near: NearCache, pool: Any, name: str) -> None:
        super().__init__(name=f"NearCache-{near.remote.namespace}-{name}", daemon=True)
        self.near = near
        self.pool = pool
        self.node = name
        self.trusted_until = NEVER
        self.tracking: bool | None = None
        self.denied: Exception | None = None
        self.step = ""  # the command being set up, named if it is refused
        self.retired = False  # its node is no longer a primary: stop
        self.ready = threading.Event()  # first heartbeat answered, or permission denied
        self._conn: Any = None
        self._role: Any = None

    def abort(self) -> None:
        """Shut down this listener's sockets (from another thread): a blocked read ends now."""
        for conn in (self._conn, self._role):
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        near = self.near
        backoff = 0.05
        while not (near._stop.is_set() or self.retired):
            conn = None
            self._role = None
            try:
                # A connection of its own, outside the user's pool: it is held for as
                # long as the listener runs, and must not starve a bounded pool.
                conn = self._conn = self.pool.connection_class(**self.pool.connection_kwargs)
                self._session(conn)
                backoff = 0.05
            except redis.ResponseError as exc:
                if _busy(exc):  # a script past busy-reply-threshold: unavailable, not refused
                    _log.debug("NearCache listener on %s: %s (retrying)", self.node, exc)
                    backoff = self._unavailable(backoff)
                    continue
                # refused: an ACL, or a renamed command
                if self.denied is None:
                    _log.error("%s", permission_message(self._denied(exc), near.remote.channel))
                near._distrust(self)
                self.ready.set()
                near._stop.wait(max(backoff, 1.0))
            except Exception:  # any failure: distrust the local layer and reconnect
                backoff = self._unavailable(backoff)
            finally:
                for used in (conn, self._role):
                    if used is not None:
                        with contextlib.suppress(Exception):  # best effort on a broken link
                            used.disconnect()
        near._distrust(self)

    def _unavailable(self, backoff: float) -> float:
        """Distrust the local layer, wait *backoff* seconds; the next backoff."""
        self.near._distrust(self)
        self.near._stop.wait(backoff)
        return min(backoff * 2, self.near.max_staleness)

    def _check_role(self, role: Any) -> None:
        """Leave the session if the node is no longer a primary; look for the new one."""
        if isinstance(role, list) and role and role[0] in (b"master", "master"):
            return
        client: Any = self.near.remote.client
        with contextlib.suppress(Exception):  # the map is refreshed again at the next MOVED
            client.nodes_manager.initialize()
        self.near._check_topology()
        raise BackendUnavailableError(f"node {self.node} is no longer a primary: {role!r}")

    def _denied(self, exc: Exception) -> Listener:
        self.denied = exc
        return self

    def _command(self, conn: Any, *args: Any) -> Any:
        self.step = " ".join(a.decode() if isinstance(a, bytes) else str(a) for a in args)
        conn.send_command(*args, check_health=False)
        return conn.read_response(push_request=True)

    def _session(self, conn: Any) -> None:
        """Set up tracking and subscriptions on *conn*, then serve it until it fails."""
        near = self.near
        prefix = f"{near.remote.namespace}:"
        resp3 = str(getattr(conn, "protocol", 2)) == "3"
        self.step = "connect"
        conn.connect()
        if near.invalidation == "channel":
            # Only writes through scalekit publish here: direct writes are not seen.
            self._command(conn, "SUBSCRIBE", near.remote.channel)
            self.tracking = False
        else:
            if resp3:
                # RESP3: the node pushes `invalidate` messages on this very connection.
                conn._parser.set_invalidation_push_handler(lambda push: [b"invalidate", push[1]])
                redirect: tuple[Any, ...] = ()
            else:
                # RESP2: invalidations are redirected to a pub/sub channel on this connection.
                redirect = ("REDIRECT", self._command(conn, "CLIENT", "ID"))
            # Any refusal (an ACL, a renamed or disabled CLIENT, a server without
            # tracking) is raised: NearCache never falls back to a mode that cannot
            # see direct writes unless it was asked to (invalidation="channel").
            self._command(conn, "CLIENT", "TRACKING", "ON", *redirect, "BCAST", "PREFIX", prefix)
            if not resp3:
                self._command(conn, "SUBSCRIBE", _TRACKING_CHANNEL)
            self.tracking = True
        if isinstance(near.remote.client, redis.cluster.RedisCluster):
            # A second connection asks the node its ROLE with every ping: a primary
            # demoted by a failover keeps answering pings but no longer sees the writes.
            self._role = self.pool.connection_class(**self.pool.connection_kwargs)
            self._role.connect()
            self._check_role(self._command(self._role, "ROLE"))
        self.denied = None
        self.step = "PING"  # the heartbeat: a refusal now names it
        # Messages may have been lost while not subscribed: nothing local can be trusted.
        near.clear_local()
        interval = near.max_staleness / 4
        # (payload, send time) of unanswered pings, oldest first. Each ping carries a
        # sequence number, so an answer that skips one shows that bytes of this stream
        # were lost (and invalidations with them): the session is then rebuilt.
        pending: list[tuple[bytes, float]] = []
        sent = 0
        next_ping = near._clock()
        while not (near._stop.is_set() or self.retired):
            now = near._clock()
            if now >= next_ping:
                near._check_topology()
                sent += 1
                pending.append((b"%d" % sent, now))
                if self._role is not None:  # asked before the ping: see the pong below
                    self._role.send_command("ROLE", check_health=False)
                conn.send_command("PING", pending[-1][0], check_health=False)
                next_ping = now + interval
            trusted = self.trusted_until
            if trusted != NEVER and now >= trusted:
                near._distrust(self)  # no recent ping answered: invalidations may be missing
            if pending and now - pending[0][1] > 2 * near.max_staleness:
                raise BackendUnavailableError("heartbeat unanswered: the connection looks dead")
            wake = min(next_ping, trusted) if trusted != NEVER else next_ping
            if not conn.can_read(timeout=max(0.0, min(interval, wake - now))):
                continue
            message = conn.read_response(push_request=True)
            if isinstance(message, list) and message[0] == b"message":
                near._invalidated(message[2])
            elif isinstance(message, list) and message[0] == b"invalidate":
                near._invalidated(message[1])
            else:  # a heartbeat answer: [b"pong", payload] (RESP2 subscribed) or payload
                payload = message[1] if isinstance(message, list) else message
                if not pending or payload != pending[0][0]:
                    raise BackendUnavailableError(
                        f"heartbeat answers out of order: got {payload!r}"
                    )
                if self._role is not None:
                    # The node was a primary when it answered this ROLE, sent before the
                    # ping: every write acknowledged before then was made on this node.
                    self._check_role(self._role.read_response())
                self.trusted_until = pending.pop(0)[1] + near.max_staleness
                near._refresh_trust()
                self.ready.set()
