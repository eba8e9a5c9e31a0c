"""Who uses a data directory: every shop process holds a lock on it while it does.

Each process that opens a directory's databases (`ShopStorage`) holds a
shared ``flock`` on ``DIR/.users.lock``, whatever its lock backend. Two
things need the directory to themselves, an exclusive lock, granted only
while no other process holds it at all:

* a memory-lock run, for its whole length (memory locks do not cross
  processes, and their tokens start at 1 in each one);
* lowering the stored fences (a run whose backend issues tokens that are
  not comparable with the stored ones): a process that holds the
  directory open may hold a lease of the old backend, whose stale write
  a lowered fence would let through.

A process that is frozen (SIGSTOP) keeps its lock, so it counts as a user.
Within one process the lock is shared by every `ShopStorage` on the
directory; it is released when the last of them is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from scalekit import ConfigurationError

# Seconds a process waits for a directory another one holds exclusively.
_WAIT = 2.0
_mutex = threading.Lock()
# resolved directory -> [handle, users in this process, held exclusively]
_held: dict[Path, list[object]] = {}


def _key(directory: Path) -> Path:
    return directory.resolve()


def share(directory: Path) -> None:
    """Count this process as a user of *directory*; `leave` undoes it.

    Raises:
        ConfigurationError: a memory-lock run has the directory to itself.
    """
    key = _key(directory)
    with _mutex:
        entry = _held.get(key)
        if entry is not None:
            entry[1] = int(entry[1]) + 1  # type: ignore[call-overload]
            return
        handle = open(key / ".users.lock", "a+")  # noqa: SIM115 - held until the last user leaves
        # Another process may hold it exclusively for a moment (`others_present`);
        # a memory run holds it for its whole length.
        end = time.monotonic() + _WAIT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < end:
                    time.sleep(0.01)
                    continue
            handle.close()
            raise ConfigurationError(
                f"data directory {str(directory)!r} is in use by a memory-lock run, which "
                "needs it to itself (memory locks do not cross processes); wait for it to end"
            ) from None
        _held[key] = [handle, 1, False]


def leave(directory: Path) -> None:
    key = _key(directory)
    with _mutex:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
        if entry[1] == 0:
            handle: IO[str] = entry[0]  # type: ignore[assignment]
            handle.close()
            del _held[key]


@contextlib.contextmanager
def alone(directory: Path, why: str) -> Iterator[None]:
    """Hold *directory* exclusively while the block runs.

    Args:
        directory: the data directory.
        why: what needs it, for the error message.

    Raises:
        ConfigurationError: another process uses the directory.
    """
    share(directory)
    key = _key(directory)
    with _mutex:
        entry = _held[key]
        handle: IO[str] = entry[0]  # type: ignore[assignment]
        already = bool(entry[2])
        if not already:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Linux drops the shared lock before trying the exclusive one: take it back.
                with contextlib.suppress(BlockingIOError):
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                entry[1] = int(entry[1]) - 1  # type: ignore[call-overload]
                raise ConfigurationError(
                    f"data directory {str(directory)!r} is in use by another process; {why} "
                    "needs it to itself: run it when no other shop process uses the directory"
                ) from None
            entry[2] = True
    try:
        yield
    finally:
        with _mutex:
            if not already:
                fcntl.flock(handle, fcntl.LOCK_SH)
                entry[2] = False
        leave(directory)


def others_present(directory: Path) -> bool:
    """Whether another process uses *directory* now (so its orders may be in flight)."""
    try:
        with alone(directory, "the check"):
            return False
    except ConfigurationError:
        return True
