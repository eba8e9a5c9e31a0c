"""Randomized fault schedules against every lock backend, and the checker that judges them.

The checker is a pure function over a history; the first tests feed it
hand-made histories that break each invariant, so it is known to fail
when it should. The slow tests at the end run a seeded nemesis against
real servers (about 10-13 s per backend; the seed is printed, and a failure
names it: replay with `python -m benchmarks.locking soak --backend B --seed S`).
"""

from __future__ import annotations

import itertools
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError
from scalekit.testing.history import Event, HistoryRecorder, read_history
from scalekit.testing.lock_checker import CheckBounds, check_lock_history
from scalekit.testing.nemesis import Fault, Nemesis, make_schedule

BOUNDS = CheckBounds(notice=0.0, recovery=1.0, margin=0.1)


def ev(
    process: str,
    type: str,
    f: str,
    time: float,
    token: int | None = None,
    value: Any = None,
    **data: Any,
) -> Event:
    return Event(process, type, f, time, token, value, data)


def section(
    process: str,
    token: int,
    start: float,
    read: int,
    *,
    deadline: float | None = None,
    wrote: bool = True,
    released: bool = True,
    lost: bool = False,
) -> list[Event]:
    """One well-behaved lease: acquire, fenced read of *read*, write of read + 1, release."""
    t = start
    out = [
        ev(process, "invoke", "acquire", t, bound=1.0),
        ev(process, "ok", "acquire", t + 0.01, token, deadline=deadline),
        ev(process, "invoke", "read", t + 0.02, token, bound=0.5, checked=t + 0.02, lost=lost),
        ev(process, "ok", "read", t + 0.03, token, read),
        ev(
            process,
            "invoke",
            "write",
            t + 0.04,
            token,
            read + 1,
            bound=0.5,
            checked=t + 0.04,
            lost=lost,
        ),
    ]
    out.append(ev(process, "ok" if wrote else "fail", "write", t + 0.05, token, read + 1))
    if released:
        out += [
            ev(process, "invoke", "release", t + 0.06, token, bound=0.5),
            ev(process, "ok", "release", t + 0.07, token),
        ]
    return out


def clean(n: int = 5) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        events += section(f"w{i % 2}", i + 1, i * 0.1, i, deadline=i * 0.1 + 1.0)
    return events


def check(events: list[Event], final: int, bounds: CheckBounds = BOUNDS) -> Any:
    return check_lock_history(
        sorted(events, key=lambda e: e.time), final_value=final, bounds=bounds
    )


def test_a_clean_history_passes() -> None:
    report = check(clean(), 5)
    assert report.ok, report.table()
    assert report.checked["fencing"] == 10 and report.checked["exclusion"] == 10


def test_a_store_that_accepts_a_lower_token_fails_fencing() -> None:
    """Lease 7 knows it is lost, yet the store takes its write after lease 9 claimed the key."""
    events = clean(3)
    events += [
        ev("w0", "invoke", "acquire", 1.0, bound=1.0),
        ev("w0", "ok", "acquire", 1.01, 7, deadline=1.3),
        ev("w0", "invoke", "read", 1.02, 7, bound=0.5, checked=1.02, lost=False),
        ev("w0", "ok", "read", 1.03, 7, 3),
        ev("w0", "info", "notice", 1.3, 7),
        ev("w1", "invoke", "acquire", 1.4, bound=1.0),
        ev("w1", "ok", "acquire", 1.41, 9, deadline=1.7),
        ev("w1", "invoke", "read", 1.42, 9, bound=0.5, checked=1.42, lost=False),
        ev("w1", "ok", "read", 1.43, 9, 3),
        ev("w0", "invoke", "write", 1.5, 7, 4, bound=0.5, checked=1.5, lost=True),
        ev("w0", "ok", "write", 1.51, 7, 4),
        ev("w1", "invoke", "write", 1.6, 9, 4, bound=0.5, checked=1.6, lost=False),
        ev("w1", "ok", "write", 1.61, 9, 4),
        ev("w1", "invoke", "release", 1.62, 9, bound=0.5),
        ev("w1", "ok", "release", 1.63, 9),
    ]
    report = check(events, 4)
    assert {v.invariant for v in report.violations} == {"fencing", "no-lost-update"}
    assert "write by w0 accepted token 7 after token 9" in report.failed("fencing")[0].message
    # The same history where the store refused the stale write is clean.
    fixed = [
        e if (e.f, e.time) != ("write", 1.51) else ev("w0", "fail", "write", 1.51, 7, 4)
        for e in events
    ]
    assert check(fixed, 4).ok, check(fixed, 4).table()


