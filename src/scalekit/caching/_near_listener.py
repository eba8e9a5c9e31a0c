"""The per-node listener of NearCache: client tracking or the cache's channel, and heartbeats."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import redis

from ..exceptions import BackendUnavailableError

if TYPE_CHECKING:
    from .near_cache import NearCache

_log = logging.getLogger("scalekit.caching.near_cache")
NEVER = float("-inf")
_TRACKING_CHANNEL = b"__redis__:invalidate"
_UNSET: Any = object()


def permission_message(listener: Listener, channel: str) -> str:
    return (
        f"NearCache cannot listen for invalidations on Redis node {listener.node}: "
        f"{listener.step} was refused ({listener.denied}). The Redis user needs the "
        "commands CLIENT ID, CLIENT TRACKING, SUBSCRIBE and PING and the channel "
        "'__redis__:invalidate' (or, on a server "
        f"without client tracking, the channel {channel!r}), "
        f"e.g. ACL SETUSER <user> +client|id +client|tracking +subscribe +ping "
        f"&__redis__:invalidate &{channel}"
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

    def run(self) -> None:
        near = self.near
        backoff = 0.05
        while not (near._stop.is_set() or self.retired):
            conn = None
            self._handler: Any = _UNSET
            try:
                conn = self.pool.get_connection()
                self._session(conn)
                backoff = 0.05
            except redis.exceptions.NoPermissionError as exc:
                if self.denied is None:
                    _log.error("%s", permission_message(self._denied(exc), near.remote.channel))
                near._distrust(self)
                self.ready.set()
                near._stop.wait(max(backoff, 1.0))
            except Exception:  # any failure: distrust the local layer and reconnect
                near._distrust(self)
                near._stop.wait(backoff)
                backoff = min(backoff * 2, near.max_staleness)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):  # best effort on a broken link
                        # The connection goes back to the user's pool: leave no trace.
                        if self._handler is not _UNSET:
                            conn._parser.set_invalidation_push_handler(self._handler)
                        conn.disconnect()
                        self.pool.release(conn)
        near._distrust(self)

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
        if resp3:
            # RESP3: the node pushes `invalidate` messages on this very connection.
            self._handler = getattr(conn._parser, "invalidation_push_handler_func", None)
            conn._parser.set_invalidation_push_handler(lambda push: [b"invalidate", push[1]])
            tracking: tuple[Any, ...] = ("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", prefix)
        else:
            # RESP2: invalidations are redirected to a pub/sub channel on this connection.
            client_id = self._command(conn, "CLIENT", "ID")
            tracking = (
                "CLIENT",
                "TRACKING",
                "ON",
                "REDIRECT",
                client_id,
                "BCAST",
                "PREFIX",
                prefix,
            )
        try:
            self._command(conn, *tracking)
            self.tracking = True
        except redis.exceptions.NoPermissionError:
            raise
        except redis.exceptions.ResponseError:
            self.tracking = False  # Redis < 6: only writes through scalekit are seen
        if not self.tracking:
            self._command(conn, "SUBSCRIBE", near.remote.channel)
        elif not resp3:
            self._command(conn, "SUBSCRIBE", _TRACKING_CHANNEL)
        self.denied = None
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
                self.trusted_until = pending.pop(0)[1] + near.max_staleness
                near._refresh_trust()
                self.ready.set()
