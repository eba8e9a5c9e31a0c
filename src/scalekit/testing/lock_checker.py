"""A checker for histories of clients that take a lock and update a fenced store.

The workload it understands (see `scalekit.testing.lock_workload`): each
client, in a loop, `acquire`s a lease, `read`s a counter from a fenced
store with the lease's token, `write`s the value plus one with the same
token and `release`s. Its `on_lost` callback records a `notice`. A nemesis
records its faults (process `"nemesis"`): `pause` windows (SIGSTOP to
SIGCONT) and `expire` windows with a `target` process, `kill`s, and the
instants `quiet` (the last fault healed) and `end` (clients told to stop).

[check_lock_history][scalekit.testing.lock_checker.check_lock_history] is a
pure function of the merged history and the store's final value. It
checks the invariants below, each of which a correct lock plus a correct
fenced store must keep whatever the faults, and reports every violation:

* `fencing` — the store never accepted a token lower than one it had
  accepted before. Acceptance order comes from the values: the write of
  `v` precedes every read that returned `v`, which precede the write of
  `v + 1`.
* `no-lost-update` — the final value equals the number of accepted writes
  (plus at most the writes whose outcome is unknown), and no two accepted
  writes wrote the same value.
* `exclusion` — no two leases were held and not lost at once: when a
  client found its lease not lost (the `checked` time of a read or write),
  no lease with a higher token had been granted yet (its `acquire`
  returned before), and no token was granted twice. A session that the
  nemesis closed by force (`expire`) is exempt for `expiry_notice`: no
  client can know of it sooner.
* `validity` — a lease's local deadline is no later than the expiry the
  server reported for it (`validity_ms` measured at `validity_at`).
* `notice` — every lease that outlived its deadline (or, without a ttl,
  saw a successor before it released) got its `notice` within the notice
  bound, counted from the end of any fault window that froze its process.
* `call-bounds` — every call returned within the `bound` its invoke
  recorded, not counting time its process spent frozen by the nemesis,
  with an outcome its documentation lists (a client records an error it
  does not document as `undocumented`); a call that never returned in a
  process the nemesis did not kill is a violation.
* `recovery` — once the faults stop, an accepted write happens within the
  recovery bound.
* `availability` — a fault the lock is documented to survive (the nemesis
  marks it `tolerated`: one Redlock master down, slow or answering error
  replies; a ZooKeeper follower cut from its leader) does not stop
  acquisition: when it lasts longer than the recovery bound, with no
  other fault during it or within the recovery bound before it, some
  `acquire` returns a lease while it lasts.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

from .history import FAIL, INFO, INVOKE, OK, Event

__all__ = ["INVARIANTS", "CheckBounds", "CheckReport", "Violation", "check_lock_history"]

INVARIANTS = (
    "fencing",
    "no-lost-update",
    "exclusion",
    "validity",
    "notice",
    "call-bounds",
    "recovery",
    "availability",
)

NEMESIS = "nemesis"


@dataclass(frozen=True)
class CheckBounds:
    """The documented bounds the history is held to, in seconds.

    Attributes:
        notice: how long after a lease's deadline (or successor, without a
            ttl) the `on_lost` notice may come.
        recovery: how soon after the faults stop an accepted write must happen.
        margin: slack added to every call's own `bound` and to `notice`,
            for scheduling noise on a loaded machine.
        expiry_notice: how long after a forced session expiry the holder
            may be told (a ZooKeeper session closed by the nemesis).
        validity_slack: rounding allowed between the server's reported
            expiry (whole milliseconds) and the lease's deadline.
    """

    notice: float
    recovery: float
    margin: float = 0.1
    expiry_notice: float = 0.0
    validity_slack: float = 0.002


@dataclass(frozen=True)
class Violation:
    invariant: str
    time: float
    message: str


@dataclass
class CheckReport:
    """What [check_lock_history][scalekit.testing.lock_checker.check_lock_history] found.

    Attributes:
        checked: per invariant, how many cases were checked.
        violations: every violation, in time order.
        stats: counts of the history (leases, accepted writes, final value...).
    """

    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVARIANTS, 0))
    violations: list[Violation] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def failed(self, invariant: str) -> list[Violation]:
        return [v for v in self.violations if v.invariant == invariant]

    def table(self) -> str:
        """The invariants as a text table: cases checked, violations, the first one."""
        rows = [f"{'invariant':<15} {'checked':>8} {'violations':>10}  first violation"]
        for name in INVARIANTS:
            bad = self.failed(name)
            first = bad[0].message if bad else ""
            rows.append(f"{name:<15} {self.checked[name]:>8} {len(bad):>10}  {first}")
        return "\n".join(rows)

    def _add(self, invariant: str, time: float, message: str) -> None:
        self.violations.append(Violation(invariant, time, message))


@dataclass
class _Lease:
    process: str
    token: int
    granted: float  # when acquire returned
    deadline: float | None
    released: float | None = None  # when release was invoked
    notice: float | None = None
    checks: list[float] = field(default_factory=list)  # checked-and-not-lost times
    validity_end: float | None = None


@dataclass
class _Faults:
    windows: dict[str, list[tuple[float, float, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    killed: dict[str, float] = field(default_factory=dict)
    quiet: float | None = None
    end: float | None = None
    # Every fault as (start, end, kind, tolerated); a kill is an instant.
    spans: list[tuple[float, float, str, bool]] = field(default_factory=list)

    def frozen(self, process: str, start: float, stop: float) -> float:
        """Seconds of [start, stop] during which *process* was paused."""
        total = 0.0
        for a, b, kind in self.windows.get(process, ()):
            if kind == "pause":
                total += max(0.0, min(b, stop) - max(a, start))
        return total

    def released_at(self, process: str, when: float, expiry_notice: float) -> float:
        """The end of the fault windows that froze *process* around *when* (else *when*)."""
        out = when
        changed = True
        while changed:
            changed = False
            for a, b, kind in self.windows.get(process, ()):
                end = b + (expiry_notice if kind == "expire" else 0.0)
                if a <= out < end:
                    out = end
                    changed = True
        return out

    def dead_by(self, process: str, when: float) -> bool:
        killed = self.killed.get(process)
        return killed is not None and killed <= when


def _faults(events: list[Event]) -> _Faults:
    faults = _Faults()
    open_: dict[tuple[str, str], float] = {}
    spans: dict[tuple[str, str], tuple[float, bool]] = {}
    for e in events:
        if e.process != NEMESIS:
            continue
        target = str(e.data.get("target", ""))
        if e.type == INVOKE:
            spans[(e.f, target)] = (e.time, bool(e.data.get("tolerated", False)))
        elif e.type in (OK, FAIL) and (e.f, target) in spans:
            start, tolerated = spans.pop((e.f, target))
            faults.spans.append((start, e.time, e.f, tolerated))
        if e.f in ("pause", "expire"):
            if e.type == INVOKE:
                open_[(e.f, target)] = e.time
            elif (e.f, target) in open_:
                faults.windows[target].append((open_.pop((e.f, target)), e.time, e.f))
        elif e.f == "kill":
            faults.killed.setdefault(target, e.time)
            faults.spans.append((e.time, e.time, e.f, False))
        elif e.f == "quiet":
            faults.quiet = e.time
        elif e.f == "end":
            faults.end = e.time
    for (kind, target), start in open_.items():  # never healed: frozen to the end
        faults.windows[target].append((start, float("inf"), kind))
    for (kind, _target), (start, tolerated) in spans.items():
        faults.spans.append((start, float("inf"), kind, tolerated))
    faults.spans.sort()
    return faults


def check_lock_history(
    events: list[Event], *, final_value: int, bounds: CheckBounds
) -> CheckReport:
    """Check a merged, time-ordered history; return every violation found.

    Args:
        events: the merged history (see `read_history`).
        final_value: the counter's value in the store after the run.
        bounds: the documented bounds to hold the history to.

    Returns:
        A [CheckReport][scalekit.testing.lock_checker.CheckReport]; `report.ok`
        is True when no invariant was violated.
    """
    report = CheckReport()
    faults = _faults(events)
    leases = _leases(events)
    _check_fencing(events, report)
    _check_lost_updates(events, final_value, report)
    _check_exclusion(leases, faults, bounds, report)
    _check_validity(leases, bounds, report)
    _check_notice(leases, faults, bounds, report)
    _check_call_bounds(events, faults, bounds, report)
    _check_recovery(events, faults, bounds, report)
    _check_availability(events, faults, bounds, report)
    report.violations.sort(key=lambda v: v.time)
    report.stats.update(
        leases=len(leases),
        writes_ok=sum(1 for e in events if e.f == "write" and e.type == OK),
        writes_refused=sum(1 for e in events if e.f == "write" and e.type == FAIL),
        final_value=final_value,
        faults=sum(1 for e in events if e.process == NEMESIS and e.type == INVOKE),
    )
    return report


def _leases(events: list[Event]) -> list[_Lease]:
    """Rebuild each lease from its client's events (clients run one call at a time)."""
    out: list[_Lease] = []
    current: dict[str, _Lease] = {}
    by_token: dict[tuple[str, int], _Lease] = {}
    for e in events:
        if e.process == NEMESIS:
            continue
        if e.f == "acquire" and e.type == OK and e.token is not None:
            raw = e.data.get("deadline")
            deadline = None if raw is None else float(raw)
            lease = _Lease(e.process, e.token, e.time, deadline)
            validity = e.data.get("validity_ms")
            if validity is not None and float(validity) >= 0:
                lease.validity_end = float(e.data["validity_at"]) + float(validity) / 1000
            out.append(lease)
            current[e.process] = lease
            by_token[(e.process, e.token)] = lease
        elif e.f == "notice" and e.token is not None:
            told = by_token.get((e.process, e.token))
            if told is not None and told.notice is None:
                told.notice = e.time
        else:
            held = current.get(e.process)
            if held is None or e.type != INVOKE or e.token != held.token:
                continue
            if e.f in ("read", "write") and e.data.get("lost") is False:
                held.checks.append(float(e.data.get("checked", e.time)))
            elif e.f == "release" and held.released is None:
                held.released = e.time
    return out