def test_a_lost_update_fails() -> None:
    events = clean(3)
    events += section("w0", 4, 0.5, 3)
    events += section("w1", 5, 0.6, 3)  # read 3 as well: both wrote 4
    report = check(events, 4)
    # The values say the store took token 4 after 5 as well.
    assert {v.invariant for v in report.violations} == {"no-lost-update", "fencing"}
    assert len(report.failed("no-lost-update")) == 2  # a value written twice; 5 writes, final 4


def test_the_final_value_may_include_writes_of_unknown_outcome_only() -> None:
    events = clean(3)
    events += [
        ev("w0", "invoke", "write", 0.9, 9, 4, bound=0.5),
        ev("w0", "info", "write", 1.0, 9, 4, error="BackendUnavailableError"),
    ]
    assert check(events, 4).ok
    assert check(events, 3).ok
    assert not check(events, 5).ok
    assert not check(events, 2).ok


def test_a_holder_that_reads_its_lease_as_held_after_a_successor_was_granted_fails() -> None:
    events = section("w0", 1, 0.0, 0, deadline=1.0, released=False)
    events += section("w1", 2, 0.3, 1, deadline=1.3)
    # w0 checks its lease again at 0.5, after w1 was granted at 0.31, and finds it not lost.
    events += [ev("w0", "invoke", "write", 0.5, 1, 1, checked=0.5, lost=False, bound=0.5)]
    events += [ev("w0", "fail", "write", 0.51, 1, 1, error="StaleTokenError")]
    events += [ev("w0", "info", "notice", 1.0, 1)]
    report = check(events, 2)
    assert [v.invariant for v in report.violations] == ["exclusion"]
    assert "0.190s after w1 was granted token 2" in report.violations[0].message
    # The same check with the lease seen as lost is fine.
    ok = [
        e if e.time != 0.5 else ev("w0", "invoke", "write", 0.5, 1, 1, checked=0.5, lost=True)
        for e in events
    ]
    assert check(ok, 2).failed("exclusion") == []


def test_a_session_closed_by_force_is_exempt_from_exclusion_for_expiry_notice() -> None:
    events = section("w0", 1, 0.0, 0, released=False) + section("w1", 2, 0.3, 1)
    events += [
        ev("nemesis", "invoke", "expire", 0.2, target="w0"),
        ev("nemesis", "ok", "expire", 0.25, target="w0"),
        ev("w0", "invoke", "write", 0.5, 1, 1, checked=0.5, lost=False, bound=0.5),
        ev("w0", "fail", "write", 0.51, 1, 1, error="StaleTokenError"),
        ev("w0", "info", "notice", 0.52, 1),
    ]
    bounds = CheckBounds(notice=0.0, recovery=1.0, margin=0.1, expiry_notice=1.0)
    assert check(events, 2, bounds).ok, check(events, 2, bounds).table()
    strict = CheckBounds(notice=0.0, recovery=1.0, margin=0.1, expiry_notice=0.1)
    assert check(events, 2, strict).failed("exclusion")


def test_a_token_granted_twice_fails_exclusion() -> None:
    events = section("w0", 1, 0.0, 0) + section("w1", 1, 0.2, 1)
    assert "token 1 was granted to w0 and to w1" in check(events, 2).failed("exclusion")[0].message


