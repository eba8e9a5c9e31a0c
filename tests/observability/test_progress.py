"""Migration progress over SQLite shard stores: it only moves forward during a move."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from scalekit.observability import MemoryRecorder, Telemetry, watch_migration
from scalekit.sharding import HashRouter, MigratingRouter, SQLiteShardStore

PROGRESS = "scalekit_migration_progress_ratio"


def _ratio(hub: Telemetry) -> float:
    (value,) = [s.value for s in hub.collect() if s.metric == PROGRESS]
    return value


class _Gate:
    """The mover's lock, telling the test when a second thread waits for it."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.contended = threading.Event()

    def __enter__(self) -> _Gate:
        if not self.lock.acquire(blocking=False):
            self.contended.set()
            self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _sqlite_migration(tmp_path: Path, keys: int) -> MigratingRouter[str]:
    stores = {}
    for name in "ABC":
        path = tmp_path / f"{name}.sqlite3"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE users (id TEXT PRIMARY KEY, v TEXT)")
        stores[name] = SQLiteShardStore(path, {"users": "id"})
    old, new = HashRouter(["A", "B"]), HashRouter(["A", "B", "C"])
    for i in range(keys):
        key = f"u{i}"
        with sqlite3.connect(tmp_path / f"{old.route(key)}.sqlite3") as conn:
            conn.execute("INSERT INTO users VALUES (?, 'x')", (key,))
    return MigratingRouter(old, new, stores, name="grow")


def test_progress_never_falls_back_while_complete_records_the_end(tmp_path: Path) -> None:
    # A scrape that read the phase (forward) just before complete() cleared the
    # scan's cursors read the cleared cursors as "nothing scanned": 1.0 fell to 0.0.
    migration = _sqlite_migration(tmp_path, keys=80)
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    watch_migration(migration, "grow", telemetry=hub)
    migration.start()
    seen = [_ratio(hub)]
    while migration.move(limit=20, batch=20):
        seen.append(_ratio(hub))
    seen.append(_ratio(hub))
    assert seen[-1] == 1.0
    assert seen == sorted(seen), seen  # never backwards during the move

    gate = _Gate(migration._mover_lock)
    migration._mover_lock = gate  # type: ignore[assignment]
    recording, go = threading.Event(), threading.Event()
    store = migration._stores["A"]
    write_state = store.write_state

    def slow_write(*args: Any, **kwargs: Any) -> Any:
        recording.set()  # complete() holds the mover's lock, the phase still forward
        assert go.wait(10)
        return write_state(*args, **kwargs)

    store.write_state = slow_write  # type: ignore[method-assign]
    mover = threading.Thread(target=migration.complete)
    mover.start()
    try:
        assert recording.wait(10)
        scraped: list[float] = []
        scraper = threading.Thread(target=lambda: scraped.append(_ratio(hub)))
        scraper.start()
        assert gate.contended.wait(10)  # the scrape waits for the mover's lock
    finally:
        go.set()
        mover.join(10)
    scraper.join(10)
    assert migration.phase == "complete"
    assert scraped == [1.0]


def test_a_scan_begun_again_in_the_same_state_does_not_lower_progress(tmp_path: Path) -> None:
    # A refused move step clears the mover's cursors without a new state (its
    # scan begins again, with less left to move): the ratio keeps its mark.
    migration = _sqlite_migration(tmp_path, keys=80)
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    watch_migration(migration, "grow", telemetry=hub)
    migration.start()
    while _ratio(hub) < 0.5:
        assert migration.move(limit=5, batch=5)
    assert _ratio(hub) == 0.5  # one of the two SQLite sources scanned
    with migration._mover_lock:
        migration._cursors.clear()
        migration._pending.clear()
    assert _ratio(hub) == 0.5
    while migration.move(limit=50, batch=50):
        pass
    assert _ratio(hub) == 1.0
    migration.rollback()  # a new direction starts from 0
    assert _ratio(hub) == 0.0