def _check_fencing(events: list[Event], report: CheckReport) -> None:
    writes: dict[int, list[tuple[int, float]]] = defaultdict(list)
    reads: dict[int, list[tuple[int, float]]] = defaultdict(list)
    # Real-time order: an operation accepted before another was invoked
    # was accepted first, so the later one may not carry a lower token.
    done_max, done_at = 0, 0.0
    floor_at_invoke: dict[tuple[str, str], tuple[int, float]] = {}
    for e in events:
        if e.token is None or e.process == NEMESIS or e.f not in ("read", "write"):
            continue
        if e.type == INVOKE:
            floor_at_invoke[(e.process, e.f)] = (done_max, done_at)
            continue
        if e.type != OK:
            continue
        floor, floor_time = floor_at_invoke.pop((e.process, e.f), (0, 0.0))
        report.checked["fencing"] += 1
        if e.token < floor:
            report._add(
                "fencing",
                e.time,
                f"{e.f} by {e.process} accepted token {e.token} after token {floor} had been "
                f"accepted ({e.time - floor_time:.3f}s before)",
            )
        if e.token > done_max:
            done_max, done_at = e.token, e.time
        if e.f == "write":
            writes[int(e.value)].append((e.token, e.time))
        else:
            reads[int(e.value or 0)].append((e.token, e.time))
    # Value order: the write of v precedes the reads that returned v,
    # which precede the write of v + 1.
    floor = 0
    for v in sorted(set(writes) | set(reads)):
        for token, at in writes[v]:
            if token < floor:
                report._add(
                    "fencing", at, f"the write of {v} accepted token {token} after token {floor}"
                )
        level = max([floor, *(t for t, _ in writes[v])])
        for token, at in reads[v]:
            if token < level:
                report._add(
                    "fencing", at, f"a read of {v} accepted token {token} after token {level}"
                )
        floor = max([level, *(t for t, _ in reads[v])])


