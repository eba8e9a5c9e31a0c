"""Sub-day partitions across DST changes in every zone: unique names, no lost moments.

Scans every zoneinfo zone for the UTC offset changes of 2026-2035 (weekly
samples, then bisection) and checks hour, minute and day partitions around
a seeded sample of them; about 6 s.
"""

from __future__ import annotations

import random
import zoneinfo
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from scalekit.sharding import TimeRouter

UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2036, 1, 1, tzinfo=UTC)
TEMPLATES = {"minute": "t_{:%Y%m%d_%H%M}", "hour": "h_{:%Y_%m_%d_%H}", "day": "d_{:%Y%m%d}"}


def offset(zone: ZoneInfo, when: datetime) -> timedelta | None:
    return when.astimezone(zone).utcoffset()


def transitions(zone: ZoneInfo) -> list[datetime]:
    found = []
    when = START
    step = timedelta(days=7)
    while when < END:
        later = when + step
        if offset(zone, when) != offset(zone, later):
            lo, hi = when, later
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if offset(zone, mid) == offset(zone, lo):
                    lo = mid
                else:
                    hi = mid
            found.append(hi.replace(microsecond=0))
        when = later
    return found


ALL = [
    (name, when)
    for name in sorted(zoneinfo.available_timezones())
    for when in transitions(ZoneInfo(name))
]
NAMED = [
    (name, when)
    for name, when in ALL
    if name in ("Europe/Berlin", "Australia/Lord_Howe", "Antarctica/Troll", "Africa/Cairo")
    and when.year == 2026
]
CASES = NAMED + random.Random(15).sample(ALL, min(len(ALL), 150))


def check_around(router: TimeRouter, moment: datetime, span: timedelta, step: timedelta) -> None:
    seen: dict[str, tuple[datetime, datetime]] = {}
    previous = None
    when = moment - span
    while when <= moment + span:
        part = router.partition(when)
        assert part.start <= when < part.end, f"{part} does not hold {when.astimezone(router.tz)}"
        assert router.route(when) == part.name
        assert seen.setdefault(part.name, (part.start, part.end)) == (part.start, part.end), (
            f"two partitions named {part.name}: {seen[part.name]} and {(part.start, part.end)}"
        )
        if previous is not None and previous != part:
            assert previous.end == part.start, f"a gap or overlap between {previous} and {part}"
        assert router.parse(part.name) == part
        assert router.partition(part.end).start == part.end
        previous = part
        when += step


def test_berlin_fall_back_names_the_two_two_oclock_hours_apart() -> None:
    router = TimeRouter("hour", "h_{:%Y_%m_%d_%H}", tz=ZoneInfo("Europe/Berlin"))
    summer = router.partition(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 02:30 CEST
    winter = router.partition(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET
    assert summer.name != winter.name
    assert summer.end == winter.start == datetime(2026, 10, 25, 1, tzinfo=UTC)
    assert router.parse(winter.name) == winter and router.parse(summer.name) == summer
    now = datetime(2026, 10, 25, 4, 15, tzinfo=UTC)  # 05:15 CET
    dropped = router.expired(now, keep=timedelta(hours=3), partitions=[summer.name, winter.name])
    assert dropped == [summer.name]  # the winter hour holds data newer than now - 3 h


def test_lord_howe_half_hour_shift_keeps_every_moment_in_its_partition() -> None:
    router = TimeRouter("hour", "h_{:%Y_%m_%d_%H}", tz=ZoneInfo("Australia/Lord_Howe"))
    when = datetime(2026, 4, 4, 15, 15, tzinfo=UTC)  # 01:45 +10:30, after clocks went back
    part = router.partition(when)
    assert part.start <= when < part.end


@pytest.mark.parametrize("interval", ["hour", "minute", "day"])
def test_every_zone_and_transition_of_ten_years(interval: str) -> None:
    assert len(ALL) > 1000 and len(NAMED) >= 7
    for name, moment in CASES:
        router = TimeRouter(interval, TEMPLATES[interval], tz=ZoneInfo(name))
        if interval == "minute":
            check_around(router, moment, timedelta(minutes=3), timedelta(seconds=20))
            check_around(
                router, moment + timedelta(hours=1), timedelta(minutes=2), timedelta(seconds=30)
            )
        elif interval == "hour":
            check_around(router, moment, timedelta(hours=3), timedelta(minutes=5))
        else:
            check_around(router, moment, timedelta(days=2), timedelta(minutes=30))
