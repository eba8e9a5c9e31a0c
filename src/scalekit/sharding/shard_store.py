"""What the resharding protocol needs from a shard's storage, and the state it records.

[MigratingRouter][scalekit.sharding.MigratingRouter] drives any store that
implements [ShardStore][scalekit.sharding.shard_store.ShardStore]; Redis's is
[RedisShardStore][scalekit.sharding.redis_store.RedisShardStore].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# The protocol's errors live in scalekit.exceptions; importing them from here
# keeps working.
from ..exceptions import KeyAbsentError, KeyInDoubtError, RoutingError, StaleStateError

__all__ = [
    "PHASES",
    "KeyAbsentError",
    "KeyInDoubtError",
    "MigrationState",
    "ShardStore",
    "StaleStateError",
]

#: The phases of a migration, in the order they may come: `planned` routes
#: every key by the old placement until the moves begin; `forgotten` is the
#: tombstone `MigratingRouter.forget()` leaves, so that no router of the
#: finished migration writes again.
PHASES = ("planned", "forward", "reverse", "complete", "aborted", "forgotten")
_MOVING = ("forward", "reverse")


@dataclass(frozen=True, order=True)
class MigrationState:
    """What every store records about one migration: an epoch, a phase and where it began.

    `planned` keeps every key on the old placement while clients learn of
    the migration, `forward` moves keys from the old placement to the new one,
    `reverse` moves them back (a rollback); `complete` and `aborted`
    mean every key is on the new (respectively old) placement, and
    `forgotten` that the migration is over and no router of it may write.
    The epoch grows by one at every change, so a client always knows which
    of two states is newer; *since* is the epoch at which the migration
    began, so that a router never adopts the state of a later migration of
    the same name.
    """

    epoch: int
    phase: str
    since: int = 1

    def encode(self) -> str:
        """The state as stored: `"<epoch>:<phase>"`, then `":<since>"` unless it is 1."""
        text = f"{self.epoch}:{self.phase}"
        return text if self.since == 1 else f"{text}:{self.since}"

    @classmethod
    def decode(cls, text: str | bytes | None) -> MigrationState | None:
        """Parse a stored state; None when nothing is stored."""
        if text is None:
            return None
        if isinstance(text, bytes):
            text = text.decode("ascii")
        epoch, _, rest = text.partition(":")
        phase, _, since = rest.partition(":")
        if (
            not epoch.isdigit()
            or phase not in PHASES
            or not (since == "" or (since.isdigit() and int(since) <= int(epoch)))
        ):
            raise RoutingError(f"a store records an unreadable migration state {text!r}")
        return cls(int(epoch), phase, int(since or 1))


class ShardStore(Protocol):
    """What the resharding protocol needs from one shard's storage.

    Redis implements it with Lua scripts and `MIGRATE`
    ([RedisShardStore][scalekit.sharding.redis_store.RedisShardStore]),
    SQLite with transactions
    ([SQLiteShardStore][scalekit.sharding.SQLiteShardStore]): `execute`
    checks the state row, the key's doubt record and its rows in the
    transaction that runs the command; `move` records the keys in doubt,
    stages their rows on the target, and deletes them at the source in
    the transaction that marks them moved, and `resolve` promotes the
    staged rows of moved keys, or cancels a move that never reached that
    point.

    The contract every store keeps, whatever fails and whoever crashes:
    a key is served under its name by at most one store at a time, and a
    copy whose transfer has an unknown outcome is never served until a
    `resolve` decided, from the source's own atomic state, which copy is
    the key. The decision lives in the stores, so any process can take it.
    """

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        """Run *command* on *key* atomically with the checks below and return its reply.

        With a *state*, first check the store records exactly that state for
        migration *name* (else raise `StaleStateError` carrying the recorded
        one), that the key's move is not in doubt here (else raise
        `KeyInDoubtError`) and, if *source*, that the key is present (else
        raise `KeyAbsentError`). Without a state, run the command unconditionally.
        """

    def read_state(self, name: str) -> MigrationState | None:
        """The state recorded for migration *name*, or None."""

    def write_state(self, name: str, state: MigrationState | None) -> None:
        """Record *state* for migration *name* (None forgets it)."""

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        """One step of a full scan of the store's keys: (next cursor, keys); cursor 0 ends it.

        A full scan must return every key present from its start to its end,
        and never a record of the protocol itself.
        """

    def move(
        self,
        keys: Sequence[Any],
        target: ShardStore,
        *,
        name: str,
        state: MigrationState | None = None,
    ) -> int:
        """Move *keys* (those still present) to *target*; return how many moved.

        Given a *state*, every step that takes a key from this store checks,
        atomically with the step, that this store still records *state* for
        migration *name*, and raises `StaleStateError` (with the recorded
        state) otherwise: a mover that acted on a state since changed (a
        rollback, resume or completion by another process) moves nothing.

        While a key moves, commands on it are refused with `KeyInDoubtError`
        (or wait); after a successful call, the key is on *target* only. If
        the transfer fails, raise `BackendUnavailableError` and leave the
        keys in doubt on this store for `resolve`.
        """

    def resolve(self, name: str, keys: Sequence[Any], target: ShardStore) -> list[str]:
        """Settle *keys* in doubt on this store (the source of their move to *target*).

        Returns one letter per key: `"n"` not in doubt, `"c"` cancelled (the
        key is served here again), `"m"` moved (served by *target* now),
        `"x"` expired on the source meanwhile (gone).
        """

    def in_doubt(self, name: str) -> list[Any]:
        """The keys of migration *name* whose move from this store is in doubt."""

    def sweep(self, name: str) -> int:
        """Delete leftover staged copies of migration *name*; return how many.

        Only call it once no store has a key of the migration in doubt.
        """