def _check_lost_updates(events: list[Event], final_value: int, report: CheckReport) -> None:
    accepted: list[int] = []
    unknown = 0
    pending: dict[str, Event] = {}
    for e in events:
        if e.f != "write" or e.process == NEMESIS:
            continue
        if e.type == INVOKE:
            pending[e.process] = e
            continue
        pending.pop(e.process, None)
        if e.type == OK:
            accepted.append(int(e.value))
        elif e.type == INFO:
            unknown += 1
    unknown += len(pending)  # never returned (the process was killed): may have happened
    report.checked["no-lost-update"] = len(accepted) + 1
    counts: dict[int, int] = defaultdict(int)
    for value in accepted:
        counts[value] += 1
    twice = sorted(v for v, n in counts.items() if n > 1)
    if twice:
        report._add(
            "no-lost-update",
            0.0,
            f"{len(twice)} values were written by two accepted writes (first: {twice[0]})",
        )
    if not len(accepted) <= final_value <= len(accepted) + unknown:
        report._add(
            "no-lost-update",
            0.0,
            f"final value {final_value} after {len(accepted)} accepted writes "
            f"and {unknown} of unknown outcome",
        )


def _check_exclusion(
    leases: list[_Lease], faults: _Faults, bounds: CheckBounds, report: CheckReport
) -> None:
    ordered = sorted(leases, key=lambda lease: lease.token)
    tokens = [lease.token for lease in ordered]
    # suffix[i]: the earliest grant among the leases ordered[i:].
    suffix = [float("inf")] * (len(ordered) + 1)
    for i in range(len(ordered) - 1, -1, -1):
        suffix[i] = min(suffix[i + 1], ordered[i].granted)
    seen: dict[int, _Lease] = {}
    for lease in ordered:
        other = seen.get(lease.token)
        if other is not None and other.process != lease.process:
            report._add(
                "exclusion",
                lease.granted,
                f"token {lease.token} was granted to {other.process} and to {lease.process}",
            )
        seen[lease.token] = lease
    for lease in ordered:
        higher = bisect.bisect_right(tokens, lease.token)
        for checked in lease.checks:
            if _expired_by_force(faults, lease, checked, bounds.expiry_notice):
                continue  # a session closed by the nemesis: told within expiry_notice
            report.checked["exclusion"] += 1
            if suffix[higher] < checked:
                successor = min(ordered[higher:], key=lambda s: s.granted)
                report._add(
                    "exclusion",
                    checked,
                    f"{lease.process} found lease {lease.token} not lost at {checked:.3f}, "
                    f"{checked - successor.granted:.3f}s after {successor.process} was granted "
                    f"token {successor.token}",
                )
                break