def test_a_local_deadline_past_the_servers_expiry_fails_validity() -> None:
    events = [
        ev("w0", "invoke", "acquire", 0.0, bound=1.0),
        ev("w0", "ok", "acquire", 0.01, 1, deadline=3.0, validity_ms=1695, validity_at=0.02),
        ev("nemesis", "info", "end", 0.1),
    ]
    report = check(events, 0)
    assert [v.invariant for v in report.violations] == ["validity"]
    assert "1.285s after the server's expiry" in report.violations[0].message
    fine = [
        events[0],
        ev("w0", "ok", "acquire", 0.01, 1, deadline=1.7, validity_ms=1695, validity_at=0.02),
        events[2],
    ]
    assert check(fine, 0).ok


def test_a_lease_that_outlives_its_deadline_must_be_told_in_time() -> None:
    held = section("w0", 1, 0.0, 0, deadline=0.5, released=False)
    report = check([*held, ev("nemesis", "info", "end", 5.0)], 1)
    assert "told never its deadline" in report.failed("notice")[0].message
    late = [*held, ev("w0", "info", "notice", 0.7, 1), ev("nemesis", "info", "end", 5.0)]
    assert "0.200s after its deadline" in check(late, 1).failed("notice")[0].message
    on_time = [*held, ev("w0", "info", "notice", 0.55, 1), ev("nemesis", "info", "end", 5.0)]
    assert check(on_time, 1).ok


def test_a_frozen_or_killed_holder_is_due_only_after_it_runs_again() -> None:
    held = [
        *section("w0", 1, 0.0, 0, deadline=0.5, released=False),
        ev("nemesis", "invoke", "pause", 0.2, target="w0"),
        ev("nemesis", "ok", "pause", 2.0, target="w0"),
        ev("nemesis", "info", "end", 5.0),
    ]
    assert check([*held, ev("w0", "info", "notice", 2.05, 1)], 1).ok
    assert check([*held, ev("w0", "info", "notice", 2.3, 1)], 1).failed("notice")
    killed = [
        *section("w0", 1, 0.0, 0, deadline=0.5, released=False),
        ev("nemesis", "info", "kill", 0.3, target="w0"),
        ev("nemesis", "info", "end", 5.0),
    ]
    assert check(killed, 1).ok


def test_without_a_ttl_the_holder_must_be_told_by_its_successors_grant() -> None:
    events = section("w0", 1, 0.0, 0, released=False) + section("w1", 2, 1.0, 1)
    events.append(ev("nemesis", "info", "end", 5.0))
    assert "told never w1 got token 2" in check(events, 2).failed("notice")[0].message
    assert check([*events, ev("w0", "info", "notice", 0.9, 1)], 2).ok


def test_a_call_over_its_bound_fails_unless_its_process_was_frozen() -> None:
    slow = [
        ev("w0", "invoke", "acquire", 0.0, bound=1.0),
        ev("w0", "fail", "acquire", 1.5, error="X"),
    ]
    assert (
        "acquire of w0 took 1.500s, bound 1.000s" in check(slow, 0).failed("call-bounds")[0].message
    )
    frozen = [
        *slow,
        ev("nemesis", "invoke", "pause", 0.2, target="w0"),
        ev("nemesis", "ok", "pause", 0.8, target="w0"),
    ]
    assert check(frozen, 0).ok
    hung = [ev("w0", "invoke", "release", 0.0, 1, bound=0.5)]
    assert "release of w0 never returned" in check(hung, 0).failed("call-bounds")[0].message
    assert check([*hung, ev("nemesis", "info", "kill", 0.1, target="w0")], 0).ok


