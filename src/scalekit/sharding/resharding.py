"""Live resharding: per-key ownership hand-off with ASK-style redirects.

The protocol is Redis Cluster's slot migration applied per key (see the
Redis Cluster specification, "ASK redirection" and `MIGRATE`):

* The **source** of a moving key serves it for as long as it holds it; a
  command for a key the source does not hold is redirected to the
  **target**, which serves (and creates) it from then on.
* The mover hands keys over with the store's own atomic steps (on Redis, a
  staged `MIGRATE`): while a key moves, or while the outcome of its move is
  unknown (a timed-out `MIGRATE`), the source records it *in doubt*, and no
  command runs on it until someone settles the doubt from that record.
* Which side is the source is recorded on every store as the migration's
  *state* (an epoch and a phase). Every command on a moving key carries the
  state the client believes in and is refused by a store that records
  another, so a direction change (rollback, resume) never lets two clients
  create the same key on two stores.

A rollback is the same protocol with source and target swapped; nothing is
copied "if absent" and nothing is deleted that a client may still be served.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from ..exceptions import ConfigurationError, RoutingError
from ..observability import _emit
from .base import Router
from .shard_store import (
    PHASES,
    KeyAbsentError,
    KeyInDoubtError,
    MigrationState,
    ShardStore,
    StaleStateError,
)

__all__ = [
    "PHASES",
    "KeyAbsentError",
    "KeyInDoubtError",
    "MigratingRouter",
    "MigrationState",
    "ShardStore",
    "StaleStateError",
]

S = TypeVar("S", bound=Hashable)
_MOVING = ("forward", "reverse")


class MigratingRouter(Generic[S]):
    """Route commands during a resharding from *old* to *new*, losing nothing.

    Keys whose shard does not change go straight to their shard. For a key
    that moves, a command goes to the current source and runs there if the
    key is present; otherwise it goes to the current target, which serves
    it (Redis Cluster's ASK redirect). [move][scalekit.sharding.MigratingRouter.move]
    hands keys over with the store's atomic move, so every command on a key
    runs on exactly one store and every acknowledged write survives the
    move, whatever the command (`SET`, `INCR`, `HSET`, `APPEND`, `DEL`).

    [rollback][scalekit.sharding.MigratingRouter.rollback] swaps source and
    target for every moving key, [resume][scalekit.sharding.MigratingRouter.resume]
    swaps them back; both record a new state on every store first, and a
    store refuses commands sent under another state, so clients in other
    processes follow (they retry under the newer state until *timeout*).

    [plan][scalekit.sharding.MigratingRouter.plan] lets clients be deployed
    before the moves begin; [forget][scalekit.sharding.MigratingRouter.forget]
    ends a finished migration so that none of its routers writes again.

    Assumptions: one mover at a time per migration name; every client of
    the moving keys goes through a `MigratingRouter` of the same name;
    commands touch one key, given as the first argument.

    Args:
        old: the placement the data is in now.
        new: the placement it is moving to.
        stores: each shard's [ShardStore][scalekit.sharding.shard_store.ShardStore].
        name: the migration's name, recorded on every store.
        timeout: seconds a command keeps retrying while the stores disagree
            on the state (during a direction change).
        clock: monotonic seconds.
        sleep: how to wait between those retries.

    Raises:
        ConfigurationError: not routers, a shard without a store, or a bad timeout.
        BackendUnavailableError: a store could not be reached: a router reads
            the recorded state once when built, so that it belongs to the
            migration of *name* the stores record then (or, if none or a
            forgotten one, to the next one begun) and never adopts a later one.

    Thread-safety: every method may be called from any thread; `move`,
    `rollback`, `resume` and `complete` serialize on one lock.

    Example:
        ```python
        stores = {"a": RedisShardStore(client_a), "b": RedisShardStore(client_b)}
        router = MigratingRouter(HashRouter(["a"]), HashRouter(["a", "b"]), stores)
        router.start()
        router.execute("cart:7", "INCR")      # clients, from any thread
        while router.move(limit=1000):        # the mover
            pass
        placement = router.complete()
        ```
    """

    def __init__(
        self,
        old: Router[S],
        new: Router[S],
        stores: Mapping[S, ShardStore],
        *,
        name: str = "scalekit",
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(old, Router) or not isinstance(new, Router):
            raise ConfigurationError(
                f"old and new must be routers, got {type(old).__name__} and {type(new).__name__}"
            )
        if not isinstance(stores, Mapping):
            raise ConfigurationError(
                f"stores must be a mapping shard -> ShardStore, got {type(stores).__name__}"
            )
        for router in (old, new):
            for shard in getattr(router, "shards", ()):
                if shard not in stores:
                    raise ConfigurationError(
                        f"stores has no store for shard {shard!r}; give one per shard"
                    )
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty str, got {name!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        self.old = old
        self.new = new
        self.name = name
        self._stores = dict(stores)
        self._timeout = float(timeout)
        self._clock = clock
        self._sleep = sleep
        self._state: MigrationState | None = None
        self._view_lock = threading.Lock()
        self._mover_lock = threading.Lock()
        self._cursors: dict[S, int] = {}
        self._scan_state: MigrationState | None = None  # the state the cursors belong to
        self._pending: dict[S, list[Any]] = {}  # scanned, still to move
        self._pass_done = False
        # The migration this router was built for: the one the stores record
        # now, or (if none, or the last was forgotten) the next one to begin.
        # Its first adopted state must belong to it (one read per store).
        recorded = [s for s in (st.read_state(name) for st in self._distinct()) if s]
        newest = max(recorded, default=None)
        if newest is None:
            self._born_since = 1
        elif newest.phase == "forgotten":
            self._born_since = newest.epoch + 1
        else:
            self._born_since = newest.since

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> MigrationState | None:
        """The state this router routes by (None until started or learned)."""
        return self._state

    @property
    def phase(self) -> str | None:
        """The current phase: one of `PHASES`, or None before the migration starts."""
        state = self._state
        return None if state is None else state.phase

    def start(self) -> None:
        """Begin the migration: record `forward` on every store (`1:forward` on fresh stores).

        A mover that restarts adopts the newest state the stores record
        for this name and carries on from there. After a `forget()`, the
        new migration begins at the epoch after the forgotten one's, so
        no router of that one writes under the new one.

        Raises:
            BackendUnavailableError: a store could not be reached.
            ConfigurationError: the stores record a finished migration of this
                name; `forget()` it first, or use another name.
        """
        with self._mover_lock:
            recorded = [s for s in (st.read_state(self.name) for st in self._distinct()) if s]
            newest = max(recorded, default=None)
            if newest is None:
                state = MigrationState(1, "forward")
            elif newest.phase == "forgotten":  # the name is free; begin after its tombstone
                state = MigrationState(newest.epoch + 1, "forward", newest.epoch + 1)
            elif newest.phase == "planned":
                state = MigrationState(newest.epoch + 1, "forward", newest.since)
            elif newest.phase in _MOVING:
                state = newest
            else:
                raise ConfigurationError(
                    f"migration {self.name!r} is already {newest.phase} on the stores; "
                    "call forget() first or use another name"
                )
            self._record(state)

    def plan(self) -> None:
        """Record the migration as `planned`: every key stays on *old* until `start()`.

        Clients in other processes that route through a `MigratingRouter` of
        this name serve every key from its old shard, with the state checked
        by the stores, so the `start()` that follows switches all of them at
        once (each learns `forward` from the first store that refuses its
        `planned`). Deploy the clients after `plan()` and before `start()`.

        Raises:
            BackendUnavailableError: a store could not be reached.
            ConfigurationError: the stores record this migration past planning;
                `forget()` it first, or use another name.
        """
        with self._mover_lock:
            recorded = [s for s in (st.read_state(self.name) for st in self._distinct()) if s]
            newest = max(recorded, default=None)
            if newest is None:
                state = MigrationState(1, "planned")
            elif newest.phase == "forgotten":
                state = MigrationState(newest.epoch + 1, "planned", newest.epoch + 1)
            elif newest.phase == "planned":
                state = newest
            else:
                raise ConfigurationError(
                    f"migration {self.name!r} is already {newest.phase} on the stores; "
                    "call forget() first or use another name"
                )
            self._record(state)

    def refresh(self) -> MigrationState:
        """Learn the newest state recorded on the stores (for clients in other processes).

        Raises:
            RoutingError: no store records this migration, or it was forgotten
                (or replaced by a later migration of the same name).
        """
        recorded = [s for s in (st.read_state(self.name) for st in self._distinct()) if s]
        if not recorded:
            raise RoutingError(f"no store records migration {self.name!r}; call start() first")
        self._adopt(max(recorded))
        assert self._state is not None
        return self._state

    def moves(self, key: Any) -> bool:
        """True if *key* changes shard in this migration. Runtime complexity: two routes."""
        return bool(self.old.route(key) != self.new.route(key))

    def owner(self, key: Any) -> S:
        """The shard *key* is created on now: the current target if it moves, else its shard."""
        state = self._state
        if state is None or state.phase in ("planned", "reverse", "aborted"):
            return self.old.route(key)
        return self.new.route(key)

    # -- commands --------------------------------------------------------------------

    def execute(self, key: Any, *command: Any) -> Any:
        """Run a one-key command, e.g. `execute("cart:1", "HSET", "sku", 2)`, where *key* lives.

        The command goes to its store as `command[0] key command[1:]`.

        Raises:
            RoutingError: the stores still disagree on the migration's state
                after *timeout* seconds, the migration was never started, or
                it was forgotten (this router's placements are no longer in
                force: build a router for the placement returned by `complete()`).
            BackendUnavailableError: a store could not be reached.
        """
        if not command:
            raise ConfigurationError("execute needs a command, e.g. execute(key, 'GET')")
        source, target = self.old.route(key), self.new.route(key)
        deadline: float | None = None
        delay = 0.0005
        while True:
            state = self._state
            if state is None:
                state = self.refresh()
            if state.phase == "forgotten":
                raise self._forgotten(state, key)
            if source == target or state.phase not in _MOVING:
                # One owner; the state still goes along, so that a router of a
                # forgotten migration is refused rather than served.
                owner = target if state.phase == "complete" else source
                first = second = owner
            else:
                first, second = (source, target) if state.phase == "forward" else (target, source)
            asked = first
            try:
                if first != second:
                    try:
                        return self._stores[first].execute(
                            key, command, name=self.name, state=state, source=True
                        )
                    except KeyAbsentError:
                        pass  # the ASK redirect: the target serves keys its source lacks
                asked = second
                return self._stores[second].execute(
                    key, command, name=self.name, state=state, source=False
                )
            except KeyInDoubtError:
                # A move of this key from `asked` has an unknown outcome: settle
                # it from that store's own record, then retry.
                other = second if asked == first else first
                self._stores[asked].resolve(self.name, [key], self._stores[other])
                continue
            except StaleStateError as exc:
                if exc.state is not None and exc.state > state:
                    self._adopt(exc.state)
                    continue
                # The store lags behind a change in progress: wait for it.
                now = self._clock()
                if deadline is None:
                    deadline = now + self._timeout
                elif now >= deadline:
                    raise RoutingError(
                        f"stores of migration {self.name!r} disagree on its state "
                        f"(this router: {state.encode()}, a store: "
                        f"{exc.state.encode() if exc.state else None}) for {self._timeout:g} s",
                        key,
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, 0.05)

    # -- the mover -------------------------------------------------------------------

    def move(self, limit: int = 1000, *, batch: int = 100) -> int:
        """Move at most *limit* keys in the current direction; return how many moved.

        Returns 0 once a full scan of every source, begun after the last
        direction change, has been moved: nothing is left to move.

        Raises:
            ConfigurationError: the migration is not moving (not started, or finished).
            BackendUnavailableError: a move failed; its keys stay in doubt
                on their source, and the next command on one of them, or the
                next `move`, `rollback`, `resume` or `complete` (of this or
                any other mover process), settles them from the source's record.
            BackendError: the target refused a key's rows (a SQLite `UNIQUE`
                value it holds for another key); the key stays on its source,
                served there, the rest of its batch moved, and every later
                `move` raises this again until the rows are fixed.
        """
        for arg, value in (("limit", limit), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{arg} must be a positive int, got {value!r}")
        with self._mover_lock, _emit.uncounted():  # the scan's routing is not callers' traffic
            state = self._require_moving("move")
            if state != self._scan_state:
                # The state changed (here or, adopted from a store, in another
                # process) since the scan began: its cursors and queues belong
                # to another direction.
                self._cursors.clear()
                self._pending.clear()
                self._pass_done = False
                self._scan_state = state
            forward = state.phase == "forward"
            sources = {id(self._stores[s]): self._stores[s] for s in self._sources(forward)}
            for shard, key in self._settle_all(list(sources.values())):
                queue = self._pending.setdefault(shard, [])
                if (self.old.route(key) if forward else self.new.route(key)) == shard:
                    if key not in queue:
                        queue.append(key)
                    self._pass_done = False
            if self._pass_done:
                return 0
            moved = 0
            for shard in self._sources(forward):
                if moved >= limit:
                    break
                store = self._stores[shard]
                pending = self._pending.setdefault(shard, [])
                cursor = self._cursors.get(shard, 0)  # 0: not begun, -1: scan complete
                while moved < limit:
                    if not pending:
                        if cursor == -1:
                            break
                        cursor, keys = store.scan(cursor, batch)
                        cursor = cursor or -1
                        self._cursors[shard] = cursor
                        for key in keys:
                            a, b = self.old.route(key), self.new.route(key)
                            if a != b and (a if forward else b) == shard:
                                pending.append(key)
                        continue
                    take = pending[: limit - moved]
                    del pending[: len(take)]
                    groups: dict[Any, list[Any]] = {}
                    for key in take:
                        groups.setdefault(
                            self.new.route(key) if forward else self.old.route(key), []
                        ).append(key)
                    done: list[Any] = []
                    stale: StaleStateError | None = None
                    try:
                        for target, group in groups.items():
                            store.move(group, self._stores[target], name=self.name, state=state)
                            done.append(target)
                            moved += len(group)
                    except StaleStateError as exc:
                        stale = exc
                    finally:
                        # Groups a failure kept from moving wait for the next call;
                        # the failed group is in doubt on the stores, and the next
                        # call (or any command on one of its keys) settles it.
                        # Its keys are queued again: a client may cancel their move
                        # (giving them back to the source) before this mover retries.
                        failed = len(done)
                        pending[:0] = [
                            k for i, (t, g) in enumerate(groups.items()) if i >= failed for k in g
                        ]
                    if stale is not None:
                        self._refuse_stale(state, stale.state)
            if all(
                self._cursors.get(s) == -1 and not self._pending.get(s)
                for s in self._sources(forward)
            ):
                self._pass_done = True
            return moved

    def rollback(self) -> None:
        """Reverse the migration: every moving key's target becomes its source.

        Keys already moved are served where they are and moved back by
        [move][scalekit.sharding.MigratingRouter.move]; new keys go to the
        old placement. Runtime complexity: one state write per store.

        Raises:
            ConfigurationError: the migration is not moving forward.
            BackendUnavailableError: a store is unreachable; the state is
                then left as it was on the stores that were not updated,
                and commands wait (up to *timeout*) until a retry succeeds.
        """
        self._turn("forward", "reverse")

    def resume(self) -> None:
        """Move forward again after a [rollback][scalekit.sharding.MigratingRouter.rollback]."""
        self._turn("reverse", "forward")

    def complete(self) -> Router[S]:
        """Finish the direction in progress and return the router that now holds every key.

        Forward gives *new* (phase `complete`), reverse gives *old* (phase
        `aborted`). Moves whatever is left first.

        Raises:
            RoutingError: a key's move was cancelled after the last pass (by a
                client, while another mover had it in flight), so the key is
                still on its source; nothing is recorded and a second call
                moves it.
            BackendError: a store refused a move (see `move`).
        """
        while self.move(10_000):
            pass
        with self._mover_lock:
            state = self._require_moving("complete")
            final = "complete" if state.phase == "forward" else "aborted"
            # A cancelled move whose key is back on a store that is no source
            # now is served where it is; one on a source (a move another
            # mover began after this one's last pass) still has to be made.
            forward = state.phase == "forward"
            left = [
                key
                for shard, key in self._settle_all()
                if (self.old.route(key) if forward else self.new.route(key)) == shard
            ]
            if left:
                raise RoutingError(
                    f"migration {self.name!r}: {len(left)} key(s) are still on their source "
                    f"after the last pass, their move cancelled ({left[:5]!r}): was another "
                    "mover running? call complete() again to move them",
                    left[0],
                )
            self._record(MigrationState(state.epoch + 1, final, state.since))
            for store in self._distinct():
                store.sweep(self.name)
            return self.new if final == "complete" else self.old

    def forget(self) -> None:
        """End the finished migration: every store records a `forgotten` tombstone.

        Call it once the clients route by the placement `complete()`
        returned. A router of this migration (in any process) that still
        sends a command is refused with `RoutingError` from then on, because
        every command carries the state it routes by and the stores check
        it; the name is free for a new migration. Runtime complexity: one
        state write and one sweep of staged copies per store.

        Raises:
            ConfigurationError: the migration is still moving (or not started).
            BackendUnavailableError: a store could not be reached; call it again.
        """
        with self._mover_lock:
            state = self._state
            if state is None or state.phase in _MOVING:
                phase = "not started" if state is None else state.phase
                raise ConfigurationError(
                    f"cannot forget migration {self.name!r}: it is {phase}; complete() it first"
                )
            tombstone = (
                state
                if state.phase == "forgotten"
                else MigrationState(state.epoch + 1, "forgotten", state.since)
            )
            for store in self._distinct():
                store.write_state(self.name, tombstone)
                store.sweep(self.name)
            with self._view_lock:
                self._state = tombstone

    # -- internals -------------------------------------------------------------------

    def _distinct(self) -> list[ShardStore]:
        seen: dict[int, ShardStore] = {}
        for store in self._stores.values():
            seen.setdefault(id(store), store)
        return list(seen.values())

    def _sources(self, forward: bool) -> list[S]:
        router = self.old if forward else self.new
        shards: Iterable[S] = getattr(router, "shards", None) or self._stores
        return list(shards)

    def _adopt(self, state: MigrationState) -> None:
        with self._view_lock:
            current = self._state
            since = self._born_since if current is None else current.since
            if state.phase == "forgotten" or state.since != since:
                raise self._forgotten(state)
            if current is None or state > current:
                self._state = state

    def _refuse_stale(self, acted_on: MigrationState, recorded: MigrationState | None) -> None:
        """A store refused a move step: the state this mover acted on is no longer recorded."""
        self._cursors.clear()
        self._pending.clear()
        self._pass_done = False
        if recorded is not None and recorded > acted_on:
            # Forgotten or another migration: the error below says what was refused.
            with contextlib.suppress(RoutingError):
                self._adopt(recorded)
        raise RoutingError(
            f"migration {self.name!r}: this mover acted on state {acted_on.encode()} but a "
            f"store records {recorded.encode() if recorded else None} (changed by another "
            "process: a rollback, resume or completion); nothing was moved under the stale "
            "state; call refresh() and move() again to move in the recorded direction"
        )

    def _forgotten(self, state: MigrationState, key: Any = None) -> RoutingError:
        return RoutingError(
            f"migration {self.name!r} was forgotten (the stores record {state.encode()}); "
            "this router's placements are no longer in force: route by the placement "
            "complete() returned, or build a MigratingRouter for a new migration",
            key,
        )

    def _record(self, state: MigrationState) -> None:
        for store in self._distinct():
            store.write_state(self.name, state)
        with self._view_lock:
            self._state = state
        self._cursors.clear()
        self._pending.clear()
        self._pass_done = False

    def _require_moving(self, what: str) -> MigrationState:
        state = self._state
        if state is None or state.phase not in _MOVING:
            phase = "not started" if state is None else state.phase
            raise ConfigurationError(f"cannot {what}: the migration is {phase}")
        return state

    def _turn(self, expected: str, phase: str) -> None:
        with self._mover_lock:
            state = self._require_moving(phase)
            if state.phase != expected:
                raise ConfigurationError(
                    f"cannot turn {phase}: the migration is moving {state.phase} already"
                )
            self._settle_all()
            self._record(MigrationState(state.epoch + 1, phase, state.since))

    def _ends(self, key: Any, holder: ShardStore) -> tuple[S, S] | None:
        """(source, target) of the move of *key* whose doubt *holder* records."""
        a, b = self.old.route(key), self.new.route(key)
        if self._stores[a] is holder:
            return a, b
        if self._stores[b] is holder:
            return b, a
        return None

    def _settle_all(self, holders: list[ShardStore] | None = None) -> list[tuple[S, Any]]:
        """Settle every key in doubt on *holders* (every store); return the cancelled ones.

        The outcome of an interrupted move is decided from the stores' records,
        so a mover that restarts (or any client) repairs what another one left.
        """
        cancelled: list[tuple[S, Any]] = []
        for holder in self._distinct() if holders is None else holders:
            groups: dict[tuple[S, S], list[Any]] = {}
            for key in holder.in_doubt(self.name):
                ends = self._ends(key, holder)
                if ends is not None:
                    groups.setdefault(ends, []).append(key)
            for (source, target), keys in groups.items():
                outcome = holder.resolve(self.name, keys, self._stores[target])
                cancelled += [(source, k) for k, o in zip(keys, outcome, strict=True) if o == "c"]
        return cancelled
