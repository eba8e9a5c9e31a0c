"""MigratingRouter against a dict model: random commands, moves and direction changes.

An in-memory ShardStore keeps the protocol's rules (presence checks and the
recorded state per store, atomic per-key moves, a scan that returns every
key present throughout), and so does a SQLite one built from transactions as
the protocol describes for SQL; a Hypothesis state machine drives three shards
through forward moves, rollbacks, resumes and completion, and checks every
read against a plain dict and every key's location against the placement
in force, on either kind of store. About 5 s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scalekit.sharding import MigratingRouter, MigrationState, RangeRouter
from scalekit.sharding.shard_store import KeyAbsentError, ShardStore, StaleStateError

KEYS = [f"{c}{i}" for c in "bdhlpsvy" for i in range(3)]


class AtomicMoves:
    """Moves that commit on both sides in one step never leave a key in doubt."""

    def resolve(self, name: str, keys: Sequence[Any], target: ShardStore) -> list[str]:
        return ["n"] * len(keys)

    def in_doubt(self, name: str) -> list[Any]:
        return []

    def sweep(self, name: str) -> int:
        return 0


class MemoryStore(AtomicMoves, ShardStore):
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

    def move(
        self,
        keys: Sequence[Any],
        target: ShardStore,
        *,
        name: str,
        state: MigrationState | None = None,
    ) -> int:
        assert isinstance(target, MemoryStore)
        if state is not None and self.states.get(name) != state:
            raise StaleStateError(self.states.get(name))
        present = [key for key in keys if key in self.data]
        for key in present:
            target.data[key] = self.data.pop(key)
        return len(present)


class SQLiteStore(AtomicMoves, ShardStore):
    """One shard as a SQL database: each step is one transaction, as the protocol says.

    ``execute`` reads the state row and the key's row and runs the command in
    one transaction; ``move`` holds the source's write lock (``BEGIN
    IMMEDIATE``) while it upserts the row on the target and deletes it here.
    """

    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:", isolation_level=None)
        self.db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self.db.execute("CREATE TABLE state (name TEXT PRIMARY KEY, state TEXT NOT NULL)")

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.db.execute("SELECT k, v FROM kv"))

    def put(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO kv VALUES (?, ?)", (key, value))

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
            if state is not None:
                recorded = self._state(name)
                if recorded != state:
                    raise StaleStateError(recorded)
                if source and row is None:
                    raise KeyAbsentError(key)
            value = None if row is None else row[0]
            op, *args = command
            reply: Any
            if op == "GET":
                reply = value
            elif op == "DEL":
                db.execute("DELETE FROM kv WHERE k = ?", (key,))
                reply = int(value is not None)
            else:
                if op == "SET":
                    new = str(args[0])
                elif op == "INCR":
                    new = str(int(value or 0) + 1)
                else:
                    new = (value or "") + str(args[0])
                db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, new))
                reply = True if op == "SET" else int(new) if op == "INCR" else len(new)
            db.execute("COMMIT")
            return reply
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _state(self, name: str) -> MigrationState | None:
        row = self.db.execute("SELECT state FROM state WHERE name = ?", (name,)).fetchone()
        return None if row is None else MigrationState.decode(row[0])

    def read_state(self, name: str) -> MigrationState | None:
        return self._state(name)

    def write_state(self, name: str, state: MigrationState | None) -> None:
        self.db.execute("DELETE FROM state WHERE name = ?", (name,))
        if state is not None:
            self.db.execute("INSERT INTO state VALUES (?, ?)", (name, state.encode()))

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        present = self.data
        chunk = [key for key in KEYS[cursor : cursor + count] if key in present]
        following = cursor + count
        return (following if following < len(KEYS) else 0), chunk

    def move(
        self,
        keys: Sequence[Any],
        target: ShardStore,
        *,
        name: str,
        state: MigrationState | None = None,
    ) -> int:
        assert isinstance(target, SQLiteStore)
        moved = 0
        for key in keys:
            self.db.execute("BEGIN IMMEDIATE")  # writers of this store wait
            try:
                if state is not None and self._state(name) != state:
                    raise StaleStateError(self._state(name))
                row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
                if row is not None:
                    target.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, row[0]))
                    self.db.execute("DELETE FROM kv WHERE k = ?", (key,))
                    moved += 1
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return moved


class Resharding(RuleBasedStateMachine):
    make_store: Callable[[], Any] = MemoryStore

    def __init__(self) -> None:
        super().__init__()
        self.stores = {name: type(self).make_store() for name in "abc"}
        old = RangeRouter(["l"], ["a", "b"])
        new = RangeRouter(["d", "p"], ["b", "c", "a"])  # every key moves, four ways
        for key in KEYS[::2]:
            store = self.stores[old.route(key)]
            if isinstance(store, SQLiteStore):
                store.put(key, "0")
            else:
                store.data[key] = "0"
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
            expected = self.model.get(key)
            assert (got is None and expected is None) or str(got) == str(expected)
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
            assert str(self.stores[holders[0]].data[key]) == str(self.model[key])


class ReshardingSQL(Resharding):
    make_store = SQLiteStore


TestResharding = Resharding.TestCase
TestResharding.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestReshardingSQL = ReshardingSQL.TestCase
TestReshardingSQL.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
