"""Live resharding between two SQLite databases: the same protocol, transactions for moves.

The Hypothesis model drives the real store through forward moves,
rollbacks, resumes and completion (about 5 s). The randomized history runs
3 seeds of about 7 s each (twice that on a loaded machine): writers in
threads doing SET, INCR, HSET (rows of a second table) and APPEND, while
mover processes are killed with SIGKILL, stopped with SIGSTOP past the move
timeout and restarted.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from scalekit import (
    ArgumentTypeError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    RoutingError,
)
from scalekit.sharding import HashRouter, MigratingRouter, MigrationState
from scalekit.sharding.sqlite_store import SQLiteShardStore

from . import _sqlite_kv as kv
from .test_resharding_model import KEYS, Resharding

MOVER = Path(kv.__file__)


class KVRouter(MigratingRouter[str]):
    """Takes the model's command names and runs the matching SQL command."""

    def execute(self, key: Any, *command: Any) -> Any:
        return super().execute(key, kv.COMMANDS[command[0]], *command[1:])


class ModelStore(SQLiteShardStore):
    def __init__(self) -> None:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.executescript(kv.SCHEMA)
        self.conn = conn
        super().__init__(lambda: conn, kv.TABLES)

    @property
    def data(self) -> dict[str, Any]:
        return dict(self.conn.execute("SELECT k, v FROM kv"))

    def put(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO kv VALUES (?, ?)", (key, value))


class ReshardingSQLite(Resharding):
    make_store = ModelStore

    def __init__(self) -> None:
        super().__init__()
        old, new = self.router.old, self.router.new
        for key in KEYS[::2]:  # the base puts them in a copy of `data`
            store = self.stores[old.route(key)]
            assert isinstance(store, ModelStore)
            store.put(key, "0")
        self.router = KVRouter(old, new, self.stores)
        self.router.start()


TestReshardingSQLite = ReshardingSQLite.TestCase
TestReshardingSQLite.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def stores_at(tmp_path: Path, **kwargs: Any) -> dict[str, SQLiteShardStore]:
    for name in "AB":
        kv.connect(tmp_path / f"{name}.sqlite3").close()
    return {
        name: SQLiteShardStore(tmp_path / f"{name}.sqlite3", kv.TABLES, **kwargs) for name in "AB"
    }


def moving(router: MigratingRouter[str], prefix: str, count: int) -> list[str]:
    keys = (f"{prefix}{i}" for i in range(10_000))
    return [k for k, _ in zip((k for k in keys if router.moves(k)), range(count), strict=False)]


def holders(tmp_path: Path, key: str) -> list[str]:
    found = []
    for name in "AB":
        with sqlite3.connect(tmp_path / f"{name}.sqlite3") as conn:
            if conn.execute(
                "SELECT 1 FROM kv WHERE k = ? UNION SELECT 1 FROM fields WHERE k = ?", (key, key)
            ).fetchone():
                found.append(name)
    return found


def test_rows_of_every_table_move_with_their_key_and_tables_are_created(tmp_path: Path) -> None:
    stores = stores_at(tmp_path)
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    key, other = moving(router, "u", 2)
    with sqlite3.connect(tmp_path / "A.sqlite3", isolation_level=None) as conn:
        conn.execute("CREATE TABLE notes_2026 (k TEXT, body BLOB, n REAL)")
        conn.execute("INSERT INTO notes_2026 VALUES (?, ?, ?)", (key, b"\x00\xff", 0.1))
    tables = {**kv.TABLES, "notes_*": "k"}
    stores = {n: SQLiteShardStore(tmp_path / f"{n}.sqlite3", tables) for n in "AB"}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    router.plan()
    assert router.execute(key, kv.set_, "10") is True
    assert router.execute(key, kv.hset, "f", 1) == 1
    assert holders(tmp_path, key) == ["A"]  # planned: the old placement serves, even new keys
    router.start()
    assert router.execute(other, kv.incr) == 1  # new in the move: the target creates it
    assert router.complete() is router.new
    assert holders(tmp_path, key) == holders(tmp_path, other) == ["B"]
    assert router.execute(key, kv.incr) == 11
    assert router.execute(key, kv.hgetall) == {"f": 1}
    with sqlite3.connect(tmp_path / "B.sqlite3") as conn:
        assert conn.execute("SELECT body, n FROM notes_2026").fetchall() == [(b"\x00\xff", 0.1)]
    router.forget()
    with pytest.raises(RoutingError, match="was forgotten"):
        router.execute(key, kv.get)


class StopsBeforeCommit(SQLiteShardStore):
    """A mover that stops (as under SIGSTOP) after staging, before the commit point."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = threading.Event()
        self.go = threading.Event()

    def _commit(
        self, name: str, token: str, begun: list[str], state: MigrationState | None = None
    ) -> list[str]:
        self.stopped.set()
        assert self.go.wait(10)
        return super()._commit(name, token, begun, state)


def test_a_command_cancels_the_move_of_a_stopped_mover_after_the_timeout(tmp_path: Path) -> None:
    now = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    stores_at(tmp_path)
    stopping = StopsBeforeCommit(
        tmp_path / "A.sqlite3", kv.TABLES, move_timeout=0.5, clock=lambda: now[0], sleep=sleep
    )
    stores = {"A": stopping, "B": SQLiteShardStore(tmp_path / "B.sqlite3", kv.TABLES)}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    client = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    key, gone = moving(router, "c", 2)
    router.plan()
    assert client.execute(key, kv.set_, "10") is True  # planned: on the old placement
    assert client.execute(gone, kv.set_, "x") is True
    router.start()
    moved: list[int] = []
    mover = threading.Thread(
        target=lambda: moved.append(router.move(limit=10)), daemon=True
    )  # the mover's scan passes the key here: only the cancellation record brings it back
    mover.start()
    assert stopping.stopped.wait(10)
    assert client.execute(key, kv.incr) == 11  # waited for the mover, then cancelled its move
    assert 0.5 <= sum(waits) <= 0.5 + 0.05
    assert stores["A"].resolve(router.name, [key], stores["B"]) == ["c"]  # cancelled, kept
    assert client.execute(gone, kv.delete) == 1  # cancelled too, then deleted
    stopping.go.set()
    mover.join(10)
    assert not mover.is_alive()
    assert holders(tmp_path, key) == ["A"] and client.execute(key, kv.get) == "11"
    # The mover hears of the cancellations, moves the key again and forgets the deleted one.
    assert sorted(stores["A"].in_doubt(router.name)) == sorted([key, gone])
    assert router.move(limit=10) == 2
    assert stores["A"].in_doubt(router.name) == []
    assert holders(tmp_path, gone) == []
    assert stores["A"].resolve(router.name, [key], stores["B"]) == ["n"]
    assert router.complete() is router.new
    assert holders(tmp_path, key) == ["B"] and client.execute(key, kv.get) == "11"


def test_bad_arguments_and_commands_are_clear_errors(tmp_path: Path) -> None:
    stores = stores_at(tmp_path)
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    router.start()
    with pytest.raises(ArgumentTypeError, match=r"command is a callable .* got str: 'GET'"):
        router.execute("k", "GET")
    with pytest.raises(ArgumentTypeError, match=r"key must be a str or int .* got bytes"):
        router.execute(b"k", kv.get)
    for bad, message in [
        ({}, "tables must be a non-empty mapping"),
        ({"kv; drop": "k"}, "is not a table name"),
        ({"kv": "k k"}, "is not a column name"),
        ({"scalekit_reshard_x": "k"}, "reserved prefix"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            SQLiteShardStore(tmp_path / "A.sqlite3", bad)
    with pytest.raises(ConfigurationError, match="move_timeout must be a positive number"):
        SQLiteShardStore(tmp_path / "A.sqlite3", kv.TABLES, move_timeout=0)
    with pytest.raises(ConfigurationError, match="database must be a path or a callable"):
        SQLiteShardStore(3, kv.TABLES)  # type: ignore[arg-type]
    legacy = SQLiteShardStore(lambda: sqlite3.connect(":memory:"), kv.TABLES)
    with pytest.raises(ConfigurationError, match="autocommit mode"):
        legacy.read_state("x")
    with pytest.raises(ConfigurationError, match="moves keys to another SQLiteShardStore"):
        stores["A"].move(["k"], object(), name="x")  # type: ignore[arg-type]


def test_a_planned_migration_switches_every_client_at_start(tmp_path: Path) -> None:
    stores = stores_at(tmp_path)
    mover = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, name="grow")
    mover.plan()
    client = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, name="grow")
    key = moving(mover, "p", 1)[0]
    assert client.execute(key, kv.incr) == 1 and client.phase == "planned"
    mover.start()
    assert mover.state == MigrationState(2, "forward")
    assert client.execute(key, kv.incr) == 2 and client.phase == "forward"
    with pytest.raises(ConfigurationError, match="already forward"):
        mover.plan()
    mover.complete()
    assert holders(tmp_path, key) == ["B"]


# -- the randomized history with mover processes killed and stopped ------------------

PER_TYPE = 12
WRITERS = 3


def spawn(tmp_path: Path, steps: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(MOVER),
            str(tmp_path / "A.sqlite3"),
            str(tmp_path / "B.sqlite3"),
            steps,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_writers_lose_nothing_while_movers_are_killed_stopped_and_restarted(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    stores = stores_at(tmp_path, move_timeout=0.2, busy_timeout=30)  # writers starve SQLite locks
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, timeout=10)
    counters = [f"c:{i}" for i in range(PER_TYPE)]
    strings = [f"s:{i}" for i in range(PER_TYPE)]
    hashes = [f"h:{i}" for i in range(PER_TYPE)]
    appends = [f"a:{i}" for i in range(PER_TYPE)]
    count = {k: 0 for k in counters}
    version = {k: 0 for k in strings}
    fields: dict[str, dict[str, int]] = {k: {} for k in hashes}
    texts = {k: "" for k in appends}
    errors: list[str] = []
    ops = [0]
    lock = threading.Lock()
    router.plan()
    for i in range(0, PER_TYPE, 2):  # half exist before the migration
        for key, cmd, args in [
            (counters[i], kv.set_, (5,)),
            (strings[i], kv.set_, (0,)),
            (hashes[i], kv.hset, ("w", 0)),
            (appends[i], kv.set_, ("^",)),
        ]:
            router.execute(key, cmd, *args)
        count[counters[i]], fields[hashes[i]]["w"], texts[appends[i]] = 5, 0, "^"
    stop = threading.Event()

    def writer(w: int) -> None:
        local = random.Random(seed * 10 + w)
        me = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, timeout=10)
        mine = [i for i in range(PER_TYPE) if i % WRITERS == w]
        n = 0
        try:
            while not stop.is_set():
                n += 1
                kind = local.randrange(5)
                if kind == 0:
                    key = local.choice(counters)
                    floor = count[key]
                    got = me.execute(key, kv.incr)
                    with lock:
                        count[key] += 1
                        if got <= floor:
                            errors.append(f"INCR {key} answered {got} after {floor} acked")
                elif kind == 1:
                    key = strings[local.choice(mine)]
                    me.execute(key, kv.set_, n)
                    version[key] = n
                    if me.execute(key, kv.get) != str(n):
                        errors.append(f"{key} lost its own write {n}")
                elif kind == 2:
                    key = local.choice(hashes)
                    me.execute(key, kv.hset, f"w{w}", n)
                    with lock:
                        fields[key][f"w{w}"] = n
                elif kind == 3:
                    key = appends[local.choice(mine)]
                    me.execute(key, kv.append, f"{n};")
                    texts[key] += f"{n};"
                else:
                    key = local.choice(counters)
                    floor = count[key]
                    if int(me.execute(key, kv.get) or 0) < floor:
                        errors.append(f"{key} read below {floor} acknowledged")
                with lock:
                    ops[0] += 1
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(f"writer {w} failed: {exc!r}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()

    def after_ops(more: int) -> None:
        target = ops[0] + more
        deadline = time.monotonic() + 10
        while ops[0] < target and time.monotonic() < deadline and not errors:
            time.sleep(0.001)  # polls the writers' progress, bounded

    def after_moves(mover: subprocess.Popen[str], count: int) -> None:
        assert mover.stdout is not None
        for _ in range(count):
            line = mover.stdout.readline()
            assert line in ("start\n", "rollback\n", "moved\n", "drain\n"), line
            if line == "drain\n":  # fewer keys to move than asked: the fault lands after the drain
                return

    kills = stops = 0
    try:
        after_ops(50)
        first = spawn(tmp_path, "start,drain,complete")
        after_moves(first, rng.randint(2, 6))  # some keys moved, one maybe mid-move
        first.kill()
        first.wait(10)
        kills += 1
        after_ops(50)
        second = spawn(tmp_path, "start,rollback,drain")
        after_moves(second, rng.randint(3, 6))
        second.send_signal(signal.SIGSTOP)
        stops += 1
        time.sleep(0.3)  # the fault lasts past the move timeout: clients cancel its moves
        second.send_signal(signal.SIGCONT)
        assert second.stdout is not None
        second.stdout.read()
        assert second.wait(30) == 0
        after_ops(50)
        third = spawn(tmp_path, "start,resume,drain,complete")
        assert third.stdout is not None
        third.stdout.read()
        assert third.wait(30) == 0
        after_ops(100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert kills == stops == 1 and ops[0] > 400
    final = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    assert final.refresh().phase == "complete"
    new = final.new
    for key, n in count.items():
        assert holders(tmp_path, key) == [new.route(key)]
        assert final.execute(key, kv.get) == str(n), key
    for key, n in version.items():
        assert final.execute(key, kv.get) == (str(n) if n or key in strings[::2] else None), key
    for key, got in fields.items():
        assert final.execute(key, kv.hgetall) == got, key
    for key, text in texts.items():
        assert (final.execute(key, kv.get) or "") == text, key
    assert any(router.moves(k) and holders(tmp_path, k) == ["B"] for k in counters)
    for name in "AB":
        with sqlite3.connect(tmp_path / f"{name}.sqlite3") as conn:
            assert conn.execute("SELECT COUNT(*) FROM scalekit_reshard_doubt").fetchone() == (0,)
            assert conn.execute("SELECT COUNT(*) FROM scalekit_reshard_stage").fetchone() == (0,)


def test_a_stopped_process_holding_the_write_lock_fails_calls_in_bounded_time(
    tmp_path: Path,
) -> None:
    stores = stores_at(tmp_path, busy_timeout=0.5)
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    key = moving(router, "b", 1)[0]
    router.plan()
    assert router.execute(key, kv.set_, "1") is True
    router.start()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
            str(tmp_path / "B.sqlite3"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        holder.send_signal(signal.SIGSTOP)  # a writer of the target, stopped mid-transaction
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="database is locked"):
            router.move(limit=10)
        assert time.monotonic() - started <= 0.5 + 0.5  # the busy timeout, and a margin
        assert stores["A"].in_doubt(router.name) == []  # given back at once, not at a timeout
        assert router.execute(key, kv.incr) == 2  # the source serves it meanwhile
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait(10)
    assert router.complete() is router.new
    assert holders(tmp_path, key) == ["B"] and router.execute(key, kv.get) == "2"


class DiesAfterCommit(SQLiteShardStore):
    """A mover killed after the commit point, before the target promoted the rows."""

    def _finish(self, name: str, records: Any, target: SQLiteShardStore) -> dict[str, str]:
        if records and not getattr(self, "died", False):
            self.died = True
            raise BackendUnavailableError("killed")
        return super()._finish(name, records, target)


def test_a_client_promotes_the_rows_a_killed_mover_committed(tmp_path: Path) -> None:
    stores_at(tmp_path)
    dying = DiesAfterCommit(tmp_path / "A.sqlite3", kv.TABLES)
    stores = {"A": dying, "B": SQLiteShardStore(tmp_path / "B.sqlite3", kv.TABLES)}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    key, other = moving(router, "m", 2)
    router.plan()
    for k in (key, other):
        router.execute(k, kv.set_, "5")
        router.execute(k, kv.hset, "f", 1)
    router.start()
    with pytest.raises(BackendUnavailableError):
        dying.move([key, other], stores["B"], name=router.name)
    assert holders(tmp_path, key) == holders(tmp_path, other) == []  # staged on B only
    assert sorted(dying.in_doubt(router.name)) == sorted([key, other])
    client = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    assert client.execute(key, kv.incr) == 6  # settled: the staged rows promoted first
    assert client.execute(key, kv.hgetall) == {"f": 1}
    assert holders(tmp_path, key) == ["B"] and dying.in_doubt(router.name) == [other]
    assert dying.resolve(router.name, [other, key], stores["B"]) == ["m", "n"]
    assert holders(tmp_path, other) == ["B"] and client.execute(other, kv.get) == "5"
    assert router.complete() is router.new
    with sqlite3.connect(tmp_path / "B.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM scalekit_reshard_stage").fetchone() == (0,)


def test_routers_of_a_forgotten_migration_are_refused_on_sqlite(tmp_path: Path) -> None:
    stores = stores_at(tmp_path)

    def make() -> MigratingRouter[str]:
        return MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores, name="users")

    mover, early, late = make(), make(), make()
    key = moving(mover, "f", 1)[0]
    still = next(f"q{i}" for i in range(1000) if not mover.moves(f"q{i}"))
    with pytest.raises(ConfigurationError, match="cannot forget migration 'users': it is not"):
        mover.forget()
    mover.plan()
    assert mover.state == MigrationState(1, "planned")
    assert early.execute(key, kv.set_, "1") is True
    mover.start()
    with pytest.raises(ConfigurationError, match="it is forward; complete"):
        mover.forget()
    mover.complete()
    assert late.execute(key, kv.incr) == 2 and late.phase == "complete"
    mover.forget()
    assert mover.state == MigrationState(4, "forgotten")
    assert stores["A"].read_state("users") == MigrationState(4, "forgotten")
    mover.forget()  # again: nothing changes
    assert stores["B"].read_state("users") == MigrationState(4, "forgotten")
    for stale in (early, late, make()):
        for k in (key, still):
            with pytest.raises(RoutingError, match="migration 'users' was forgotten"):
                stale.execute(k, kv.set_, "lost")
    again = make()
    again.plan()
    assert again.state == MigrationState(5, "planned", 5)
    again.start()
    assert again.state == MigrationState(6, "forward", 5)
    for stale in (early, late):
        with pytest.raises(RoutingError, match="was forgotten"):
            stale.execute(key, kv.set_, "lost")
    fresh = make()
    assert fresh.execute(key, kv.get) == "2" and fresh.state == MigrationState(6, "forward", 5)
    again.rollback()  # every later state of this migration records where it began
    assert fresh.execute(key, kv.incr) == 3 and fresh.state == MigrationState(7, "reverse", 5)
    again.resume()
    again.complete()
    assert fresh.execute(key, kv.get) == "3" and fresh.state == MigrationState(9, "complete", 5)
    again.forget()  # the tombstone keeps where the forgotten migration began
    assert stores["A"].read_state("users") == MigrationState(10, "forgotten", 5)
    assert MigrationState.decode("6:forward:5") == MigrationState(6, "forward", 5)
    assert MigrationState(6, "forward", 5).encode() == "6:forward:5"
    assert MigrationState(2, "forward").encode() == "2:forward"
    for bad in ("6:forward:7", "6:forward:x", "6:sideways"):
        with pytest.raises(RoutingError, match="unreadable migration state"):
            MigrationState.decode(bad)


def test_a_stale_mover_after_another_process_rolled_back_is_refused_and_moves_nothing(
    tmp_path: Path,
) -> None:
    from scalekit.exceptions import KeyAbsentError

    for n in "AB":
        kv.connect(tmp_path / f"{n}.sqlite3").close()
    sa, sb = (SQLiteShardStore(tmp_path / f"{n}.sqlite3", kv.TABLES) for n in "AB")
    old, new = HashRouter(["A"]), HashRouter(["A", "B"])
    woken: list[Any] = []

    class WakesTheMover(SQLiteShardStore):
        """The stale mover wakes up between the client's ABSENT on B and its step on A."""

        def execute(self, k: Any, command: Any, **kw: Any) -> Any:
            try:
                return super().execute(k, command, **kw)
            except KeyAbsentError:
                while woken:
                    woken.pop()()
                raise

    mover = MigratingRouter(old, new, {"A": sa, "B": sb}, name="m")
    mover.plan()
    key = next(f"c{i}" for i in range(1000) if mover.moves(f"c{i}"))
    mover.execute(key, kv.set_, "10")
    mover.start()
    operator = MigratingRouter(old, new, {"A": sa, "B": sb}, name="m")
    operator.start()
    operator.rollback()
    refused: list[Exception] = []

    def stale_move() -> None:
        with pytest.raises(RoutingError, match="acted on state") as info:
            mover.move(limit=10)
        refused.append(info.value)

    woken.append(stale_move)
    client = MigratingRouter(
        old, new, {"A": sa, "B": WakesTheMover(tmp_path / "B.sqlite3", kv.TABLES)}, name="m"
    )
    assert client.execute(key, kv.incr) == 11
    assert refused and not woken
    assert operator.complete() is old
    rows = {
        n: sqlite3.connect(tmp_path / f"{n}.sqlite3")
        .execute("SELECT v FROM kv WHERE k = ?", (key,))
        .fetchall()
        for n in "AB"
    }
    assert rows == {"A": [("11",)], "B": []}


def two_files(tmp_path: Path, schema: str) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.sqlite3" for name in "AB"}
    for path in paths.values():
        with sqlite3.connect(path) as conn:
            conn.executescript(schema)
    return paths


class HookedTarget(SQLiteShardStore):
    """A target that runs *hook* once, when the mover opens its staging transaction."""

    hook: Any = None

    def _transaction(self, operation: str) -> Any:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super()._transaction(operation)


def bal_incr(conn: sqlite3.Connection, key: Any) -> int:
    conn.execute("UPDATE acct SET bal = bal + 1 WHERE user_id = ?", (key,))
    return int(conn.execute("SELECT bal FROM acct WHERE user_id = ?", (key,)).fetchone()[0])


def bal_get(conn: sqlite3.Connection, key: Any) -> int | None:
    row = conn.execute("SELECT bal FROM acct WHERE user_id = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


@pytest.mark.parametrize(("declared", "stored", "other"), [("INTEGER", 7, "7"), ("TEXT", "7", 7)])
def test_a_key_spelled_as_another_type_mid_move_is_refused_and_no_write_is_lost(
    tmp_path: Path, declared: str, stored: Any, other: Any
) -> None:
    paths = two_files(tmp_path, f"CREATE TABLE acct (user_id {declared} PRIMARY KEY, bal INT);")
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO acct VALUES (?, 10)", (stored,))
    source = SQLiteShardStore(paths["A"], {"acct": "user_id"})
    target = HookedTarget(paths["B"], {"acct": "user_id"})
    stores: dict[str, SQLiteShardStore] = {"A": source, "B": target}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    router.start()
    outcome: list[Any] = []

    def client() -> None:  # SQLite reads `other` as the same row; the doubt record must too
        try:
            outcome.append(router.execute(other, bal_incr))
        except ArgumentTypeError as exc:
            outcome.append(exc)

    target.hook = lambda: threading.Thread(target=client).run()  # between steps 1 and 2
    assert source.move([stored], target, name=router.name, state=router.state) == 1
    assert len(outcome) == 1 and isinstance(outcome[0], ArgumentTypeError), outcome
    assert f"acct.user_id, got {type(other).__name__}: {other!r}" in str(outcome[0])
    assert router.execute(stored, bal_get) == 10  # nothing was acknowledged, nothing changed
    assert router.execute(stored, bal_incr) == 11
    assert router.complete() is router.new
    assert router.execute(stored, bal_get) == 11


def test_the_key_type_check_agrees_with_sqlite_affinity() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE n (k INTEGER)")
    texts = [
        "7",
        " 7 ",
        "+7",
        "-7",
        "07",
        "7.0",
        "7.",
        ".5",
        "1e3",
        "1E+3",
        "0x10",
        "7a",
        "",
        " ",
        "abc",
        "1_000",
        "\u0667",
        "9" * 30,
        "- 7",
        "1e",
        "7\n",
    ]
    for text in texts:
        conn.execute("DELETE FROM n")
        conn.execute("INSERT INTO n VALUES (?)", (text,))
        numeric = conn.execute("SELECT typeof(k) FROM n").fetchone()[0] != "text"
        store = SQLiteShardStore(lambda: conn, {"n": "k"})
        if numeric:
            with pytest.raises(ArgumentTypeError, match="key must be an int"):
                store.execute(text, [kv.get], name="m", state=None, source=False)
        else:
            store._check_key(conn, text)


ORDERS = "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT, total INT);"


def order(conn: sqlite3.Connection, key: str, total: int) -> int:
    return int(
        conn.execute("INSERT INTO orders (user_id, total) VALUES (?, ?)", (key, total)).lastrowid
        or 0
    )


def orders_of(conn: sqlite3.Connection, key: str) -> list[tuple[int, int]]:
    sql = "SELECT id, total FROM orders WHERE user_id = ? ORDER BY id"
    return [(int(i), int(t)) for i, t in conn.execute(sql, (key,))]


def table_rows(path: Path, sql: str) -> list[Any]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_a_per_database_unique_id_conflict_keeps_its_key_on_the_source_and_says_which(
    tmp_path: Path,
) -> None:
    paths = two_files(tmp_path, ORDERS)
    stores = {n: SQLiteShardStore(p, {"orders": "user_id"}) for n, p in paths.items()}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    first, second, third, newcomer = moving(router, "u", 4)
    for key in (first, second, third):  # ids 1, 2, 3 on A
        stores["A"].execute(key, [order, 5], name=router.name, state=None, source=True)
    router.start()
    assert router.execute(newcomer, order, 7) == 1  # created on its target B, with id 1 too
    with pytest.raises(BackendError, match=rf"key {first!r}: UNIQUE constraint failed: orders\.id"):
        router.complete()
    assert table_rows(paths["A"], "SELECT id, user_id FROM orders") == [(1, first)]
    assert router.execute(first, orders_of) == [(1, 5)]  # still served, by its source
    assert router.execute(second, orders_of) == [(2, 5)] and router.execute(third, orders_of)
    for path in paths.values():  # nothing stranded: no record, no staged row
        assert table_rows(path, "SELECT * FROM scalekit_reshard_doubt") == []
        assert table_rows(path, "SELECT * FROM scalekit_reshard_stage") == []
    with pytest.raises(BackendError, match="must be unique across all shards"):
        router.complete()  # the same conflict, every time, until the rows are fixed
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("UPDATE orders SET id = 100 WHERE id = 1")
    assert router.complete() is router.new
    assert router.execute(first, orders_of) == [(100, 5)]
    assert table_rows(paths["A"], "SELECT * FROM orders") == []


class ConflictBeforeCommit(SQLiteShardStore):
    """A source whose mover, between steps 2 and 3, lets *conflict* write on the target."""

    conflict: Any = None

    def _commit(
        self, name: str, token: str, begun: list[str], state: MigrationState | None = None
    ) -> list[str]:
        conflict, self.conflict = self.conflict, None
        if conflict is not None:
            conflict()
        return super()._commit(name, token, begun, state)


def test_a_conflicting_row_written_after_staging_gives_the_key_back_to_its_source(
    tmp_path: Path,
) -> None:
    paths = two_files(tmp_path, ORDERS)
    source = ConflictBeforeCommit(paths["A"], {"orders": "user_id"})
    stores = {"A": source, "B": SQLiteShardStore(paths["B"], {"orders": "user_id"})}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    key, newcomer = moving(router, "u", 2)
    source.execute(key, [order, 5], name=router.name, state=None, source=True)
    router.start()
    source.conflict = lambda: router.execute(newcomer, order, 7)  # takes id 1 on B
    with pytest.raises(BackendError, match=rf"key {key!r}: UNIQUE constraint failed: orders\.id"):
        router.move()
    assert table_rows(paths["A"], "SELECT id, user_id, total FROM orders") == [(1, key, 5)]
    assert router.execute(key, order, 6) == 2  # served by its source, which holds it again
    assert router.execute(newcomer, orders_of) == [(1, 7)]
    assert table_rows(paths["B"], "SELECT * FROM scalekit_reshard_stage") == []
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("UPDATE orders SET id = id + 100")
    assert router.complete() is router.new
    assert router.execute(key, orders_of) == [(101, 5), (102, 6)]


@pytest.mark.parametrize("cancelled", ["forward", "reverse"])
def test_a_move_a_client_cancelled_lets_the_migration_finish_in_either_direction(
    tmp_path: Path, cancelled: str
) -> None:
    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    paths = two_files(tmp_path, "CREATE TABLE acct (user_id TEXT PRIMARY KEY, bal INT);")
    stores = {
        n: HookedTarget(p, {"acct": "user_id"}, move_timeout=0.2, clock=lambda: now[0], sleep=sleep)
        for n, p in paths.items()
    }
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    client = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    (key,) = moving(router, "u", 1)
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO acct VALUES (?, 10)", (key,))
    router.start()
    source, target = ("A", "B") if cancelled == "forward" else ("B", "A")
    if cancelled == "reverse":
        assert router.move() == 1
        router.rollback()
    replies: list[int] = []
    # The mover stops between steps 1 and 2 past move_timeout; a client cancels its move.
    stores[target].hook = lambda: replies.append(client.execute(key, bal_incr))
    assert stores[source].move([key], stores[target], name=router.name, state=router.state) == 0
    assert replies == [11] and stores[source].in_doubt(router.name) == [key]
    # Turn the other way and finish there: the cancelled record must not block it.
    if cancelled == "forward":
        router.rollback()
        assert router.complete() is router.old and router.phase == "aborted"
        assert table_rows(paths["A"], "SELECT * FROM acct") == [(key, 11)]
    else:
        router.resume()
        assert router.complete() is router.new and router.phase == "complete"
        assert table_rows(paths["B"], "SELECT * FROM acct") == [(key, 11)]
    for path in paths.values():
        assert table_rows(path, "SELECT * FROM scalekit_reshard_doubt") == []
    assert client.execute(key, bal_incr) == 12


def test_complete_refuses_to_finish_while_a_cancelled_key_is_still_on_its_source(
    tmp_path: Path,
) -> None:
    now = [100.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    paths = two_files(tmp_path, "CREATE TABLE acct (user_id TEXT PRIMARY KEY, bal INT);")
    stores = {n: SQLiteShardStore(p, {"acct": "user_id"}) for n, p in paths.items()}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    early, late = moving(router, "u", 2)
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO acct VALUES (?, 10)", (early,))
    router.start()
    # A second mover (another process's stores) and a client of its stores.
    others = {
        n: HookedTarget(p, {"acct": "user_id"}, move_timeout=0.2, clock=lambda: now[0], sleep=sleep)
        for n, p in paths.items()
    }
    second = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), others)
    second.refresh()
    replies: list[int] = []

    def race() -> None:
        # After this mover's last pass, a row of a moving key reaches the source
        # (written past the routers), and the second mover's move of it is
        # cancelled by a client of the second mover's stores.
        with sqlite3.connect(paths["A"]) as conn:
            conn.execute("INSERT INTO acct VALUES (?, 20)", (late,))
        others["B"].hook = lambda: replies.append(second.execute(late, bal_incr))
        assert others["A"].move([late], others["B"], name=second.name, state=second.state) == 0

    real_move = router.move
    raced: list[bool] = []

    def move_then_race(limit: int = 1000, *, batch: int = 100) -> int:
        moved = real_move(limit, batch=batch)
        if moved == 0 and not raced:
            raced.append(True)
            race()
        return moved

    router.move = move_then_race  # type: ignore[method-assign]
    with pytest.raises(RoutingError, match=rf"still on their source .*{late!r}") as caught:
        router.complete()
    assert caught.value.key == late and replies == [21] and router.phase == "forward"
    assert router.complete() is router.new  # the second call moves it
    assert table_rows(paths["B"], "SELECT * FROM acct ORDER BY user_id") == sorted(
        [(early, 10), (late, 21)]
    )
    assert table_rows(paths["A"], "SELECT * FROM scalekit_reshard_doubt") == []


class Watched(HookedTarget):
    """A store that notes, at each transaction it opens, the other stores' open ones."""

    peers: list[SQLiteShardStore]
    held: list[str]
    opened = 0

    def _transaction(self, operation: str) -> Any:
        self.opened += 1
        self.held += [
            f"{p.name} open at {self.name}" for p in self.peers if p._conn().in_transaction
        ]
        return super()._transaction(operation)


def test_no_transaction_is_held_across_a_wait_or_a_step_on_the_other_database(
    tmp_path: Path,
) -> None:
    now = [100.0]
    held: list[str] = []
    waits: list[float] = []
    stores: dict[str, Watched] = {}

    def sleep(seconds: float) -> None:
        held.extend(f"{s.name} open in a wait" for s in stores.values() if s._conn().in_transaction)
        waits.append(seconds)
        now[0] += seconds

    stores_at(tmp_path)
    for n in "AB":
        stores[n] = Watched(
            tmp_path / f"{n}.sqlite3",
            kv.TABLES,
            move_timeout=0.2,
            clock=lambda: now[0],
            sleep=sleep,
        )
    for store in stores.values():
        store.peers, store.held = list(stores.values()), held
    router = KVRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    keys = moving(router, "w", 20)
    router.plan()
    for key in keys:
        router.execute(key, "SET", "1")
    router.start()
    replies: list[int] = []
    # While the mover is between its steps, a client waits for it and cancels its move.
    stores["B"].hook = lambda: replies.append(
        router.execute(stores["A"].in_doubt(router.name)[0], "INCR")
    )
    router.move(limit=5)
    router.rollback()
    router.resume()
    assert router.complete() is router.new
    assert replies == [2] and sum(waits) >= 0.2
    assert held == [] and stores["A"].opened >= 10 and stores["B"].opened >= 10


def fk_stores(paths: dict[str, Path], tables: dict[str, str]) -> dict[str, SQLiteShardStore]:
    """Stores whose connections enforce foreign keys (`PRAGMA foreign_keys=ON`)."""

    def opener(path: Path) -> Any:
        local = threading.local()

        def connect() -> sqlite3.Connection:
            conn: sqlite3.Connection | None = getattr(local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(path, isolation_level=None)
                conn.execute("PRAGMA foreign_keys=ON")
                local.conn = conn
            return conn

        return connect

    return {n: SQLiteShardStore(opener(p), tables) for n, p in paths.items()}


@pytest.mark.parametrize(
    ("parent", "child"),
    [("users", "orders"), ("accounts", "txns")],
    ids=["child-sorts-first", "parent-sorts-first"],
)
def test_tables_linked_by_enforced_foreign_keys_move_parents_first_and_delete_children_first(
    tmp_path: Path, parent: str, child: str
) -> None:
    schema = (
        f"CREATE TABLE {parent} (uid TEXT PRIMARY KEY, n INTEGER);"
        f"CREATE TABLE {child} (id TEXT PRIMARY KEY,"
        f" uid TEXT REFERENCES {parent}(uid) ON DELETE CASCADE, amount INTEGER);"
    )
    paths = two_files(tmp_path, schema)
    stores = fk_stores(paths, {parent: "uid", child: "uid"})
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    keys = moving(router, "u", 3)
    with sqlite3.connect(paths["A"]) as conn:
        for key in keys:
            conn.execute(f"INSERT INTO {parent} VALUES (?, 1)", (key,))
            conn.execute(f"INSERT INTO {child} VALUES (?, ?, 5)", ("o" + key, key))
    router.start()
    assert router.complete() is router.new
    assert (
        table_rows(paths["A"], f"SELECT uid FROM {parent} UNION ALL SELECT uid FROM {child}") == []
    )
    assert sorted(table_rows(paths["B"], f"SELECT uid, amount FROM {child}")) == [
        (key, 5) for key in sorted(keys)
    ]
    assert sorted(r[0] for r in table_rows(paths["B"], f"SELECT uid FROM {parent}")) == sorted(keys)
    for path in paths.values():
        assert table_rows(path, "SELECT * FROM scalekit_reshard_doubt") == []
        assert table_rows(path, "SELECT * FROM scalekit_reshard_stage") == []


def test_a_row_whose_foreign_key_the_target_lacks_stays_on_its_source_and_says_which(
    tmp_path: Path,
) -> None:
    # The parent row belongs to another key (one that does not move): the
    # child cannot move without it, so its key stays, served, on the source.
    schema = (
        "CREATE TABLE users (uid TEXT PRIMARY KEY);"
        "CREATE TABLE orders (id TEXT PRIMARY KEY, uid TEXT, payer TEXT REFERENCES users(uid));"
    )
    paths = two_files(tmp_path, schema)
    stores = fk_stores(paths, {"users": "uid", "orders": "uid"})
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    (key,) = moving(router, "u", 1)
    payer = next(f"p{i}" for i in range(1000) if not router.moves(f"p{i}"))
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO users VALUES (?)", (payer,))
        conn.execute("INSERT INTO orders VALUES ('o1', ?, ?)", (key, payer))
    router.start()
    with pytest.raises(BackendError, match=rf"key {key!r}: FOREIGN KEY constraint failed.*orders"):
        router.complete()
    assert table_rows(paths["A"], "SELECT uid FROM orders") == [(key,)]
    for path in paths.values():
        assert table_rows(path, "SELECT * FROM scalekit_reshard_doubt") == []
    with pytest.raises(BackendError, match="a row it references must move with it") as caught:
        router.complete()
    assert "must be unique across all shards" not in str(caught.value)


def test_a_moving_row_another_key_references_is_a_clear_error_and_nothing_waits(
    tmp_path: Path,
) -> None:
    schema = (
        "CREATE TABLE users (uid TEXT PRIMARY KEY);"
        "CREATE TABLE orders (id TEXT PRIMARY KEY, uid TEXT, payer TEXT REFERENCES users(uid));"
    )
    paths = two_files(tmp_path, schema)
    stores = fk_stores(paths, {"users": "uid", "orders": "uid"})
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    (key,) = moving(router, "u", 1)
    buyer = next(f"p{i}" for i in range(1000) if not router.moves(f"p{i}"))
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO users VALUES (?)", (key,))
        conn.execute("INSERT INTO orders VALUES ('o1', ?, ?)", (buyer, key))
    router.start()
    with pytest.raises(BackendError, match=rf"moving key {key!r} from table users \(FOREIGN KEY"):
        router.complete()
    assert table_rows(paths["A"], "SELECT uid FROM users") == [(key,)]
    assert table_rows(paths["A"], "SELECT * FROM scalekit_reshard_doubt") == []  # no writer waits
    assert router.execute(
        key, lambda c, k: c.execute("SELECT 1 FROM users WHERE uid = ?", (k,)).fetchone()
    ) == (1,)


def test_generated_columns_are_computed_again_on_the_target_not_copied(tmp_path: Path) -> None:
    schema = (
        "CREATE TABLE items (k TEXT, price INTEGER, qty INTEGER,"
        " total INTEGER GENERATED ALWAYS AS (price * qty) STORED,"
        " half REAL GENERATED ALWAYS AS (price / 2.0) VIRTUAL)"
    )
    paths = two_files(tmp_path, schema)
    stores = {n: SQLiteShardStore(p, {"items": "k"}) for n, p in paths.items()}
    router = MigratingRouter(HashRouter(["A"]), HashRouter(["A", "B"]), stores)
    (key,) = moving(router, "k", 1)
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO items (k, price, qty) VALUES (?, 3, 4)", (key,))
    router.start()
    assert router.complete() is router.new
    assert table_rows(paths["B"], "SELECT k, price, qty, total, half FROM items") == [
        (key, 3, 4, 12, 1.5)
    ]
    assert table_rows(paths["A"], "SELECT * FROM items") == []


def test_int_keys_of_a_real_key_column_scan_as_int_and_move(tmp_path: Path) -> None:
    # SQLite stores 7 in a REAL column as 7.0; the scan gives the key back as 7.
    paths = two_files(tmp_path, "CREATE TABLE m (k REAL, v INTEGER)")
    stores = {n: SQLiteShardStore(p, {"m": "k"}) for n, p in paths.items()}
    router: MigratingRouter[str] = MigratingRouter(
        HashRouter(["A"]), HashRouter(["A", "B"]), stores
    )
    keys = [k for k in range(50) if router.moves(k)][:3]
    for key in keys:
        stores["A"].execute(
            key,
            [lambda c, k: c.execute("INSERT INTO m VALUES (?, 1)", (k,))],
            name=router.name,
            state=None,
            source=True,
        )
    assert stores["A"].scan(0, 10) == (0, keys)
    router.start()
    assert router.complete() is router.new
    assert table_rows(paths["B"], "SELECT k FROM m ORDER BY k") == [(float(k),) for k in keys]


def test_a_fractional_key_in_a_key_column_is_a_clear_error(tmp_path: Path) -> None:
    paths = two_files(tmp_path, "CREATE TABLE m (k REAL, v INTEGER)")
    with sqlite3.connect(paths["A"]) as conn:
        conn.execute("INSERT INTO m VALUES (2.5, 1)")
    store = SQLiteShardStore(paths["A"], {"m": "k"})
    with pytest.raises(ArgumentTypeError, match=r"m\.k holds 2\.5.*str or int"):
        store.scan(0, 10)


def test_key_columns_of_text_and_numeric_type_for_one_key_are_refused_naming_both(
    tmp_path: Path,
) -> None:
    # No key could be spelled for both: 7 is refused by carts, "7" by users.
    paths = two_files(
        tmp_path,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE carts (user_id TEXT, sku TEXT);",
    )
    tables = {"users": "id", "carts": "user_id"}
    with pytest.raises(ConfigurationError, match=r"carts\.user_id \(TEXT\).*users\.id \(INTEGER\)"):
        SQLiteShardStore(paths["A"], tables)
    # A table created later is checked when the store first sees it.
    with sqlite3.connect(paths["B"]) as conn:
        conn.execute("DROP TABLE carts")
    store = SQLiteShardStore(paths["B"], tables)
    with sqlite3.connect(paths["B"]) as conn:
        conn.execute("CREATE TABLE carts (user_id TEXT, sku TEXT)")
    with pytest.raises(ConfigurationError, match=r"carts\.user_id \(TEXT\).*users\.id"):
        store.scan(0, 10)


@pytest.mark.parametrize(
    "schema",
    [
        "CREATE TABLE kv (k TEXT COLLATE NOCASE PRIMARY KEY, v INTEGER)",
        "CREATE TABLE kv (k TEXT COLLATE RTRIM, v INTEGER)",
        'CREATE TABLE kv (v INTEGER, "k" VARCHAR(20) NOT NULL COLLATE nocase)',
    ],
    ids=["column-nocase", "column-rtrim", "quoted-column-nocase"],
)
def test_a_key_column_with_a_non_binary_collation_is_refused(tmp_path: Path, schema: str) -> None:
    # SQLite would take 'user6' and 'USER6' as one row, routed as two keys.
    paths = two_files(tmp_path, schema)
    with pytest.raises(ConfigurationError, match=r"(?i)kv\.k .*COLLATE (NOCASE|RTRIM).*BINARY"):
        SQLiteShardStore(paths["A"], {"kv": "k"})


def _big(conn: sqlite3.Connection, key: str, size: int) -> bool:
    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, "x" * size))
    return True


