"""A SQLite database as one shard of a live resharding (the standard library's `sqlite3`).

The key of a move is a value of a *key column*: every row of the configured
tables whose key column holds it moves with it (a user and their cart,
orders and checkouts, say), and every command runs in one transaction on
the store that serves the key.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

from ..exceptions import (
    ArgumentTypeError,
    BackendError,
    BackendUnavailableError,
    ConfigurationError,
    KeyAbsentError,
    KeyInDoubtError,
    StaleStateError,
)
from .shard_store import MigrationState, ShardStore

__all__ = ["SQLiteShardStore"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Text SQLite turns into a number when a column of numeric affinity compares
# or stores it (a well-formed integer or real literal, spaces around allowed).
_NUMERIC_TEXT = re.compile(
    r"^[ \t\n\f\r]*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[ \t\n\f\r]*$", re.ASCII
)


def _affinity(declared: str) -> str:
    """The affinity SQLite gives a column of *declared* type (its documented five rules)."""
    upper = declared.upper()
    if "INT" in upper:
        return "INTEGER"
    if "CHAR" in upper or "CLOB" in upper or "TEXT" in upper:
        return "TEXT"
    if not upper or "BLOB" in upper:
        return "BLOB"
    if "REAL" in upper or "FLOA" in upper or "DOUB" in upper:
        return "REAL"
    return "NUMERIC"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


#: SQLite's result codes for a database that cannot be used now but may be
#: again (another connection's lock, an I/O error, a file it cannot open):
#: `BackendUnavailableError`. Any other error of the database (full, read-only,
#: corrupt, an SQL error) is a `BackendError`.
_UNAVAILABLE_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN")
_UNAVAILABLE_TEXT = (
    "database is locked",
    "database table is locked",
    "disk I/O error",
    "unable to open database file",
)
#: The driver's errors that are the caller's to handle, passed through as they are.
_OWN = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def backend_error(store: str, operation: str, exc: sqlite3.Error) -> BackendError:
    """The scalekit error for SQLite's *exc* during *operation* on the database *store*.

    `BackendUnavailableError` for a lock held too long (`SQLITE_BUSY`,
    `SQLITE_LOCKED`), an I/O error or a file SQLite cannot open, else
    `BackendError`; the message names the database, the operation, SQLite's
    message and its result code (Python >= 3.11).
    """
    code = getattr(exc, "sqlite_errorname", None)
    text = str(exc)
    if code is not None:
        transient = code.startswith(_UNAVAILABLE_CODES)
    else:
        transient = any(part in text for part in _UNAVAILABLE_TEXT)
    cls = BackendUnavailableError if transient else BackendError
    return cls(f"sqlite {store}: {operation} failed: {text}" + (f" ({code})" if code else ""))


class _FileGone(BackendUnavailableError):
    """A path store's database file is no longer the one its connection has open."""


