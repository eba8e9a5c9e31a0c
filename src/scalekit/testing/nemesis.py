"""A seeded nemesis: a random schedule of faults, applied one at a time and recorded.

[make_schedule][scalekit.testing.nemesis.make_schedule] draws a schedule
from a seed, so a failing run is replayed by its seed.
[Nemesis][scalekit.testing.nemesis.Nemesis] applies it on a thread: each
fault's action is a callable the caller registers by name (SIGSTOP a
holder, restart a server, blackhole a proxy...), and each fault is written
to a history as an `invoke` when it starts and an `ok` when it heals, so a
checker can tell which faults were active when.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..exceptions import ConfigurationError
from .history import HistoryRecorder

__all__ = ["Fault", "FaultAction", "Nemesis", "make_schedule"]


@dataclass(frozen=True)
class Fault:
    """One fault of a schedule.

    Attributes:
        at: seconds after the schedule starts.
        kind: the name of the registered action.
        duration: how long the fault lasts before it heals.
        pick: a number in [0, 1) the action uses to choose its target
            (which server, which waiter), so the choice is seeded too.
    """

    at: float
    kind: str
    duration: float
    pick: float


FaultAction = Callable[[Fault, HistoryRecorder], None]
"""Applies a fault and heals it after `fault.duration`; may record details."""


def make_schedule(
    seed: int,
    kinds: Sequence[str],
    seconds: float,
    *,
    durations: dict[str, tuple[float, float]] | None = None,
    gap: tuple[float, float] = (0.2, 0.8),
) -> list[Fault]:
    """Draw a schedule of faults that start within *seconds*, one after another.

    Args:
        seed: the seed; the same seed gives the same schedule.
        kinds: the fault names to draw from, uniformly.
        seconds: faults start within this many seconds (each then runs
            its full duration).
        durations: per kind, the range its duration is drawn from
            (default 0.2 to 1.0 s).
        gap: the range of the pause between one fault's end and the next.

    Raises:
        ConfigurationError: no *kinds*, or *seconds* < 0.
    """
    if not kinds:
        raise ConfigurationError(f"kinds must name at least one fault, got {kinds!r}")
    if seconds < 0:
        raise ConfigurationError(f"seconds must be >= 0, got {seconds!r}")
    rng = random.Random(seed)
    out: list[Fault] = []
    now = rng.uniform(*gap)
    while now < seconds:
        kind = rng.choice(list(kinds))
        low, high = (durations or {}).get(kind, (0.2, 1.0))
        duration = rng.uniform(low, high)
        out.append(Fault(round(now, 3), kind, round(duration, 3), rng.random()))
        now += duration + rng.uniform(*gap)
    return out


class Nemesis:
    """Applies a schedule on a background thread, recording each fault.

    Args:
        schedule: the faults, in start order.
        actions: the action of each kind; it applies the fault, waits
            `fault.duration`, heals it, and returns.
        recorder: where faults are recorded (process `"nemesis"`).
        clock: monotonic seconds.

    After the last fault heals it records `quiet`. Call
    [stop][scalekit.testing.nemesis.Nemesis.stop] to end early; an action
    that raises is recorded as `fail` with the error and the schedule
    goes on.
    """

    def __init__(
        self,
        schedule: Sequence[Fault],
        actions: dict[str, FaultAction],
        recorder: HistoryRecorder,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        missing = sorted({f.kind for f in schedule} - set(actions))
        if missing:
            raise ConfigurationError(f"schedule uses faults without an action: {missing}")
        self.schedule = list(schedule)
        self.actions = actions
        self.recorder = recorder
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="nemesis")
        self._thread.start()

    def _run(self) -> None:
        began = self._clock()
        for fault in self.schedule:
            if self._stop.wait(max(0.0, began + fault.at - self._clock())):
                break
            try:
                self.actions[fault.kind](fault, self.recorder)
                self.applied += 1
            except Exception as exc:
                self.errors.append(f"{fault.kind}: {exc!r}")
                self.recorder.fail(fault.kind, error=repr(exc))
        self.recorder.info("quiet")

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the schedule to finish; return whether it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Skip the faults not yet started (the current one still heals)."""
        self._stop.set()