def _expired_by_force(faults: _Faults, lease: _Lease, checked: float, grace: float) -> bool:
    """Whether *checked* falls in a forced session expiry of the lease's process (plus *grace*)."""
    return any(
        kind == "expire" and lease.granted <= a <= checked <= b + grace
        for a, b, kind in faults.windows.get(lease.process, ())
    )


def _check_validity(leases: list[_Lease], bounds: CheckBounds, report: CheckReport) -> None:
    for lease in leases:
        if lease.validity_end is None or lease.deadline is None:
            continue
        report.checked["validity"] += 1
        if lease.deadline > lease.validity_end + bounds.validity_slack:
            report._add(
                "validity",
                lease.granted,
                f"lease {lease.token} of {lease.process} trusts itself until "
                f"{lease.deadline - lease.validity_end:.3f}s after the server's expiry",
            )


def _check_notice(
    leases: list[_Lease], faults: _Faults, bounds: CheckBounds, report: CheckReport
) -> None:
    ordered = sorted(leases, key=lambda lease: lease.token)
    tokens = [lease.token for lease in ordered]
    suffix: list[_Lease | None] = [None] * (len(ordered) + 1)
    for i in range(len(ordered) - 1, -1, -1):
        best = suffix[i + 1]
        suffix[i] = ordered[i] if best is None or ordered[i].granted < best.granted else best
    end = faults.end if faults.end is not None else float("inf")
    for lease in ordered:
        if lease.deadline is not None:
            reference = lease.deadline
            why = "its deadline"
        else:
            successor = suffix[bisect.bisect_right(tokens, lease.token)]
            if successor is None:
                continue
            reference = successor.granted
            why = f"{successor.process} got token {successor.token}"
        if lease.released is not None and lease.released <= reference:
            continue
        due = faults.released_at(lease.process, reference, bounds.expiry_notice)
        due += bounds.notice + bounds.margin
        if faults.dead_by(lease.process, due) or due > end:
            continue
        report.checked["notice"] += 1
        if lease.notice is None or lease.notice > due:
            late = "never" if lease.notice is None else f"{lease.notice - reference:.3f}s after"
            report._add(
                "notice",
                reference,
                f"lease {lease.token} of {lease.process} was told {late} {why} "
                f"(bound {bounds.notice}s + {bounds.margin}s)",
            )


