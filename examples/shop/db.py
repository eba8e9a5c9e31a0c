"""One SQLite file, one connection per thread, WAL mode for concurrent readers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from scalekit import BackendError, BackendUnavailableError

#: SQLite's result codes for a database that cannot be used now but may be again.
_UNAVAILABLE_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_CANTOPEN")
_UNAVAILABLE_TEXT = ("is locked", "disk I/O error", "unable to open database file")
#: Errors that are the shop code's own to handle (a UNIQUE key taken, a bug).
_OWN = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def database_error(path: Path, operation: str, exc: sqlite3.Error) -> BackendError:
    """`BackendUnavailableError` for a lock held too long, an I/O error or a file that
    cannot be opened (a retry may succeed), else `BackendError` (a full disk, a
    read-only or corrupt file): the message names the file and the operation."""
    code = getattr(exc, "sqlite_errorname", None)
    text = str(exc)
    if code is not None:
        transient = code.startswith(_UNAVAILABLE_CODES)
    else:
        transient = any(part in text for part in _UNAVAILABLE_TEXT)
    cls = BackendUnavailableError if transient else BackendError
    return cls(f"sqlite {path.name}: {operation} failed: {text}" + (f" ({code})" if code else ""))


class Database:
    """One SQLite file shared by threads and processes; a connection per thread."""

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        self.path = path
        # Seconds a statement waits for another connection's write lock
        # before it raises "database is locked" (callers retry later).
        self.busy_timeout = busy_timeout
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def read(self, operation: str) -> Iterator[sqlite3.Connection]:
        """The thread's connection for reads outside a transaction.

        SQLite's errors (but the shop code's own) become `database_error`s
        naming *operation*, as in `transaction`: a corrupt or locked file is
        met first by reads.
        """
        try:
            yield self.connection()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise database_error(self.path, operation, exc) from exc

    @contextmanager
    def transaction(self, operation: str = "a transaction") -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on an exception.

        SQLite's errors (but `IntegrityError` and `ProgrammingError`, the
        shop code's own) become `database_error`s naming *operation*; a
        statement SQLite already rolled back for (a full disk) raises that
        error, not the `ROLLBACK`'s "no transaction is active".
        """
        try:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, _OWN):
                raise
            raise database_error(self.path, operation, exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with suppress(sqlite3.Error):  # the error below says what went wrong
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, _OWN):
                raise database_error(self.path, operation, exc) from exc
            raise
