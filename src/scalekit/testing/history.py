"""Histories of operations, Jepsen-style: what each client invoked, and what came back.

Every client (a thread or a process) appends [Event][scalekit.testing.history.Event]s
to its own file as JSON lines: an `invoke` when it starts a call and an
`ok`, `fail` or `info` (outcome unknown: a timeout, a crash) when the call
returns. Times are `time.monotonic()` readings, which on Linux and macOS
come from one system-wide clock, so histories of several processes on one
machine can be merged and compared. The checker in
`scalekit.testing.lock_checker` reads the merged history; nothing here
knows what the operations mean.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Event", "HistoryRecorder", "read_history"]

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"


@dataclass(frozen=True)
class Event:
    """One line of a history.

    Attributes:
        process: who acted: a worker's id such as `"w3"`, or `"nemesis"`.
        type: `"invoke"`, `"ok"`, `"fail"` or `"info"` (outcome unknown).
        f: the operation: `"acquire"`, `"read"`, `"write"`, `"release"`,
            `"notice"` (a lost-lease callback), or a fault's name.
        time: `time.monotonic()` when the event happened.
        token: the fencing token involved, if any.
        value: the operation's argument or result (a value read, a fault's
            target).
        data: anything else: a call's time bound, a lease's deadline, the
            validity the server reported, an error's name.
    """

    process: str
    type: str
    f: str
    time: float
    token: int | None = None
    value: Any = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """The event as one line of JSON (no newline)."""
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, line: str) -> Event:
        """Parse a line written by [to_json][scalekit.testing.history.Event.to_json]."""
        raw = json.loads(line)
        return cls(
            str(raw["process"]),
            str(raw["type"]),
            str(raw["f"]),
            float(raw["time"]),
            None if raw.get("token") is None else int(raw["token"]),
            raw.get("value"),
            dict(raw.get("data") or {}),
        )


class HistoryRecorder:
    """Appends one process's events to a JSON-lines file, each line with one `write`.

    A line is written with a single `os.write` on a file opened with
    `O_APPEND`, so a process killed with SIGKILL leaves whole lines behind
    (at most its last line is cut, and [read_history][scalekit.testing.history.read_history]
    skips it).

    Args:
        path: the file to append to (created if missing).
        process: the id written into every event.
        clock: the time source; keep the default to compare processes.

    Thread-safe: threads of one process may share a recorder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        process: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.process = process
        self._clock = clock
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(
        self,
        type: str,
        f: str,
        *,
        token: int | None = None,
        value: Any = None,
        at: float | None = None,
        **data: Any,
    ) -> Event:
        """Write one event, timed now unless *at* is given, and return it."""
        event = Event(
            self.process, type, f, self._clock() if at is None else at, token, value, data
        )
        line = (event.to_json() + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
        return event

    def invoke(self, f: str, **kw: Any) -> Event:
        """Record the start of a call."""
        return self.record(INVOKE, f, **kw)

    def ok(self, f: str, **kw: Any) -> Event:
        """Record a call that succeeded."""
        return self.record(OK, f, **kw)

    def fail(self, f: str, **kw: Any) -> Event:
        """Record a call that certainly had no effect."""
        return self.record(FAIL, f, **kw)

    def info(self, f: str, **kw: Any) -> Event:
        """Record a call whose effect is unknown (a timeout), or a notice."""
        return self.record(INFO, f, **kw)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _lines(path: Path) -> Iterator[str]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    yield from text.splitlines()


def read_history(paths: Iterable[str | os.PathLike[str]]) -> list[Event]:
    """Merge the histories in *paths* into one list ordered by time.

    A line that does not parse (the last line of a process killed while
    writing it) is skipped. Events of equal time keep their file order.
    """
    events: list[Event] = []
    for path in paths:
        for line in _lines(Path(path)):
            try:
                events.append(Event.from_json(line))
            except (ValueError, KeyError, TypeError):
                continue
    events.sort(key=lambda e: e.time)
    return events