def _check_call_bounds(
    events: list[Event], faults: _Faults, bounds: CheckBounds, report: CheckReport
) -> None:
    pending: dict[tuple[str, str], Event] = {}
    for e in events:
        if e.process == NEMESIS or e.f == "notice":
            continue
        key = (e.process, e.f)
        if e.type == INVOKE:
            pending[key] = e
            continue
        start = pending.pop(key, None)
        if start is None or start.data.get("bound") is None:
            continue
        report.checked["call-bounds"] += 1
        if e.data.get("undocumented"):
            report._add(
                "call-bounds",
                e.time,
                f"{e.f} of {e.process} raised an error it does not document: "
                f"{e.data.get('error', '')}",
            )
            continue
        bound = float(start.data["bound"])
        took = e.time - start.time - faults.frozen(e.process, start.time, e.time)
        if took > bound + bounds.margin:
            report._add(
                "call-bounds",
                start.time,
                f"{e.f} of {e.process} took {took:.3f}s, bound {bound:.3f}s + {bounds.margin}s "
                f"({e.type} {e.data.get('error', '')})".rstrip(),
            )
    for (process, f), start in pending.items():
        if start.data.get("bound") is None or process in faults.killed:
            continue
        report.checked["call-bounds"] += 1
        report._add("call-bounds", start.time, f"{f} of {process} never returned")


def _check_recovery(
    events: list[Event], faults: _Faults, bounds: CheckBounds, report: CheckReport
) -> None:
    if faults.quiet is None:
        return
    quiet = faults.quiet
    if faults.end is not None and faults.end < quiet + bounds.recovery:
        return  # the run stopped too early to tell
    report.checked["recovery"] += 1
    writes = [e.time for e in events if e.f == "write" and e.type == OK and e.time >= quiet]
    if not writes or writes[0] > quiet + bounds.recovery:
        after = f"{writes[0] - quiet:.3f}s" if writes else "never"
        report._add(
            "recovery",
            quiet,
            f"first accepted write after the faults stopped came {after} "
            f"(bound {bounds.recovery}s)",
        )


def _check_availability(
    events: list[Event], faults: _Faults, bounds: CheckBounds, report: CheckReport
) -> None:
    grants = sorted(e.time for e in events if e.f == "acquire" and e.type == OK)
    for start, stop, kind, tolerated in faults.spans:
        if not tolerated or stop - start <= bounds.recovery or stop == float("inf"):
            continue
        alone = all(
            (a, b, k) == (start, stop, kind) or b < start - bounds.recovery or a > stop
            for a, b, k, _t in faults.spans
        )
        if not alone:
            continue
        report.checked["availability"] += 1
        first = bisect.bisect_left(grants, start)
        if first == len(grants) or grants[first] > stop:
            report._add(
                "availability",
                start,
                f"no lease was granted during {kind} ({stop - start:.3f}s), a fault the lock "
                f"is documented to survive",
            )