def test_progress_must_resume_within_the_recovery_bound() -> None:
    events = [*clean(2), ev("nemesis", "info", "quiet", 1.0), ev("nemesis", "info", "end", 3.0)]
    assert "came never" in check(events, 2).failed("recovery")[0].message
    events += section("w0", 3, 1.5, 2)
    assert check(events, 3).ok
    late = (
        clean(2)
        + section("w0", 3, 2.5, 2)
        + [
            ev("nemesis", "info", "quiet", 1.0),
            ev("nemesis", "info", "end", 3.0),
        ]
    )
    assert "1.550s" in check(late, 3).failed("recovery")[0].message


def test_a_tolerated_fault_alone_must_not_stop_acquisition() -> None:
    """One Redlock master down for 2 s, nothing else: some lease must be granted meanwhile."""
    fault = [
        ev("nemesis", "invoke", "oom", 1.0, target=1, tolerated=True),
        ev("nemesis", "ok", "oom", 3.0, target=1),
        ev("nemesis", "info", "quiet", 3.0),
        ev("nemesis", "info", "end", 5.0),
    ]
    before = clean(3)  # grants at 0.01 to 0.21, all before the fault
    after = section("w0", 4, 3.5, 3)
    report = check([*before, *fault, *after], 4)
    assert report.checked["availability"] == 1
    assert "no lease was granted during oom (2.000s)" in report.failed("availability")[0].message
    during = section("w1", 4, 2.0, 3) + section("w0", 5, 3.5, 4)
    assert check([*before, *fault, *during], 5).ok, check([*before, *fault, *during], 5).table()
    # Not tolerated, too short, or with another fault near it: not judged.
    untolerated = [ev("nemesis", "invoke", "oom", 1.0, target=1), *fault[1:]]
    assert check([*before, *untolerated, *after], 4).checked["availability"] == 0
    short = [fault[0], ev("nemesis", "ok", "oom", 1.9, target=1), *fault[2:]]
    assert check([*before, *short, *after], 4).checked["availability"] == 0
    paused = [
        ev("nemesis", "invoke", "pause", 0.5, target="w1"),
        ev("nemesis", "ok", "pause", 0.6, target="w1"),
    ]
    assert check([*before, *paused, *fault, *after], 4).checked["availability"] == 0


def test_an_undocumented_error_fails_call_bounds() -> None:
    events = [
        ev("w0", "invoke", "acquire", 0.0, bound=1.0),
        ev("w0", "fail", "acquire", 0.1, error="BackendError: UNBLOCKED", undocumented=True),
    ]
    message = check(events, 0).failed("call-bounds")[0].message
    assert "acquire of w0 raised an error it does not document: BackendError" in message


def test_the_table_lists_every_invariant() -> None:
    table = check(clean(), 5).table().splitlines()
    assert [row.split()[0] for row in table[1:]] == [
        "fencing",
        "no-lost-update",
        "exclusion",
        "validity",
        "notice",
        "call-bounds",
        "recovery",
        "availability",
    ]


def test_histories_round_trip_and_a_cut_last_line_is_skipped(tmp_path: Path) -> None:
    rec = HistoryRecorder(tmp_path / "w0.jsonl", "w0")
    rec.invoke("acquire", bound=1.0)
    rec.ok("acquire", token=2**62, deadline=3.5)
    rec.close()
    with open(tmp_path / "w0.jsonl", "a") as f:
        f.write('{"process": "w0", "type": "ok", "f": "re')
    other = HistoryRecorder(tmp_path / "w1.jsonl", "w1")
    other.info("notice", token=1)
    other.close()
    events = read_history([tmp_path / "w0.jsonl", tmp_path / "w1.jsonl", tmp_path / "none.jsonl"])
    assert [(e.process, e.type, e.f) for e in events] == [
        ("w0", "invoke", "acquire"),
        ("w0", "ok", "acquire"),
        ("w1", "info", "notice"),
    ]
    assert events[1].token == 2**62 and events[1].data == {"deadline": 3.5}


