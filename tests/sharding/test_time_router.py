"""TimeRouter: calendar-correct partitions, time zones, scans, retention and rollover."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit import ConfigurationError
from scalekit.sharding.time_router import INTERVALS, Rollover, TimeRouter

UTC = timezone.utc
TEMPLATES = {
    "minute": "t_{:%Y%m%d_%H%M}",
    "hour": "t_{:%Y%m%d_%H}",
    "day": "t_{:%Y%m%d}",
    "week": "t_{:%G_W%V}",
    "month": "t_{:%Y_%m}",
    "year": "t_{:%Y}",
}
ZONES = [
    UTC,
    ZoneInfo("Europe/Berlin"),
    ZoneInfo("America/New_York"),
    ZoneInfo("Asia/Kolkata"),
    timezone(timedelta(hours=-3, minutes=-30)),
]
MOMENTS = st.datetimes(
    min_value=datetime(1999, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.sampled_from(ZONES)
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_months_follow_the_calendar() -> None:
    router = TimeRouter("month", "orders_{:%Y_%m}")
    assert router.route(utc(2026, 1, 31, 23, 59, 59, 999999)) == "orders_2026_01"
    assert router.route(utc(2026, 2, 1)) == "orders_2026_02"
    assert router.route(utc(2028, 2, 29, 12)) == "orders_2028_02"
    feb = router.partition(utc(2028, 2, 10))
    assert (feb.start, feb.end) == (utc(2028, 2, 1), utc(2028, 3, 1))
    dec = router.partition(utc(2026, 12, 31))
    assert dec.end == utc(2027, 1, 1)
    lengths = [(p.end - p.start).days for p in router.partitions(utc(2026, 1, 1), utc(2027, 1, 1))]
    assert lengths == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_weeks_are_iso_weeks_and_years_are_calendar_years() -> None:
    weeks = TimeRouter("week", "w_{:%G_W%V}")
    assert weeks.route(utc(2026, 1, 1)) == "w_2026_W01"  # a Thursday: ISO week 1
    assert weeks.partition(utc(2026, 1, 1)).start == utc(2025, 12, 29)  # its Monday
    years = TimeRouter("year", "y{:%Y}")
    assert years.partition(utc(2024, 7, 1)).end == utc(2025, 1, 1)


def test_time_zones_decide_the_calendar() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    utc_router = TimeRouter("day", "d_{:%Y%m%d}")
    berlin_router = TimeRouter("day", "d_{:%Y%m%d}", tz=berlin)
    moment = datetime(2026, 3, 1, 0, 30, tzinfo=berlin)  # 2026-02-28 23:30 UTC
    assert utc_router.route(moment) == "d_20260228"
    assert berlin_router.route(moment) == "d_20260301"
    # the spring-forward day has 23 hours, the fall-back day 25
    spring = berlin_router.partition(datetime(2026, 3, 29, 12, tzinfo=berlin))
    assert spring.end.astimezone(UTC) - spring.start.astimezone(UTC) == timedelta(hours=23)
    fall = berlin_router.partition(datetime(2026, 10, 25, 12, tzinfo=berlin))
    assert fall.end.astimezone(UTC) - fall.start.astimezone(UTC) == timedelta(hours=25)


def test_naive_datetimes_are_rejected_unless_allowed() -> None:
    router = TimeRouter("hour", "h_{:%Y%m%d%H}")
    with pytest.raises(ValueError, match=r"^key must be an aware datetime, got the naive .* allow"):
        router.route(datetime(2026, 1, 1, 5))
    with pytest.raises(TypeError, match=r"^key must be a datetime, got date"):
        router.route(date(2026, 1, 1))
    tokyo = TimeRouter("hour", "h_{:%Y%m%d%H}", tz=ZoneInfo("Asia/Tokyo"), allow_naive=True)
    assert tokyo.route(datetime(2026, 1, 1, 5)) == "h_2026010105"
    assert tokyo.route(utc(2026, 1, 1, 5)) == "h_2026010114"


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError, match=r"interval must be one of .* got 'fortnight'"):
        TimeRouter("fortnight", "x_{:%Y}")
    with pytest.raises(ConfigurationError, match="exactly one"):
        TimeRouter("day", "orders")
    with pytest.raises(ConfigurationError, match="exactly one"):
        TimeRouter("day", "{:%Y}_{:%m}")
    with pytest.raises(ConfigurationError, match="gives two day partitions the same name"):
        TimeRouter("day", "orders_{:%Y_%m}")
    with pytest.raises(ConfigurationError, match="tz must be a tzinfo"):
        TimeRouter("day", "d{:%Y%m%d}", tz="UTC")  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(moment=MOMENTS, interval=st.sampled_from(INTERVALS), zone=st.sampled_from(ZONES))
def test_a_partition_holds_the_moment_and_tiles_time(
    moment: datetime, interval: str, zone: object
) -> None:
    router = TimeRouter(interval, TEMPLATES[interval], tz=zone)  # type: ignore[arg-type]
    part = router.partition(moment)
    assert part.start <= moment < part.end
    assert router.floor(part.start) == part.start
    after = router.partition(part.end)
    assert after.start == part.end and after.name != part.name
    assert router.parse(part.name).start == part.start


@settings(max_examples=80, deadline=None)
@given(
    a=MOMENTS,
    span=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
    interval=st.sampled_from(["hour", "day", "week", "month", "year"]),
)
def test_route_range_lists_every_partition_a_query_reads(
    a: datetime, span: timedelta, interval: str
) -> None:
    router = TimeRouter(interval, TEMPLATES[interval])
    b = a + span
    if interval == "hour" and span > timedelta(days=20):
        b = a + timedelta(days=20)
    parts = router.partitions(a, b)
    if a == b:
        assert parts == []
        return
    assert parts[0].start <= a < parts[0].end
    assert parts[-1].start < b <= parts[-1].end
    assert all(x.end == y.start for x, y in itertools.pairwise(parts))
    assert router.route_range(a, b) == [p.name for p in parts]
    assert router.route_range(a, parts[-1].end, inclusive=True)[-1] == router.route(parts[-1].end)


def test_retention_by_count_and_by_age() -> None:
    router = TimeRouter("month", "orders_{:%Y_%m}")
    now = utc(2026, 5, 10)
    assert router.retention_cutoff(now, 3) == utc(2026, 3, 1)
    assert router.expired(now, keep=3, since=utc(2025, 12, 3)) == [
        "orders_2025_12",
        "orders_2026_01",
        "orders_2026_02",
    ]
    existing = ["orders_2026_05", "orders_2026_01", "orders_2025_11", "orders_2026_03"]
    assert router.expired(now, keep=3, partitions=existing) == ["orders_2025_11", "orders_2026_01"]
    # by age: 98 days before May 10 is Feb 1, when January's partition ends
    assert router.expired(now, keep=timedelta(days=98), partitions=existing) == [
        "orders_2025_11",
        "orders_2026_01",
    ]
    assert router.expired(now, keep=timedelta(days=99), partitions=existing) == ["orders_2025_11"]
    with pytest.raises(ConfigurationError, match="exactly one of partitions= or since="):
        router.expired(now, keep=3)
    with pytest.raises(ConfigurationError, match="keep must be a positive integer, got 0"):
        router.expired(now, keep=0, since=utc(2020, 1, 1))
    with pytest.raises(ValueError, match="does not match template"):
        router.expired(now, keep=3, partitions=["invoices_2026_01"])


class StepClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_rollover_by_age_size_and_docs() -> None:
    clock = StepClock(utc(2026, 1, 1))
    index = Rollover("logs", max_age=timedelta(days=1), max_size=1000, max_docs=5, clock=clock)
    assert index.write_index == "logs-000001"
    assert index.record(size=400) == "logs-000001"
    assert index.maybe_rollover() is None
    index.record(size=600)
    assert index.maybe_rollover() == "logs-000002"  # size reached
    for _ in range(5):
        index.record()
    assert index.maybe_rollover() == "logs-000003"  # document count reached
    clock.now += timedelta(days=1)
    assert index.maybe_rollover() == "logs-000004"  # age reached
    assert index.read_indices() == ["logs-000001", "logs-000002", "logs-000003", "logs-000004"]
    # 1 and 2 rolled over a day ago, 3 just now
    assert index.expired(timedelta(hours=12)) == ["logs-000001", "logs-000002"]
    assert index.expired(timedelta(days=2)) == []
    with pytest.raises(ConfigurationError, match="at least one of max_age"):
        Rollover("logs")
    with pytest.raises(ConfigurationError, match="max_docs must be a positive integer, got 0"):
        Rollover("logs", max_docs=0)


@pytest.mark.parametrize(
    ("interval", "template"),
    [
        ("day", "d_{:%j}"),
        ("day", "d_{:%m_%d}"),
        ("hour", "h_{:%j_%H}"),
        ("month", "m_{:%y_%m}"),
        ("week", "w_{:%V}"),
    ],
)
def test_templates_without_the_full_year_are_refused(interval: str, template: str) -> None:
    with pytest.raises(ConfigurationError, match="must show the full year"):
        TimeRouter(interval, template)


def test_a_day_of_year_template_with_the_year_names_every_day_apart() -> None:
    router = TimeRouter("day", "d_{:%Y_%j}")
    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert router.route(first) == "d_2026_001"
    assert router.route(first.replace(year=2027)) == "d_2027_001"
    assert router.parse("d_2027_001").start == first.replace(year=2027)


@pytest.mark.parametrize(
    ("zone", "when", "message"),
    [
        ("America/Sitka", datetime(1867, 10, 19, 0, 45), "whole-minute offsets"),  # 24 h back
        ("Africa/Monrovia", datetime(1972, 1, 7, 0, 44, 10), "whole-minute offsets"),
        ("Europe/Amsterdam", datetime(1937, 6, 30, 22, 0), "whole-minute offsets"),
        ("Pacific/Kwajalein", datetime(1969, 10, 1, 12, 0), "set clocks back by 23:00:00"),
        ("Antarctica/Vostok", datetime(1994, 2, 1, 12, 0), "set clocks back by 7:00:00"),
    ],
)
def test_instants_under_unsupported_offset_changes_are_refused(
    zone: str, when: datetime, message: str
) -> None:
    for interval, template in (("hour", "h_{:%Y_%m_%d_%H}"), ("day", "d_{:%Y_%m_%d}")):
        router = TimeRouter(interval, template, tz=ZoneInfo(zone))
        instant = when.replace(tzinfo=timezone.utc)
        with pytest.raises(ConfigurationError, match=message):
            router.partition(instant)
        with pytest.raises(ConfigurationError, match=message):
            router.route(instant)


@pytest.mark.parametrize(
    ("zone", "when"),
    [
        ("Africa/Monrovia", datetime(1972, 1, 7, 1, 0)),  # just after its last LMT-like offset
        ("Antarctica/Vostok", datetime(1994, 2, 3, 12, 0)),  # 26 h after its 7 h change
        ("Pacific/Kwajalein", datetime(1993, 8, 20, 11, 0)),  # skips a day forward
        ("Pacific/Apia", datetime(2011, 12, 29, 10, 0)),  # skips a day forward
    ],
)
def test_partitions_around_supported_historical_changes_contain_what_they_route(
    zone: str, when: datetime
) -> None:
    tz = ZoneInfo(zone)
    for interval, template in (
        ("minute", "m_{:%Y_%m_%d_%H_%M}"),
        ("hour", "h_{:%Y_%m_%d_%H}"),
        ("day", "d_{:%Y_%m_%d}"),
    ):
        router = TimeRouter(interval, template, tz=tz)
        start = when.replace(tzinfo=timezone.utc)
        seen: dict[str, tuple[datetime, datetime]] = {}
        step = timedelta(seconds=20) if interval == "minute" else timedelta(minutes=10)
        for i in range(0, 200):
            instant = start + i * step
            part = router.partition(instant)
            assert part.start <= instant < part.end, (interval, instant)
            assert seen.setdefault(part.name, (part.start, part.end)) == (part.start, part.end)
            parsed = router.parse(part.name)
            assert (parsed.start, parsed.end) == (part.start, part.end)
