"""When a ZooKeeper holder must stop trusting its session, whatever kazoo's state says.

The leader expires a session `timeout` after it last heard of the client
(rounded up to its tick). A client on a follower is heard of through that
follower: the follower notes the session's requests and passes them on at
its next heartbeat with the leader (the leader sends one every half tick),
and it answers reads and pings by itself, so a follower cut from its leader
keeps answering a client whose session the leader is expiring. Only a
request the leader itself takes part in (a `sync`, a write) proves the
follower was still in touch with the leader after the request was sent;
the session's earlier requests reached the leader by then, up to half a
tick (at most a quarter of a timeout, which is at least two ticks) and one
gap between the client's requests before (kazoo pings every third of the
timeout when idle). So the holder tracks `last_heard`: the send time of the
latest such request that was answered, minus `RELAY` (a quarter) of the
timeout. Kazoo cannot tell: it counts requests as pings and reports
`SUSPENDED` only when its own read times out, which a client busy
calling ZooKeeper during a partition pushes to near the session timeout.

One watch per kazoo client pings the leader (a `sync("/")`) every
sixth of the session timeout while some lock on the client has live
leases, and declares those leases lost at
`last_heard + LOST_AFTER * timeout`. `timeout` is the negotiated one
(the server clamps the requested timeout between its
`minSessionTimeout` and `maxSessionTimeout`, 2 and 20 ticks by
default): read from the handshake of every (re)connect and, for a session
already open when the watch starts, from the server's `cons` command
when it answers it. The lower of it and the requested timeout is used: a
server that raised the timeout only makes the holder more cautious.

Clock assumption: the client's monotonic clock and the server's clock run
at rates that differ by less than `1 - LOST_AFTER` (a third) over one
session timeout.

The margin, for a request sent at `s` and answered through the leader:
the leader heard of the session at `s - tick/2 - gap` or later (`gap`, the
longest time between two of the client's requests, is `timeout/3` when idle
and `timeout/6` while the watch pings), so it cannot expire the session
before `s - tick/2 - gap + timeout >= s + 5/12 timeout` (with
`tick <= timeout/2`); the leases are declared lost at
`s - RELAY * timeout + LOST_AFTER * timeout = s + 5/12 timeout`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .zookeeper_lock import ZooKeeperLock

__all__ = ["LOST_AFTER", "RELAY", "SessionWatch", "session_watch"]

_log = logging.getLogger("scalekit.locking")

LOST_AFTER = 2 / 3
"""Leases are lost this fraction of the negotiated session timeout after ``last_heard``."""

RELAY = 1 / 4
"""How much earlier than its send time an answered request counts as heard, in timeouts."""

_PINGS_PER_TIMEOUT = 6


class SessionWatch:
    """Tracks one kazoo client's session for the locks that use it.

    Thread-safe. Locks subscribe once and are held weakly, so the watch
    never keeps a lock object alive and no lock ever unregisters (which
    could race with a grant).
    """

    def __init__(self, client: Any) -> None:
        self._client = weakref.ref(client)
        self._locks: weakref.WeakSet[ZooKeeperLock] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._negotiated: float | None = None
        self._negotiated_for: int | None = None
        # Nothing proves the session alive before an answer: a watch made just now
        # is no evidence (the leader may have stopped hearing of it long ago).
        self.last_heard = float("-inf")
        self._outstanding = False
        self._idle = False
        self._wakeups = 0  # bumped by every subscribe: the loop never idles past one
        self._thread: threading.Thread | None = None
        self._hook_handshake(client)
        client.add_listener(self._on_state)

    # -- the negotiated timeout -------------------------------------------------
    def _hook_handshake(self, client: Any) -> None:
        """Record the negotiated timeout of every later (re)connect.

        Kazoo derives its read timeout (2/3 of the negotiated timeout) in
        its connection's `_connect` and keeps it to itself; wrapping that
        method on this one connection object is the only way to see it.
        """
        connection = getattr(client, "_connection", None)
        connect = getattr(connection, "_connect", None)
        if connection is None or connect is None or getattr(connect, "_scalekit_watch", False):
            return
        watch = weakref.ref(self)

        def recording_connect(*args: Any, **kwargs: Any) -> Any:
            result = connect(*args, **kwargs)
            me = watch()
            if me is not None:
                read_timeout_ms = float(result[0])
                me._negotiated = read_timeout_ms * 1.5 / 1000
                me._negotiated_for = getattr(client, "_session_id", None)
            return result

        recording_connect._scalekit_watch = True  # type: ignore[attr-defined]
        connection._connect = recording_connect

    def _probe_negotiated(self, client: Any) -> None:
        """For a session opened before the watch: ask the server (`cons`)."""
        session = getattr(client, "_session_id", None)
        if session is None or self._negotiated_for == session:
            return
        self._negotiated_for = session
        try:
            answer = client.command(b"cons")
        except Exception:  # not whitelisted, or no connection: keep the requested timeout
            return
        match = re.search(rf"sid=0x{session:x}[^)]*?\bto=(\d+)", answer)
        if match:
            self._negotiated = int(match.group(1)) / 1000

    def timeout(self) -> float:
        """The session timeout to plan with: the negotiated one, else the requested one."""
        client = self._client()
        requested = 10.0 if client is None else client._session_timeout / 1000
        negotiated = self._negotiated
        return requested if negotiated is None else min(negotiated, requested)

    def lost_at(self) -> float:
        """The monotonic time after which the server may have expired the session."""
        return self.last_heard + LOST_AFTER * self.timeout()

    def past_due(self) -> bool:
        """Whether `lost_at()` has passed; if so, declare every lease of the client lost.

        Called by `lease.lost.is_set()`, so a holder resuming from a pause
        reads its lease lost on its first look, whether or not the watch
        thread has run yet.
        """
        if time.monotonic() < self.lost_at():
            return False
        self._expire()
        return True

    def _expire(self) -> None:
        for lock in self._busy():  # a grant under way checks the deadline itself
            lock._lose_all()

    # -- subscriptions ----------------------------------------------------------------
    def heard(self, sent_at: float) -> None:
        """A request sent at *sent_at* went through the leader and was answered.

        Only a request the leader takes part in counts (a `sync`, a write):
        a follower answers reads by itself, even cut from its leader. The
        leader had heard of the session `RELAY` of a timeout before
        *sent_at* (see the module's docstring), and that is what is kept.

        A deadline that passed before this news arrived still counts: the
        leases are declared lost first, so `lost_at()` never moves past an
        instant at which a reader could already have been told "lost".
        """
        if time.monotonic() >= self.lost_at():
            self._expire()
        heard_at = sent_at - RELAY * self.timeout()
        with self._cond:
            if heard_at > self.last_heard:
                self.last_heard = heard_at

    def subscribe(self, lock: ZooKeeperLock) -> None:
        """Watch the session for *lock*'s leases (call it once a lease is live). O(1).

        Wakes the watch if it is idle, or about to be: a loop that found no
        live lease just before this call does not go to sleep on it.
        """
        with self._cond:
            self._locks.add(lock)
            self._wakeups += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="scalekit-zk-session"
                )
                self._thread.start()
            elif self._idle:
                self._idle = False
                self._cond.notify_all()

    def _busy(self) -> list[ZooKeeperLock]:
        return [lock for lock in list(self._locks) if lock._live]

    def _on_state(self, state: str) -> None:
        """Kazoo's connection listener (must not block): pass the news on."""
        for lock in list(self._locks):
            lock._on_state(state)

    # -- the loop -------------------------------------------------------------------
    def _ping(self, client: Any) -> None:
        sent_at = time.monotonic()
        self._outstanding = True

        def answered(result: Any) -> None:
            self._outstanding = False
            try:
                result.get_nowait()
            except Exception:  # ConnectionLoss, SessionExpired...: no proof of life
                return
            self.heard(sent_at)

        try:
            # A sync is answered by the leader (through the follower, if any):
            # a follower cut from its leader cannot answer it.
            client.sync_async("/").rawlink(answered)
        except Exception:
            self._outstanding = False

    def _run(self) -> None:
        probed = False
        while True:
            try:
                client = self._client()
                if client is None:
                    return
                if not probed:
                    # On its own thread: the command may hang as long as the network does.
                    threading.Thread(
                        target=self._probe_negotiated, args=(client,), daemon=True
                    ).start()
                    probed = True
                with self._cond:
                    wakeups = self._wakeups
                busy = self._busy()
                if not busy:
                    with self._cond:
                        if wakeups == self._wakeups:  # no lease went live meanwhile
                            self._idle = True
                            self._cond.wait(1.0)
                            self._idle = False
                    probed = False
                    continue
                if self.past_due():
                    continue
                timeout = self.timeout()
                period = timeout / _PINGS_PER_TIMEOUT
                now = time.monotonic()
                # The send time of the latest proof (a grant's create, an answered ping):
                # the next ping is due a period after it, not at every wake-up.
                due = self.last_heard + RELAY * timeout + period
                if self._outstanding:
                    due = now + period
                elif now >= due:
                    self._ping(client)
                    due = now + period
                wait = min(max(due - now, 0.001), max(self.lost_at() - now, 0.0) + 0.001)
                del client, busy
                with self._cond:
                    self._cond.wait(wait)
            except Exception:
                _log.exception("ZooKeeper session watch failed; it keeps running")
                time.sleep(0.1)


_WATCHES: weakref.WeakKeyDictionary[Any, SessionWatch] = weakref.WeakKeyDictionary()
_WATCHES_LOCK = threading.Lock()


def session_watch(client: Any) -> SessionWatch:
    """The one watch of *client* (made on first use)."""
    with _WATCHES_LOCK:
        watch = _WATCHES.get(client)
        if watch is None:
            watch = _WATCHES[client] = SessionWatch(client)
        return watch