def test_schedules_are_seeded_and_bounded() -> None:
    kinds = ["pause-holder", "restart", "blackhole"]
    first = make_schedule(7, kinds, 10.0, durations={"restart": (0.1, 0.2)})
    assert first == make_schedule(7, kinds, 10.0, durations={"restart": (0.1, 0.2)})
    assert first != make_schedule(8, kinds, 10.0, durations={"restart": (0.1, 0.2)})
    assert first and all(f.at < 10.0 and f.kind in kinds for f in first)
    assert all(0.1 <= f.duration <= 0.2 for f in first if f.kind == "restart")
    assert all(a.at + a.duration < b.at for a, b in itertools.pairwise(first))
    with pytest.raises(ConfigurationError, match="kinds must name"):
        make_schedule(1, [], 1.0)


def test_overlapping_schedules_have_at_most_two_faults_active_at_once() -> None:
    kinds = ["pause-holder", "blackhole"]
    schedule = make_schedule(5, kinds, 60.0, overlap=0.5)
    assert schedule == make_schedule(5, kinds, 60.0, overlap=0.5)
    overlapping = [(a, b) for a, b in itertools.pairwise(schedule) if a.at + a.duration > b.at]
    assert 5 <= len(overlapping) < len(schedule)
    for a, b, c in zip(schedule, schedule[1:], schedule[2:], strict=False):
        assert c.at >= min(a.at + a.duration, b.at + b.duration)  # never three at once
    assert schedule[0].at == make_schedule(5, kinds, 60.0)[0].at  # same first draw
    with pytest.raises(ConfigurationError, match=r"overlap must be a number in \[0, 1\]"):
        make_schedule(1, kinds, 1.0, overlap=1.5)


def test_the_nemesis_records_each_fault_and_the_quiet_instant(tmp_path: Path) -> None:
    rec = HistoryRecorder(tmp_path / "n.jsonl", "nemesis")
    applied: list[str] = []

    def act(fault: Fault, r: HistoryRecorder) -> None:
        r.invoke(fault.kind)
        applied.append(fault.kind)
        r.ok(fault.kind)

    def broken(fault: Fault, r: HistoryRecorder) -> None:
        raise RuntimeError("boom")

    nemesis = Nemesis(
        [Fault(0.0, "a", 0.0, 0.5), Fault(0.01, "b", 0.0, 0.5), Fault(0.02, "a", 0.0, 0.5)],
        {"a": act, "b": broken},
        rec,
    )
    nemesis.start()
    assert nemesis.join(5)
    rec.close()
    assert applied == ["a", "a"] and nemesis.errors == ["b: RuntimeError('boom')"]
    kinds = [(e.type, e.f) for e in read_history([tmp_path / "n.jsonl"])]
    assert kinds == [
        ("invoke", "a"),
        ("ok", "a"),
        ("fail", "b"),
        ("invoke", "a"),
        ("ok", "a"),
        ("info", "quiet"),
    ]
    with pytest.raises(ConfigurationError, match="without an action"):
        Nemesis([Fault(0.0, "c", 0.0, 0.0)], {}, rec)


def test_the_nemesis_runs_overlapping_faults_at_once(tmp_path: Path) -> None:
    rec = HistoryRecorder(tmp_path / "n.jsonl", "nemesis")
    both = threading.Barrier(2, timeout=5)

    def act(fault: Fault, r: HistoryRecorder) -> None:
        r.invoke(fault.kind)
        both.wait()  # returns only if the other fault is active too
        r.ok(fault.kind)

    nemesis = Nemesis(
        [Fault(0.0, "a", 0.5, 0.5), Fault(0.05, "b", 0.5, 0.5)], {"a": act, "b": act}, rec
    )
    nemesis.start()
    assert nemesis.join(10)
    rec.close()
    assert nemesis.errors == [] and nemesis.applied == 2
    kinds = [(e.type, e.f) for e in read_history([tmp_path / "n.jsonl"])]
    assert kinds[:2] == [("invoke", "a"), ("invoke", "b")] and kinds[-1] == ("info", "quiet")


# -- seeded schedules on real servers (slow: about 10-15 s each) -------------------------