def test_a_full_database_is_a_backend_error_naming_the_operation(tmp_path: Path) -> None:
    # SQLite's own limit on the file's pages, a real SQLITE_FULL: a write that
    # needs more pages fails the way a full disk fails it.
    path = tmp_path / "A.sqlite3"
    kv.connect(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    store = SQLiteShardStore(lambda: conn, kv.TABLES)
    assert store.execute("a", [kv.set_, "1"], name="m", state=None, source=False) is True
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    with pytest.raises(BackendError, match=r"execute failed: database or disk is full") as info:
        store.execute("b", [_big, 1_000_000], name="m", state=None, source=False)
    assert not isinstance(info.value, BackendUnavailableError)  # retrying will not help
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert not conn.in_transaction  # rolled back, and the store goes on working
    assert store.execute("b", [kv.get], name="m", state=None, source=False) is None
    assert store.execute("c", [kv.set_, "3"], name="m", state=None, source=False) is True
    with pytest.raises(BackendError, match=r"write_state failed: database or disk is full"):
        store.write_state("m" * 1_000_000, MigrationState(1, "planned"))  # a name too large
    assert store.read_state("m" * 1_000_000) is None


def test_a_locked_database_is_unavailable_naming_the_operation(tmp_path: Path) -> None:
    # Another connection holds the rollback journal's exclusive lock: every
    # read and write waits the busy timeout, then fails naming what it did.
    path = tmp_path / "A.sqlite3"
    kv.connect(path).close()
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=DELETE")
    setup.close()
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.2)
    store = SQLiteShardStore(lambda: conn, kv.TABLES)
    assert store.execute("a", [kv.set_, "1"], name="m", state=None, source=False) is True
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for operation, call in [
            ("execute", lambda: store.execute("a", [kv.get], name="m", state=None, source=False)),
            ("read_state", lambda: store.read_state("m")),
            ("in_doubt", lambda: store.in_doubt("m")),
            ("scan", lambda: store.scan(0, 10)),
            ("write_state", lambda: store.write_state("m", None)),
        ]:
            started = time.monotonic()
            with pytest.raises(
                BackendUnavailableError, match=rf"sqlite .*: {operation} failed: database is locked"
            ):
                call()
            assert time.monotonic() - started <= 0.2 + 0.5  # the busy timeout and a margin
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.execute("a", [kv.get], name="m", state=None, source=False) == "1"


