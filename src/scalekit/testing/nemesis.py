"""A seeded nemesis: a random schedule of faults, some overlapping, applied and recorded.

[make_schedule][scalekit.testing.nemesis.make_schedule] draws a schedule
from a seed, so a failing run is replayed by its seed; with `overlap`,
some faults start while the one before is still active (two Redlock
masters down at once, a blackhole during a SIGSTOP).
[Nemesis][scalekit.testing.nemesis.Nemesis] applies it: each fault's
action is a callable the caller registers by name (SIGSTOP a holder,
restart a server, blackhole a proxy...), run on a thread of its own from
the fault's start, and each fault is written to a history as an `invoke`
when it starts and an `ok` when it heals, so a checker can tell which
faults were active when.
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
    overlap: float = 0.0,
) -> list[Fault]:
    """Draw a schedule of faults that start within *seconds*, in start order.

    Args:
        seed: the seed; the same seed gives the same schedule.
        kinds: the fault names to draw from, uniformly.
        seconds: faults start within this many seconds (each then runs
            its full duration).
        durations: per kind, the range its duration is drawn from
            (default 0.2 to 1.0 s).
        gap: the range of the pause between one fault's end and the next.
        overlap: the chance, in [0, 1], that a fault starts while the one
            before is still active (at a uniform point of it) rather than a
            gap after its end. At most two faults are active at once.

    Raises:
        ConfigurationError: no *kinds*, *seconds* < 0, or *overlap*
            outside [0, 1].
    """
    if not kinds:
        raise ConfigurationError(f"kinds must name at least one fault, got {kinds!r}")
    if seconds < 0:
        raise ConfigurationError(f"seconds must be >= 0, got {seconds!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int | float) or not 0 <= overlap <= 1:
        raise ConfigurationError(f"overlap must be a number in [0, 1], got {overlap!r}")
    rng = random.Random(seed)
    out: list[Fault] = []
    now = rng.uniform(*gap)
    free_at = 0.0  # when every fault drawn so far has healed
    while now < seconds:
        kind = rng.choice(list(kinds))
        low, high = (durations or {}).get(kind, (0.2, 1.0))
        duration = rng.uniform(low, high)
        out.append(Fault(round(now, 3), kind, round(duration, 3), rng.random()))
        end = now + duration
        if overlap and now >= free_at and rng.random() < overlap:
            free_at = max(free_at, end)
            now += rng.uniform(0.0, duration)  # the next one starts during this one
        else:
            free_at = max(free_at, end)
            now = free_at + rng.uniform(*gap)
    return out


class Nemesis:
    """Applies a schedule on a background thread, recording each fault.

    Args:
        schedule: the faults, in start order.
        actions: the action of each kind; it applies the fault, waits
            `fault.duration`, heals it, and returns.
        recorder: where faults are recorded (process `"nemesis"`).
        clock: monotonic seconds.

    Each fault runs on a thread of its own from its start, so faults that
    overlap in the schedule overlap in fact; an action that must not meet
    another on the same target chooses another target, or none. After the
    last fault heals it records `quiet`. Call
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
        self._count_lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="nemesis")
        self._thread.start()

    def _apply(self, fault: Fault) -> None:
        try:
            self.actions[fault.kind](fault, self.recorder)
            with self._count_lock:
                self.applied += 1
        except Exception as exc:
            with self._count_lock:
                self.errors.append(f"{fault.kind}: {exc!r}")
            self.recorder.fail(fault.kind, error=repr(exc))

    def _run(self) -> None:
        began = self._clock()
        running: list[threading.Thread] = []
        for fault in self.schedule:
            if self._stop.wait(max(0.0, began + fault.at - self._clock())):
                break
            running = [t for t in running if t.is_alive()]
            thread = threading.Thread(
                target=self._apply, args=(fault,), daemon=True, name=f"nemesis:{fault.kind}"
            )
            thread.start()
            running.append(thread)
        for thread in running:
            thread.join()
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
