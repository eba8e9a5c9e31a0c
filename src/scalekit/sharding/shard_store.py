"""What the resharding protocol needs from a shard's storage, and the state it records.

[MigratingRouter][scalekit.sharding.MigratingRouter] drives any store that
implements [ShardStore][scalekit.sharding.shard_store.ShardStore]; Redis's is
[RedisShardStore][scalekit.sharding.redis_store.RedisShardStore].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import RoutingError, ScaleKitError

__all__ = ["PHASES", "KeyAbsentError", "MigrationState", "ShardStore", "StaleStateError"]

#: The phases of a migration, in the order they may come.
PHASES = ("forward", "reverse", "complete", "aborted")
_MOVING = ("forward", "reverse")


@dataclass(frozen=True, order=True)
class MigrationState:
    """What every store records about one migration: an epoch and a phase.

    `forward` moves keys from the old placement to the new one,
    `reverse` moves them back (a rollback); `complete` and `aborted`
    mean every key is on the new (respectively old) placement. The epoch
    grows by one at every change, so a client always knows which of two
    states is newer.
    """

    epoch: int
    phase: str

    def encode(self) -> str:
        """The state as stored: `"<epoch>:<phase>"`."""
        return f"{self.epoch}:{self.phase}"

    @classmethod
    def decode(cls, text: str | bytes | None) -> MigrationState | None:
        """Parse a stored state; None when nothing is stored."""
        if text is None:
            return None
        if isinstance(text, bytes):
            text = text.decode("ascii")
        epoch, _, phase = text.partition(":")
        if not epoch.isdigit() or phase not in PHASES:
            raise RoutingError(f"a store records an unreadable migration state {text!r}")
        return cls(int(epoch), phase)


class StaleStateError(ScaleKitError, RuntimeError):
    """Raised by a store whose recorded state differs from the caller's."""

    def __init__(self, state: MigrationState | None) -> None:
        super().__init__(f"the store records state {state!r}")
        self.state = state


class KeyAbsentError(ScaleKitError, LookupError):
    """Raised by a source store asked to serve a key it does not hold."""


class ShardStore(Protocol):
    """What the resharding protocol needs from one shard's storage.

    Redis implements it with one Lua script and `MIGRATE`
    ([RedisShardStore][scalekit.sharding.redis_store.RedisShardStore]). A
    SQL database implements it with transactions: `execute` reads the state
    row and locks the key's row (`SELECT ... FOR UPDATE`) in the
    transaction that runs the command, and `move` locks the source row,
    upserts it on the target, then deletes it and commits (a crash in
    between leaves the source copy served and the target copy overwritten
    by the next attempt, the same rule as an interrupted `MIGRATE`).
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
        one) and, if *source*, that the key is present (else raise
        `KeyAbsentError`).
        Without a state, run the command unconditionally.
        """

    def read_state(self, name: str) -> MigrationState | None:
        """The state recorded for migration *name*, or None."""

    def write_state(self, name: str, state: MigrationState | None) -> None:
        """Record *state* for migration *name* (None forgets it)."""

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        """One step of a full scan of the store's keys: (next cursor, keys); cursor 0 ends it.

        A full scan must return every key present from its start to its end.
        """

    def move(self, keys: Sequence[Any], target: ShardStore) -> None:
        """Move *keys* (those still present) to *target*, each atomically.

        While a key moves, `execute` on that key waits on both stores;
        after it, the key is on *target* only. A present copy on *target*
        is replaced (it can only be a leftover of an interrupted move,
        since a target is never served a key its source holds).
        """
