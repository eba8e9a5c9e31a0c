"""Adding a user shard while buyers run, through `scalekit.sharding.MigratingRouter`.

With ``--add-shard-at SECONDS`` the shop has one more SQLite shard than
``--shards``, empty at first. Every process routes users through a
`MigratingRouter` from the old placement (jump hash over ``--shards``
shards) to the new one (over all of them), each shard a
`SQLiteShardStore` whose key is the user id: a user's row, cart,
checkouts and orders move together, in the store's transactions.

* `prepare` records the migration as *planned* on every shard before any
  worker starts: every process serves every user from the old placement.
* At ``SECONDS`` into the load, `ShardAdder` (a thread of the main
  process) starts the migration and moves the users that the new
  placement gives the new shard, then completes it; buyers keep
  checking out meanwhile, each command on the one shard that holds the
  user at that instant.

A data directory that has grown once keeps its recorded migration: run it
again with ``--shards`` one higher and without ``--add-shard-at``. A run
stopped in the middle of the move (``kill -9``, a crash) leaves it
*forward*: some users on the new shard, some not yet. No placement serves
them all but the migration's own, so the shop refuses every run of that
directory except the one that carries the move on, and names it
(`recorded_phase`, ``runner._check_shards``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scalekit import ConfigurationError
from scalekit.sharding import HashRouter, MigratingRouter, MigrationState
from scalekit.sharding.sqlite_store import SQLiteShardStore

from .db import Database
from .storage import _SHARD_SCHEMA

if TYPE_CHECKING:
    from .storage import ShopStorage

#: The migration's name, recorded in every shard.
MIGRATION = "shop-add-shard"
#: Every table whose rows belong to one user, by the column naming the user.
TABLES = {"users": "user_id", "carts": "user_id", "checkouts": "user_id", "orders_*": "user_id"}


def recorded_phase(directory: Path, shards: int) -> str | None:
    """The phase of the migration recorded in the first *shards* shards of *directory*.

    The newest record wins (a killed run may have recorded a change on some
    shards only); None when no shard records one.
    """
    newest: MigrationState | None = None
    for i in range(shards):
        uri = f"{(directory / f'shard{i}.sqlite3').resolve().as_uri()}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        except sqlite3.OperationalError:
            continue
        try:
            row = conn.execute(
                "SELECT state FROM scalekit_reshard_state WHERE name = ?", (MIGRATION,)
            ).fetchone()
        except sqlite3.OperationalError:  # no record table: never part of a migration
            row = None
        finally:
            conn.close()
        state = MigrationState.decode(None if row is None else row[0])
        if state is not None and (newest is None or state.epoch > newest.epoch):
            newest = state
    return None if newest is None else newest.phase


def attach(storage: ShopStorage, shards: int) -> MigratingRouter[str]:
    """Give *storage* one shard more than *shards* and route its users through the migration."""
    name = f"shard{shards}"
    if name not in storage.shards:
        db = Database(storage.directory / f"{name}.sqlite3", storage.busy_timeout)
        storage.shards[name] = db
        storage.shard_names.append(name)
        db.connection().executescript(_SHARD_SCHEMA)
    stores = {
        shard: SQLiteShardStore(db.connection, TABLES, move_timeout=2.0, name=str(db.path))
        for shard, db in storage.shards.items()
    }
    old = HashRouter(storage.shard_names[:shards], strategy="jump")
    new = HashRouter(storage.shard_names, strategy="jump")
    migration = MigratingRouter(old, new, stores, name=MIGRATION, timeout=30.0)
    storage.migration = migration
    return migration


def plan(migration: MigratingRouter[str]) -> None:
    """Record the migration as planned, or carry on with one a killed run left moving.

    Raises:
        ConfigurationError: this data directory has grown already.
    """
    try:
        migration.plan()
    except ConfigurationError:
        try:
            migration.start()  # moving: a run that stopped mid-way; carry on
        except ConfigurationError:
            grown = len(_shards(migration))
            raise ConfigurationError(
                f"this data directory has {grown} shards already "
                f"(migration {MIGRATION!r} is finished): run it with "
                f"--shards {grown} and without --add-shard-at"
            ) from None


def _shards(migration: MigratingRouter[str]) -> list[str]:
    assert isinstance(migration.new, HashRouter)
    return list(migration.new.shards)


class ShardAdder(threading.Thread):
    """At *at* seconds into the load, move the new shard's users to it while buyers run.

    The load begins when *load_started* (an event a worker sets) is set.
    """

    def __init__(
        self,
        migration: MigratingRouter[str],
        at: float,
        load_started: Any,
        batch: int = 20,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(name="shop-shard-adder", daemon=True)
        self.migration = migration
        self.at = at
        self.load_started = load_started
        self.startup_timeout = startup_timeout
        self.batch = batch
        self.moved = 0
        self.seconds = 0.0
        self.window = (0.0, 0.0)  # wall-clock start and end of the moves
        self.error: BaseException | None = None
        self._begin = threading.Event()

    def run(self) -> None:
        if not self.load_started.wait(self.startup_timeout):
            self.error = TimeoutError(f"no worker began its load in {self.startup_timeout:g}s")
            return
        self._begin.wait(self.at)  # the scheduled moment (nothing sets it earlier)
        started, wall = time.monotonic(), time.time()
        try:
            if self.migration.phase in (None, "planned"):
                self.migration.start()
            while n := self.migration.move(limit=self.batch, batch=self.batch):
                self.moved += n
            self.migration.complete()
        except BaseException as exc:  # reported in the summary
            self.error = exc
        self.seconds = time.monotonic() - started
        self.window = (wall, wall + self.seconds)

    def describe(self) -> str:
        if self.error is not None:
            return f"adding a shard failed: {type(self.error).__name__}: {self.error}"
        return (
            f"{_shards(self.migration)[-1]} added at {self.at:g}s: {self.moved} users moved "
            f"to it in {self.seconds:.2f}s while buyers ran (migration {self.migration.phase})"
        )