def test_a_read_only_database_refuses_writes_with_a_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "A.sqlite3"
    kv.connect(path).close()
    SQLiteShardStore(path, kv.TABLES).read_state("m")  # its record tables exist
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    store = SQLiteShardStore(lambda: conn, kv.TABLES)
    assert store.read_state("m") is None  # reads work
    with pytest.raises(BackendError, match=r"write_state failed: attempt to write a readonly") as e:
        store.write_state("m", None)
    assert not isinstance(e.value, BackendUnavailableError)


def _full(conn: sqlite3.Connection) -> None:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own limit: SQLITE_FULL


def test_a_store_built_from_a_callable_names_its_database_file(tmp_path: Path) -> None:
    # With several shards, "sqlite <lambda>: ... full" would not say which one is full.
    path = tmp_path / "shard3.sqlite3"
    kv.connect(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    store = SQLiteShardStore(lambda: conn, kv.TABLES)
    store.execute("k", [kv.set_, "v"], name="m", state=None, source=False)
    assert store.name == str(path)
    _full(conn)
    with pytest.raises(BackendError, match=rf"sqlite {re.escape(str(path))}: execute failed: "):
        store.execute("k2", [kv.set_, "v" * 100_000], name="m", state=None, source=False)


def test_a_store_takes_the_name_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    kv.connect(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    store = SQLiteShardStore(lambda: conn, kv.TABLES, name="shard 3")
    _full(conn)
    with pytest.raises(BackendError, match=r"sqlite shard 3: execute failed: "):
        store.execute("k2", [kv.set_, "v" * 100_000], name="m", state=None, source=False)
    with pytest.raises(ConfigurationError, match="name must be a non-empty str"):
        SQLiteShardStore(path, kv.TABLES, name="")


def test_a_missing_database_is_one_the_store_cannot_open(tmp_path: Path) -> None:
    # The store never creates a database: an empty new file would then fail
    # with "no such table", and a restarted process would lose what it had.
    path = tmp_path / "gone.sqlite3"
    store = SQLiteShardStore(path, kv.TABLES)
    with pytest.raises(
        BackendUnavailableError,
        match=rf"sqlite {re.escape(str(path))}: execute failed: unable to open database file",
    ):
        store.execute("x", [kv.get], name="m", state=None, source=False)
    assert not path.exists()


def test_a_deleted_database_does_not_acknowledge_writes(tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    kv.connect(path).close()
    store = SQLiteShardStore(path, kv.TABLES)
    assert store.execute("x", [kv.set_, "1"], name="m", state=None, source=False)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    with pytest.raises(BackendUnavailableError, match=r"deleted or replaced"):
        store.execute("y", [kv.set_, "2"], name="m", state=None, source=False)
    with pytest.raises(BackendUnavailableError, match="unable to open database file"):
        SQLiteShardStore(path, kv.TABLES).execute("y", [kv.get], name="m", state=None, source=False)