def _identity(path: Path) -> tuple[int, int] | None:
    """The (device, inode) of *path*, or None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"blob": value.hex()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["blob"])
    return value


class SQLiteShardStore(ShardStore):
    """One SQLite database as a [ShardStore][scalekit.sharding.shard_store.ShardStore].

    A command is a callable, run as `command(connection, key, *args)`
    inside one `BEGIN IMMEDIATE` transaction that first checks the
    migration's state, that the key's move is not in doubt and (on a
    source) that the key has a row in one of the tables; its return value
    is the reply. It must touch only the rows of its key.

    A batch of keys moves in five transactions, each atomic on one database,
    with the same records as [RedisShardStore][scalekit.sharding.redis_store.RedisShardStore]:

    1. source: record the keys *in doubt* under a fresh token and read their rows;
    2. target: write the rows to a staging table (never served);
    3. source: for each key still recorded under that token, delete its
       rows and mark the record *moved*: this is the commit point;
    4. target: the staged rows of moved keys become the key's rows;
    5. source: the records are cleared.

    A command that meets a key in doubt settles it: a moved key's staged
    rows are promoted (steps 4 and 5, which are idempotent); a key whose
    move has not reached step 3 waits up to *move_timeout* for the mover
    and then cancels the move (the record goes, the rows never left the
    source), after which step 3 of that mover finds no record and moves
    nothing. The timeout decides only how long a client waits for a mover
    that died or stopped; safety never depends on it, nor on clocks.

    A key's rows are tried on the target before step 3; a key whose rows
    the target refuses (a `UNIQUE` value another key holds there, such as
    a per-database `AUTOINCREMENT` id: unique values must be unique across
    all shards) stays on the source, served there, and `move` raises
    `BackendError` naming it and the constraint after moving the rest. A
    conflict that appears after that check gives the key its rows back
    here at step 4.

    Keys are `str` or `int` values of the key columns, of the column's
    type: an `int` for a `TEXT` key column, or a number spelled as `str`
    for a numeric one, is refused with `ArgumentTypeError` (SQLite would
    read both spellings as the same rows, the doubt record would not).
    Rows hold SQLite's own types. A table missing on the target is created from the source's
    `CREATE TABLE` statement (indexes are not copied). Tables whose name
    starts with *prefix* hold the records and are reserved.

    Args:
        database: a path to an existing database file (the store never
            creates one: a missing file is `BackendUnavailableError`, "unable
            to open database file"), or a callable returning this thread's
            `sqlite3.Connection` in autocommit mode (`isolation_level=None`).
        tables: table name -> key column, for every table whose rows move
            with their key; a name ending in `*` stands for every table
            with that prefix (`{"orders_*": "user_id"}`).
        move_timeout: seconds a command waits for a mover's step 3 before
            cancelling its move.
        busy_timeout: seconds a transaction waits for another one's write
            lock (a path's own connections; a callable sets its own), after
            which the call fails with `BackendUnavailableError`.
        prefix: the reserved prefix of the record tables.
        clock: wall-clock seconds (records are shared between processes).
        sleep: how to wait while a move is in flight.
        name: how errors name the database; by default the path, or for a
            callable the file its first connection has open (`PRAGMA
            database_list`; the callable's name until then).

    Raises:
        ConfigurationError: an empty *tables*, a bad name, timeout or prefix.

    Every method turns SQLite's errors into `BackendUnavailableError` (a lock
    held past *busy_timeout*, an I/O error, a file it cannot open: a retry
    may succeed) or `BackendError` (a full disk, a read-only or corrupt
    database, an SQL error: it will not), naming the database, the
    operation and SQLite's result code; a command's own `IntegrityError`
    and `ProgrammingError` pass through. A path store checks before each
    commit that the path is still the file its connection opened: SQLite
    would go on writing into a deleted file, acknowledging writes that are
    lost, so the transaction is rolled back with `BackendUnavailableError`
    ("deleted or replaced") and the next call opens the path again. Reads
    outside a transaction are not checked.

    Thread-safety: one connection per thread (the callable's, or the
    store's own for a path); processes share the file as SQLite allows.
    """

    def __init__(
        self,
        database: str | Path | Callable[[], sqlite3.Connection],
        tables: Mapping[str, str],
        *,
        move_timeout: float = 2.0,
        busy_timeout: float = 5.0,
        prefix: str = "scalekit_reshard_",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        name: str | None = None,
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"name must be a non-empty str or None, got {name!r}")
        if not isinstance(tables, Mapping) or not tables:
            raise ConfigurationError(
                f"tables must be a non-empty mapping table -> key column, got {tables!r}"
            )
        for table, column in tables.items():
            if not isinstance(table, str) or not _NAME.match(table.removesuffix("*")):
                raise ConfigurationError(
                    f"tables: {table!r} is not a table name (letters, digits and _, "
                    "optionally ending in *)"
                )
            if not isinstance(column, str) or not _NAME.match(column):
                raise ConfigurationError(f"tables: {column!r} is not a column name for {table!r}")
        if not isinstance(prefix, str) or not _NAME.match(prefix):
            raise ConfigurationError(
                f"prefix must be a table-name prefix (letters, digits and _), got {prefix!r}"
            )
        if any(t.startswith(prefix) for t in tables):
            raise ConfigurationError(f"tables must not start with the reserved prefix {prefix!r}")
        if (
            isinstance(move_timeout, bool)
            or not isinstance(move_timeout, (int, float))
            or not move_timeout > 0
        ):
            raise ConfigurationError(
                f"move_timeout must be a positive number of seconds, got {move_timeout!r}"
            )
        if (
            isinstance(busy_timeout, bool)
            or not isinstance(busy_timeout, (int, float))
            or not busy_timeout > 0
        ):
            raise ConfigurationError(
                f"busy_timeout must be a positive number of seconds, got {busy_timeout!r}"
            )
        self._path: Path | None = None
        self._local = threading.local()
        self._named = name is not None
        if isinstance(database, (str, Path)):
            path = self._path = Path(database)
            # mode=rw: never create the database (an empty new file would fail
            # later with "no such table", and what was written would be gone).
            uri = path.absolute().as_uri() + "?mode=rw"

            def connect() -> sqlite3.Connection:
                conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
                if conn is None:
                    conn = sqlite3.connect(
                        uri, timeout=busy_timeout, isolation_level=None, uri=True
                    )
                    try:
                        conn.execute("PRAGMA journal_mode=WAL")
                        self._local.file = _identity(path)
                    except BaseException:
                        conn.close()
                        raise
                    self._local.conn = conn
                return conn

            self._connect = connect
            self.name = name if name is not None else str(path)
        elif callable(database):
            self._connect = database
            # Until the first connection tells its file (PRAGMA database_list).
            self.name = (
                name if name is not None else getattr(database, "__qualname__", repr(database))
            )
        else:
            raise ConfigurationError(
                "database must be a path or a callable returning a sqlite3.Connection, "
                f"got {type(database).__name__}"
            )
        self._tables = dict(tables)
        self._prefix = prefix
        self._timeout = float(move_timeout)
        self._clock = clock
        self._sleep = sleep
        self._state_t = _quote(prefix + "state")
        self._doubt_t = _quote(prefix + "doubt")
        self._stage_t = _quote(prefix + "stage")
        self._ready: set[int] = set()
        self._affinities: dict[tuple[str, str], str] = {}  # (table, key column) -> affinity
        self._marks: dict[int, Any] = {}  # scan cursor -> the last key it returned
        self._marks_lock = threading.Lock()
        self._schemas: set[tuple[tuple[str, str], ...]] = set()  # table sets checked
        if isinstance(database, (str, Path)) and Path(database).exists():
            try:
                with closing(sqlite3.connect(database, timeout=busy_timeout)) as conn:
                    self._data_tables(conn)  # refuse a schema no key can use, now
            except sqlite3.Error:
                pass  # checked again at first use, when the database answers

    # -- plumbing --------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = self._connect()
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigurationError(
                f"database() must return a sqlite3.Connection, got {type(conn).__name__}"
            )
        if conn.isolation_level is not None:
            raise ConfigurationError(
                "the connection must be in autocommit mode (isolation_level=None): "
                "the store opens its own transactions"
            )
        if id(conn) not in self._ready:
            conn.executescript(
                f"CREATE TABLE IF NOT EXISTS {self._state_t} ("
                " name TEXT PRIMARY KEY, state TEXT NOT NULL);"
                f"CREATE TABLE IF NOT EXISTS {self._doubt_t} ("
                " name TEXT NOT NULL, key TEXT NOT NULL, token TEXT NOT NULL,"
                " moved INTEGER NOT NULL, deadline REAL NOT NULL, PRIMARY KEY (name, key));"
                f"CREATE TABLE IF NOT EXISTS {self._stage_t} ("
                " name TEXT NOT NULL, token TEXT NOT NULL, key TEXT NOT NULL,"
                " tbl TEXT NOT NULL, ddl TEXT NOT NULL, cols TEXT NOT NULL, row TEXT NOT NULL);"
            )
            self._ready.add(id(conn))
            if not self._named:
                self._named = True
                for _, schema, file in conn.execute("PRAGMA database_list").fetchall():
                    if schema == "main" and file:
                        self.name = str(file)
        return conn

    def _check_file(self, conn: sqlite3.Connection) -> None:
        """Refuse to commit into a path's database file that was deleted or replaced.

        SQLite keeps writing into an unlinked file through the open
        connection, so the commit would be acknowledged and lost. The
        thread's connection is dropped: the next call opens the path again
        (and cannot, if it is gone).
        """
        if self._path is None or getattr(self._local, "conn", None) is not conn:
            return
        if _identity(self._path) != getattr(self._local, "file", None):
            self._local.conn = None
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            conn.close()
            raise _FileGone(
                "the database file was deleted or replaced since it was opened; "
                "nothing of this transaction was committed"
            )

    def _error(self, operation: str, exc: sqlite3.Error) -> BackendError:
        return backend_error(self.name, operation, exc)

    @contextmanager
    def _transaction(self, operation: str) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception.

        SQLite's errors (`sqlite3.DatabaseError` but the caller's own
        `IntegrityError` and `ProgrammingError`) become `backend_error`s
        naming *operation*. A statement SQLite has already rolled back the
        transaction for (a full disk, an I/O error) raises that error, not
        the `ROLLBACK`'s "no transaction is active".
        """
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise self._error(operation, exc) from exc
        try:
            yield conn
            self._check_file(conn)
            conn.execute("COMMIT")
        except _FileGone as exc:
            raise BackendUnavailableError(
                f"sqlite {self.name}: {operation} failed: {exc}"
            ) from None
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):  # the error below says what went wrong
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _OWN):
                raise self._error(operation, exc) from exc
            raise

    @staticmethod
    def _key_text(key: Any) -> str:
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise ArgumentTypeError(
                f"key must be a str or int value of the key columns, got {type(key).__name__}: "
                f"{key!r}"
            )
        return json.dumps(key)

    def _data_tables(self, conn: sqlite3.Connection) -> list[tuple[str, str]]:
        """(table, key column) of every existing table whose rows move with their key."""
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith(self._prefix)
        ]
        found = []
        for name in names:
            for table, column in self._tables.items():
                if name == table or (table.endswith("*") and name.startswith(table[:-1])):
                    found.append((name, column))
                    break
        ordered = self._parents_first(conn, sorted(found))
        checked = tuple(ordered)
        if checked not in self._schemas:
            self._check_schema(conn, ordered)
            self._schemas.add(checked)
        return ordered

    def _check_schema(self, conn: sqlite3.Connection, tables: list[tuple[str, str]]) -> None:
        """Refuse key columns that would let SQLite and the doubt records disagree on a key.

        Raises:
            ConfigurationError: a key column with a collation other than
                `BINARY` (`'a'` and `'A'` one row to SQLite, two keys to
                the routers), or `TEXT` key columns beside numeric ones (no
                key could be spelled for both).
        """
        kinds: dict[str, list[str]] = {}
        for table, column in tables:
            declared = ""
            for row in conn.execute(f"PRAGMA table_info({_quote(table)})"):
                if row[1] == column:
                    declared = row[2] or ""
            affinity = _affinity(declared)
            self._affinities[table, column] = affinity
            if affinity in ("TEXT", "INTEGER", "REAL", "NUMERIC"):
                kind = "TEXT" if affinity == "TEXT" else "numeric"
                kinds.setdefault(kind, []).append(f"{table}.{column} ({affinity})")
            collation = self._collation(conn, table, column)
            if collation != "BINARY":
                raise ConfigurationError(
                    f"tables: key column {table}.{column} has COLLATE {collation}: SQLite "
                    "would read keys the routers tell apart (such as 'a' and 'A') as one "
                    "row, stored on two shards; a key column must compare with BINARY, the "
                    "default collation"
                )
        if len(kinds) == 2:
            raise ConfigurationError(
                f"tables: the key columns {', '.join(kinds['TEXT'])} and "
                f"{', '.join(kinds['numeric'])} hold one key with TEXT and numeric types; "
                "no key is the same value of both (7 is refused by the TEXT column, '7' by "
                "the numeric one): declare them with the same type"
            )

    @staticmethod
    def _collation(conn: sqlite3.Connection, table: str, column: str) -> str:
        """The collation *column* of *table* compares with, from its definition."""
        for index in conn.execute(f"PRAGMA index_list({_quote(table)})"):
            if index[3] == "c":  # a CREATE INDEX may choose its own collation
                continue
            for row in conn.execute(f"PRAGMA index_xinfo({_quote(index[1])})"):
                if row[2] == column and row[5]:
                    return str(row[4]).upper()
        ddl = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        name = re.escape(column)
        found = re.search(
            rf"""[(,]\s*(?:"{name}"|`{name}`|\[{name}\]|{name})\s[^,()]*"""
            r"""(?:\([^()]*\)[^,()]*)*\bCOLLATE\s+"?(\w+)""",
            ddl[0] if ddl and ddl[0] else "",
            re.IGNORECASE,
        )
        return found.group(1).upper() if found else "BINARY"

    @staticmethod
    def _parents_first(
        conn: sqlite3.Connection, tables: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """*tables* with every table after the tables its foreign keys reference.

        Rows are inserted in this order and deleted in the reverse one, so
        that a key whose tables reference each other moves under
        `PRAGMA foreign_keys=ON` (and an `ON DELETE CASCADE` finds its
        children gone already). Tables in a cycle keep their name order.
        """
        names = {t for t, _ in tables}
        parents = {
            t: {
                r[2]
                for r in conn.execute(f"PRAGMA foreign_key_list({_quote(t)})")
                if r[2] in names and r[2] != t
            }
            for t in names
        }
        ordered: list[tuple[str, str]] = []
        placed: set[str] = set()
        pending = list(tables)
        while pending:
            ready = [tc for tc in pending if parents[tc[0]] <= placed] or pending[:1]
            for tc in ready:
                ordered.append(tc)
                placed.add(tc[0])
                pending.remove(tc)
        return ordered

    def _present(self, conn: sqlite3.Connection, key: Any) -> bool:
        for table, column in self._data_tables(conn):
            sql = f"SELECT 1 FROM {_quote(table)} WHERE {_quote(column)} = ? LIMIT 1"
            if conn.execute(sql, (key,)).fetchone() is not None:
                return True
        return False

    def _check_key(self, conn: sqlite3.Connection, key: Any) -> None:
        """Refuse a key of another type than its key columns' (7 where they hold `'7'`).

        SQLite compares a key column's values after converting the key to the
        column's affinity, so `7` and `"7"` name the same rows of a `TEXT`
        column (and of an `INTEGER` one), while the doubt record, like every
        Python caller, tells them apart: one spelling per key keeps both in step.
        """
        for table, column in self._data_tables(conn):
            declared = self._affinities.get((table, column))
            if declared is None:
                declared = ""
                for row in conn.execute(f"PRAGMA table_info({_quote(table)})"):
                    if row[1] == column:
                        declared = _affinity(row[2] or "")
                self._affinities[table, column] = declared
            if declared == "TEXT" and isinstance(key, int):
                raise ArgumentTypeError(
                    f"key must be a str for the TEXT key column {table}.{column}, got int: "
                    f"{key!r} (SQLite reads it as {str(key)!r}; give it as {str(key)!r})"
                )
            if (
                declared in ("INTEGER", "REAL", "NUMERIC")
                and isinstance(key, str)
                and _NUMERIC_TEXT.match(key)
            ):
                raise ArgumentTypeError(
                    f"key must be an int for the {declared} key column {table}.{column}, got "
                    f"str: {key!r} (SQLite reads it as a number; give it as a number)"
                )

    def _recorded(self, conn: sqlite3.Connection, name: str) -> MigrationState | None:
        row = conn.execute(f"SELECT state FROM {self._state_t} WHERE name = ?", (name,)).fetchone()
        return None if row is None else MigrationState.decode(row[0])

    # -- commands --------------------------------------------------------------------

    def execute(
        self,
        key: Any,
        command: Sequence[Any],
        *,
        name: str,
        state: MigrationState | None,
        source: bool,
    ) -> Any:
        if not command or not callable(command[0]):
            first = command[0] if command else None
            raise ArgumentTypeError(
                "a SQLiteShardStore command is a callable run as command(connection, key, "
                f"*args), got {type(first).__name__}: {first!r}"
            )
        text = self._key_text(key)
        with self._transaction("execute") as conn:
            self._check_key(conn, key)
            if state is not None:
                recorded = self._recorded(conn, name)
                if recorded != state:
                    raise StaleStateError(recorded)
                doubt = f"SELECT 1 FROM {self._doubt_t} WHERE name = ? AND key = ? AND moved >= 0"
                if conn.execute(doubt, (name, text)).fetchone() is not None:
                    raise KeyInDoubtError(key)
                if source and not self._present(conn, key):
                    raise KeyAbsentError(key)
            return command[0](conn, key, *command[1:])

    # -- records ---------------------------------------------------------------------

    def read_state(self, name: str) -> MigrationState | None:
        try:
            return self._recorded(self._conn(), name)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise self._error("read_state", exc) from exc

    def write_state(self, name: str, state: MigrationState | None) -> None:
        with self._transaction("write_state") as conn:
            conn.execute(f"DELETE FROM {self._state_t} WHERE name = ?", (name,))
            if state is not None:
                conn.execute(f"INSERT INTO {self._state_t} VALUES (?, ?)", (name, state.encode()))

    def scan(self, cursor: int, count: int) -> tuple[int, list[Any]]:
        """Keys in key order after the last one *cursor* returned (0: from the start).

        A cursor is this store object's own: a mover that restarts scans
        from 0 again. Keys deleted meanwhile shift nothing (the next step
        starts after a key value, not at an offset).
        """
        with self._marks_lock:
            after = self._marks.pop(cursor, None) if cursor else None
        try:
            conn = self._conn()
            tables = self._data_tables(conn)
            if not tables:
                return 0, []
            union = " UNION ".join(
                f"SELECT {_quote(c)} AS k FROM {_quote(t)} WHERE {_quote(c)} IS NOT NULL"
                for t, c in tables
            )
            where = "" if after is None else "WHERE k > ?"
            sql = f"SELECT k FROM ({union}) {where} ORDER BY k LIMIT ?"
            params: tuple[Any, ...] = (count,) if after is None else (after, count)
            keys = [r[0] for r in conn.execute(sql, params)]
            for i, key in enumerate(keys):
                if isinstance(key, float):
                    # A REAL (or NUMERIC, or untyped) key column stores an int
                    # key 7 as 7.0: the key is 7 again.
                    if not key.is_integer():
                        raise self._bad_stored_key(conn, tables, key)
                    keys[i] = int(key)
                elif not isinstance(key, (str, int)):
                    raise self._bad_stored_key(conn, tables, key)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise self._error("scan", exc) from exc
        if len(keys) < count:
            return 0, keys
        with self._marks_lock:
            following = max(self._marks, default=0) + 1
            self._marks[following] = keys[-1]
        return following, keys

    def _bad_stored_key(
        self, conn: sqlite3.Connection, tables: list[tuple[str, str]], key: Any
    ) -> ArgumentTypeError:
        """The error for a key column value that is no `str` or `int` key."""
        where = [
            f"{t}.{c}"
            for t, c in tables
            if conn.execute(
                f"SELECT 1 FROM {_quote(t)} WHERE {_quote(c)} = ? LIMIT 1", (key,)
            ).fetchone()
        ]
        return ArgumentTypeError(
            f"sqlite {self.name}: key column {', '.join(where) or '?'} holds {key!r} "
            f"({type(key).__name__}); keys must be str or int values (a whole number in a "
            "REAL column counts as an int), so it cannot be routed or moved: fix the row"
        )

    def in_doubt(self, name: str) -> list[Any]:
        try:
            rows = self._conn().execute(f"SELECT key FROM {self._doubt_t} WHERE name = ?", (name,))
            return [json.loads(r[0]) for r in rows]
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise self._error("in_doubt", exc) from exc

    # -- moving ----------------------------------------------------------------------

    def _target(self, target: ShardStore) -> SQLiteShardStore:
        if not isinstance(target, SQLiteShardStore):
            raise ConfigurationError(
                "a SQLiteShardStore moves keys to another SQLiteShardStore, "
                f"got {type(target).__name__}"
            )
        return target

    def move(
        self,
        keys: Sequence[Any],
        target: ShardStore,
        *,
        name: str,
        state: MigrationState | None = None,
    ) -> int:
        other = self._target(target)
        texts = list(dict.fromkeys(self._key_text(k) for k in keys))
        if not texts:
            return 0
        token = uuid.uuid4().hex
        begun, staged = self._begin(name, token, texts, state)
        if not begun:
            return 0
        conflicts: dict[str, str] = {}
        by_key: dict[str, list[tuple[str, str, str, str, str]]] = {}
        for row in staged:
            by_key.setdefault(row[0], []).append(row)
        try:
            with other._transaction("move (staging the rows)") as conn:  # 2: on the target
                for text in begun:
                    rows = by_key.get(text, [])
                    # Try the rows in (and take them out again) before the commit
                    # point: a row the target refuses (a value of a UNIQUE column
                    # another key holds there) keeps its key on this store.
                    error = other._try_insert(conn, [row[1:] for row in rows])
                    if error is not None:
                        conflicts[text] = error
                        continue
                    conn.executemany(
                        f"INSERT INTO {other._stage_t} VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [(name, token, *row) for row in rows],
                    )
        except BaseException:
            # Nothing left this store: give the keys back at once rather than
            # at the timeout (if this fails too, the timeout does it).
            self._release(name, token, begun)
            raise
        if conflicts:
            self._release(name, token, list(conflicts))
        moved = self._commit(name, token, [t for t in begun if t not in conflicts], state)
        conflicts.update(self._finish(name, [(t, token) for t in moved], other))  # 4 and 5
        if conflicts:
            raise self._conflict(other, conflicts)
        return len(moved)

    def _release(self, name: str, token: str, texts: list[str]) -> None:
        """Drop the records of keys whose move stopped before the commit point (best effort)."""
        try:
            with self._transaction("move (giving keys back)") as conn:
                conn.executemany(
                    f"DELETE FROM {self._doubt_t} "
                    "WHERE name = ? AND key = ? AND token = ? AND moved = 0",
                    [(name, text, token) for text in texts],
                )
        except BackendUnavailableError:
            pass

    def _conflict(self, target: SQLiteShardStore, conflicts: Mapping[str, str]) -> BackendError:
        listed = "; ".join(f"key {json.loads(t)!r}: {e}" for t, e in sorted(conflicts.items()))
        advice = []
        if any("FOREIGN KEY" not in e for e in conflicts.values()):
            advice.append(
                "A UNIQUE (or primary key) value must be unique across all shards (not a "
                "per-database AUTOINCREMENT id)"
            )
        if any("FOREIGN KEY" in e for e in conflicts.values()):
            advice.append(
                "A row with a foreign key moves only where the row it references is: a row "
                "it references must move with it (belong to the same key)"
            )
        return BackendError(
            f"sqlite {target.name} refused the rows of {len(conflicts)} moving key(s), which "
            f"stay on {self.name} and are served there: {listed}. {'; '.join(advice)}; "
            "fix the rows, then move again"
        )

    @staticmethod
    def _insert(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """Insert staged rows `(table, ddl, cols, row)`, creating a missing table first."""
        for table, ddl, cols, row in rows:
            conn.execute(
                re.sub(
                    r"^\s*CREATE\s+TABLE\s+(?!IF\s+NOT\s+EXISTS)",
                    "CREATE TABLE IF NOT EXISTS ",
                    ddl,
                    flags=re.IGNORECASE,
                )
            )
            names = json.loads(cols)
            values = [_decode_value(v) for v in json.loads(row)]
            conn.execute(
                f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                values,
            )

    def _try_insert(
        self,
        conn: sqlite3.Connection,
        rows: Sequence[tuple[str, str, str, str]],
        *,
        keep: bool = False,
    ) -> str | None:
        """Insert *rows* in a savepoint (kept if *keep*); the constraint refused, or None."""
        conn.execute("SAVEPOINT scalekit_rows")
        for row in rows:
            try:
                self._insert(conn, [row])
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK TO scalekit_rows")
                conn.execute("RELEASE scalekit_rows")
                return str(exc) if f"{row[0]}." in str(exc) else f"{exc} (table {row[0]})"
        if not keep:
            conn.execute("ROLLBACK TO scalekit_rows")
        conn.execute("RELEASE scalekit_rows")
        return None

    def _check_state(
        self, conn: sqlite3.Connection, name: str, state: MigrationState | None
    ) -> None:
        """Refuse a mover's step unless the store records the state the mover acted on."""
        if state is not None:
            recorded = self._recorded(conn, name)
            if recorded != state:
                raise StaleStateError(recorded)

    def _begin(
        self, name: str, token: str, texts: list[str], state: MigrationState | None = None
    ) -> tuple[list[str], list[tuple[str, str, str, str, str]]]:
        """Step 1: record the keys present and not in doubt, and read their rows."""
        deadline = self._clock() + self._timeout
        staged: list[tuple[str, str, str, str, str]] = []
        begun: list[str] = []
        with self._transaction("move (recording the keys)") as conn:
            self._check_state(conn, name, state)
            tables = self._data_tables(conn)
            # Generated columns (hidden 2: VIRTUAL, 3: STORED) are computed
            # again by the target; SQLite refuses to insert them.
            copied = {
                table: [
                    r[1]
                    for r in conn.execute(f"PRAGMA table_xinfo({_quote(table)})")
                    if r[6] not in (2, 3)
                ]
                for table, _ in tables
            }
            for text in texts:
                key = json.loads(text)
                self._check_key(conn, key)
                doubt = f"SELECT 1 FROM {self._doubt_t} WHERE name = ? AND key = ? AND moved >= 0"
                if conn.execute(doubt, (name, text)).fetchone() is not None:
                    continue
                rows = []
                for table, column in tables:
                    stored = copied[table]
                    cur = conn.execute(
                        f"SELECT {', '.join(_quote(c) for c in stored)} FROM {_quote(table)} "
                        f"WHERE {_quote(column)} = ?",
                        (key,),
                    )
                    cols = json.dumps(stored)
                    ddl = conn.execute(
                        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,),
                    ).fetchone()[0]
                    for row in cur.fetchall():
                        encoded = json.dumps([_encode_value(v) for v in row])
                        rows.append((text, table, ddl, cols, encoded))
                if not rows:  # gone meanwhile: a cancelled move has nothing left to do
                    conn.execute(
                        f"DELETE FROM {self._doubt_t} WHERE name = ? AND key = ? AND moved = -1",
                        (name, text),
                    )
                    continue
                conn.execute(
                    f"INSERT OR REPLACE INTO {self._doubt_t} VALUES (?, ?, ?, 0, ?)",
                    (name, text, token, deadline),
                )
                begun.append(text)
                staged += rows
        return begun, staged

    def _commit(
        self, name: str, token: str, begun: list[str], state: MigrationState | None = None
    ) -> list[str]:
        """Step 3, the commit point: delete the rows of every key still recorded under *token*."""
        moved: list[str] = []
        try:
            with self._transaction("move (deleting the moved rows)") as conn:
                self._check_state(conn, name, state)
                tables = self._data_tables(conn)
                for text in begun:
                    cur = conn.execute(
                        f"UPDATE {self._doubt_t} SET moved = 1 "
                        "WHERE name = ? AND key = ? AND token = ? AND moved = 0",
                        (name, text, token),
                    )
                    if cur.rowcount != 1:
                        continue  # a client cancelled it meanwhile: its rows stay here
                    key = json.loads(text)
                    for table, column in reversed(tables):  # children before their parents
                        try:
                            conn.execute(
                                f"DELETE FROM {_quote(table)} WHERE {_quote(column)} = ?", (key,)
                            )
                        except sqlite3.IntegrityError as exc:
                            raise BackendError(
                                f"sqlite {self.name} refused to delete the rows of moving key "
                                f"{key!r} from table {table} ({exc}): a row of another key "
                                "references them. Rows linked by a foreign key must belong to "
                                "the same key; nothing of this batch moved and its keys are "
                                "served here"
                            ) from exc
                    moved.append(text)
        except BackendError as exc:
            if isinstance(exc, BackendUnavailableError):
                raise
            # The transaction rolled back: give every key back now, not at the timeout.
            self._release(name, token, begun)
            raise
        return moved

    def _finish(
        self, name: str, records: list[tuple[str, str]], target: SQLiteShardStore
    ) -> dict[str, str]:
        """Promote the staged rows of moved keys on *target*, then clear their records here.

        A key whose rows *target* refuses now (a conflicting row written there
        after step 2) gets its rows back here and its move cancelled: nobody
        served it meanwhile (its record here fenced every command). Returns
        those keys, with the constraint that refused them.
        """
        if not records:
            return {}
        refused: dict[str, tuple[str, str, list[tuple[str, str, str, str]]]] = {}
        with target._transaction("move (promoting the staged rows)") as conn:
            for text, token in records:
                rows = conn.execute(
                    f"SELECT tbl, ddl, cols, row FROM {target._stage_t} "
                    "WHERE name = ? AND token = ? AND key = ? ORDER BY rowid",
                    (name, token, text),
                ).fetchall()
                error = target._try_insert(conn, rows, keep=True)
                if error is not None:
                    refused[text] = (token, error, rows)
                    continue
                conn.execute(
                    f"DELETE FROM {target._stage_t} WHERE name = ? AND token = ? AND key = ?",
                    (name, token, text),
                )
        with self._transaction("move (clearing the records)") as conn:
            conn.executemany(
                f"DELETE FROM {self._doubt_t} WHERE name = ? AND key = ? AND token = ? "
                "AND moved = 1",
                [(name, text, token) for text, token in records if text not in refused],
            )
            recorded = self._recorded(conn, name)
            for text, (token, error, rows) in refused.items():
                cur = conn.execute(
                    f"UPDATE {self._doubt_t} SET moved = -1, token = ? "
                    "WHERE name = ? AND key = ? AND token = ? AND moved = 1",
                    ("" if recorded is None else recorded.encode(), name, text, token),
                )
                if cur.rowcount == 1:  # not given back by another process already
                    try:
                        self._insert(conn, rows)
                    except sqlite3.IntegrityError as exc:
                        raise BackendError(
                            f"sqlite {self.name} refused the rows of moving key "
                            f"{json.loads(text)!r} back ({exc}) after {target.name} refused "
                            f"them ({error}); they are kept, staged on {target.name}, and the "
                            "key stays in doubt: fix the conflicting rows"
                        ) from exc
        if refused:
            with target._transaction("move (dropping refused rows)") as conn:
                conn.executemany(
                    f"DELETE FROM {target._stage_t} WHERE name = ? AND token = ? AND key = ?",
                    [(name, token, text) for text, (token, _, _) in refused.items()],
                )
        return {text: error for text, (_, error, _) in refused.items()}

    def resolve(self, name: str, keys: Sequence[Any], target: ShardStore) -> list[str]:
        other = self._target(target)
        texts = [self._key_text(k) for k in keys]
        outcome: dict[str, str] = {}
        delay = 0.001
        while True:
            moved: list[tuple[str, str]] = []
            waiting = False
            now = self._clock()
            with self._transaction("resolve") as conn:
                recorded = self._recorded(conn, name)
                current = "" if recorded is None else recorded.encode()
                for text in texts:
                    if text in outcome:
                        continue
                    row = conn.execute(
                        f"SELECT token, moved, deadline FROM {self._doubt_t} "
                        "WHERE name = ? AND key = ?",
                        (name, text),
                    ).fetchone()
                    if row is None:
                        outcome[text] = "n"
                    elif row[1] == 1:
                        moved.append((text, row[0]))
                        outcome[text] = "m"
                    elif row[1] == -1 and row[0] != current:
                        # Cancelled under an earlier state: every scan since that
                        # change began afresh, so no mover needs to hear of it.
                        conn.execute(
                            f"DELETE FROM {self._doubt_t} "
                            "WHERE name = ? AND key = ? AND moved = -1",
                            (name, text),
                        )
                        outcome[text] = "n"
                    elif row[1] == -1:  # cancelled: served here, to be moved again
                        outcome[text] = "c"
                    elif now >= row[2]:  # its mover is gone or stopped: cancel the move
                        # The record stays, marked with the state it was cancelled
                        # under, so that every mover of that state hears of it (from
                        # in_doubt) and queues the key again; commands serve the key
                        # meanwhile. The key's next move replaces it.
                        conn.execute(
                            f"UPDATE {self._doubt_t} SET moved = -1, token = ? "
                            "WHERE name = ? AND key = ?",
                            (current, name, text),
                        )
                        outcome[text] = "c"
                    else:
                        waiting = True
            for text in self._finish(name, moved, other):
                outcome[text] = "c"  # its rows were refused there and are back here
            if not waiting:
                return [outcome[t] for t in texts]
            self._sleep(delay)  # a mover is between steps 1 and 3: let it finish
            delay = min(delay * 2, 0.05)

    def sweep(self, name: str) -> int:
        with self._transaction("sweep") as conn:
            # Cancelled records of the finished migration: their keys are served
            # where they are.
            conn.execute(f"DELETE FROM {self._doubt_t} WHERE name = ? AND moved = -1", (name,))
            cur = conn.execute(f"DELETE FROM {self._stage_t} WHERE name = ?", (name,))
            return int(cur.rowcount)

    def __repr__(self) -> str:
        return f"SQLiteShardStore({self.name!r})"
