"""MigratingRouter against a dict model: random commands, moves and direction changes.

An in-memory ShardStore keeps the protocol's rules (presence checks and the
recorded state per store, atomic per-key moves, a scan that returns every
key present throughout); a Hypothesis state machine drives three shards
through forward moves, rollbacks, resumes and completion, and checks every
read against a plain dict and every key's location against the placement
in force. About 3 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scalekit.sharding import MigratingRouter, MigrationState, RangeRouter
from scalekit.sharding.shard_store import KeyAbsentError, ShardStore, StaleStateError

KEYS = [f"{c}{i}" for c in "bdhlpsvy" for i in range(3)]


class MemoryStore(ShardStore):
    """One shard in memory; each method is one atomic step, as on a real store."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.states: dict[str, MigrationState] = {}

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        if state is not None:
            if self.states.get(name) != state:
                raise StaleStateError(self.states.get(name))
            if source and key not in self.data:
                raise KeyAbsentError(key)
        op, *args = command
        if op == "GET":
            return self.data.get(key)
        if op == "SET":
            self.data[key] = args[0]
            return True
        if op == "INCR":
            self.data[key] = int(self.data.get(key, 0)) + 1
            return self.data[key]
        if op == "APPEND":
            self.data[key] = str(self.data.get(key, "")) + args[0]
            return len(self.data[key])
        assert op == "DEL"
        return int(self.data.pop(key, None) is not None)

    def read_state(self, name: str) -> MigrationState | None:
        return self.states.get(name)

    def write_state(self, name: str, state: MigrationState | None) -> None:
        if state is None:
            self.states.pop(name, None)
        else:
            self.states[name] = state

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        # Positions in the fixed key universe, like Redis's cursor over hash
        # buckets: a key present from start to end is returned, deletes or not.
        chunk = [key for key in KEYS[cursor : cursor + count] if key in self.data]
        following = cursor + count
        return (following if following < len(KEYS) else 0), chunk

    def move(self, keys: Sequence[Any], target: ShardStore) -> None:
        assert isinstance(target, MemoryStore)
        for key in keys:
            if key in self.data:
                target.data[key] = self.data.pop(key)


class Resharding(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stores = {name: MemoryStore() for name in "abc"}
        old = RangeRouter(["l"], ["a", "b"])
        new = RangeRouter(["d", "p"], ["b", "c", "a"])  # every key moves, four ways
        for key in KEYS[::2]:
            self.stores[old.route(key)].data[key] = "0"
        self.model: dict[str, Any] = {key: "0" for key in KEYS[::2]}
        self.router = MigratingRouter(old, new, self.stores)
        self.router.start()
        self.final: RangeRouter[str] | None = None

    @rule(key=st.sampled_from(KEYS), op=st.sampled_from(["GET", "SET", "INCR", "APPEND", "DEL"]))
    def command(self, key: str, op: str) -> None:
        args = {"SET": ["7"], "APPEND": ["x"]}.get(op, [])
        if op == "INCR" and not str(self.model.get(key, "0")).lstrip("-").isdigit():
            op = "DEL"
        got = self.router.execute(key, op, *args)
        if op == "GET":
            assert got == self.model.get(key)
        elif op == "SET":
            self.model[key] = "7"
        elif op == "INCR":
            self.model[key] = int(self.model.get(key, 0)) + 1
            assert got == self.model[key]
        elif op == "APPEND":
            self.model[key] = str(self.model.get(key, "")) + "x"
        else:
            assert got == int(self.model.pop(key, None) is not None)

    @precondition(lambda self: self.final is None)
    @rule(limit=st.integers(1, 4), batch=st.integers(1, 5))
    def move(self, limit: int, batch: int) -> None:
        assert self.router.move(limit, batch=batch) <= limit

    @precondition(lambda self: self.final is None and self.router.phase == "forward")
    @rule()
    def rollback(self) -> None:
        self.router.rollback()

    @precondition(lambda self: self.final is None and self.router.phase == "reverse")
    @rule()
    def resume(self) -> None:
        self.router.resume()

    @precondition(lambda self: self.final is None)
    @rule()
    def complete(self) -> None:
        self.final = self.router.complete()  # type: ignore[assignment]
        assert self.router.phase in ("complete", "aborted")

    @invariant()
    def every_key_is_on_one_store_and_where_it_belongs(self) -> None:
        router = self.router
        for key in KEYS:
            holders = [name for name, store in self.stores.items() if key in store.data]
            assert len(holders) == (key in self.model), (key, holders)
            if not holders:
                continue
            if self.final is not None:
                assert holders == [self.final.route(key)]
            else:
                assert holders[0] in (router.old.route(key), router.new.route(key))
            assert self.stores[holders[0]].data[key] == self.model[key]


TestResharding = Resharding.TestCase
TestResharding.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