# A few fixed seeds keep CI at about 45 s for the Redis backends; `python -m
# benchmarks.locking soak` runs longer schedules with random seeds. Each
# seed is picked for what it covers: redis 90 a kill -9 of the holder, an
# OOM, a delay, a reset, the server made a replica (READONLY, and UNBLOCKED
# for the waiters in BLPOP), a restart and a SIGSTOP; async-redis 7 three BUSY scripts,
# a blackhole overlapping a restart, kills and a SIGSTOP; redlock 3 one
# master READONLY, then BUSY overlapping OOM on another (two masters
# faulted at once); redlock 11 one master READONLY for 1.8 s alone (the
# availability check judges it), a restart, a kill -9 of the holder and a
# worker's clock 0.5 % slow for 2.1 s. The ZooKeeper schedules
# (ensemble and standalone) are in test_zookeeper_faults.py.
CI_SEEDS = [("redis", 90), ("async-redis", 7), ("redlock", 3), ("redlock", 11)]


def run_and_check(backend: str, seed: int, seconds: float = 5.0) -> None:
    pytest.importorskip("redis")
    if backend.startswith("zookeeper"):
        pytest.importorskip("kazoo")
    from scalekit.testing.lock_workload import run_schedule

    print(f"fault schedule: backend={backend} seed={seed} seconds={seconds}")
    result = run_schedule(backend, seed=seed, seconds=seconds)
    print(result.summary())
    print(result.report.table())
    faults = ", ".join(f"{f.kind}@{f.at:.1f}s/{f.duration:.1f}s" for f in result.schedule)
    assert result.report.ok, (
        f"backend={backend} seed={seed}: replay with `python -m benchmarks.locking soak "
        f"--backend {backend} --seed {seed} --seconds {seconds}`\nfaults: {faults}\n"
        f"{result.report.table()}\n" + "\n".join(v.message for v in result.report.violations[:10])
    )
    assert not result.nemesis_errors, result.nemesis_errors
    assert result.kept is None  # a passing run's temporary directory is removed
    stats = result.report.stats
    assert stats["writes_ok"] >= 10, f"too little progress to judge: {result.summary()}"
    assert result.report.checked["recovery"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "seed"), CI_SEEDS)
def test_seeded_fault_schedule_keeps_every_invariant(backend: str, seed: int) -> None:
    run_and_check(backend, seed)


def test_a_schedule_can_leave_out_faults_the_backend_has_and_only_those() -> None:
    from scalekit.testing.lock_workload import FAULTS, run_schedule

    assert "readonly" in FAULTS["redis"] and "partition-follower" in FAULTS["zookeeper"]
    with pytest.raises(ConfigurationError, match=r"without must name faults of 'redis'.*'nope'"):
        run_schedule("redis", seed=1, seconds=1.0, without=["nope"])
    with pytest.raises(ConfigurationError, match="without must leave some fault"):
        run_schedule("redis", seed=1, seconds=1.0, without=list(FAULTS["redis"]))


def test_a_failing_run_keeps_its_histories(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `soak --help` promises for `--keep`'s default (a 1 s schedule: about 5 s)."""
    pytest.importorskip("redis")
    from scalekit.testing import lock_workload
    from scalekit.testing.lock_checker import Violation

    real = lock_workload.check_lock_history

    def checker(*args: Any, **kwargs: Any) -> Any:
        report = real(*args, **kwargs)  # as if the checker had found a violation
        report.violations.append(Violation("notice", 0.0, "a lease was told never"))
        return report

    monkeypatch.setattr(lock_workload, "check_lock_history", checker)
    failed = lock_workload.run_schedule("redis", seed=90, seconds=1.0)
    assert not failed.report.ok and failed.kept is not None
    try:
        assert (failed.kept / "nemesis.jsonl").exists() and list(failed.kept.glob("w*.jsonl"))
    finally:
        shutil.rmtree(failed.kept, ignore_errors=True)
