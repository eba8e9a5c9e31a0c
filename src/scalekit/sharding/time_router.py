"""TimeRouter: calendar partitions (`orders_2026_11`), retention and rollover.

Partitions follow the calendar of one time zone (UTC by default): a month
partition runs from the 1st at 00:00 to the next 1st, whatever the month's
length; weeks are ISO weeks starting on Monday. Retention works like
TimescaleDB's `drop_chunks(older_than)`; `Rollover` rolls a write
index over by age, size or document count as Elasticsearch's ILM does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

from .._validation import non_empty_str, positive_int, wrong_type
from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import Router
from .rollover import Rollover

__all__ = ["INTERVALS", "Interval", "Partition", "Rollover", "TimeRouter"]

#: The partition lengths a `TimeRouter` accepts.
Interval = Literal["minute", "hour", "day", "week", "month", "year"]
INTERVALS: tuple[Interval, ...] = ("minute", "hour", "day", "week", "month", "year")
_FIELD = re.compile(r"\{:([^{}]*)\}")
_REPEAT = re.compile(r"_[pm]\d{4}$")
_TICK = timedelta(microseconds=1)
_LOOKBACK = timedelta(hours=3)  # longer than any clock change (Antarctica/Troll's 2 h)
_WINDOW = timedelta(hours=26)  # longer than any change that set clocks back (Alaska 1867: 24 h)
_YEAR = re.compile(r"%[YGs]")


@dataclass(frozen=True, order=True)
class Partition:
    """One time partition: its name and the half-open span `[start, end)` it holds."""

    start: datetime
    end: datetime
    name: str


class TimeRouter(Router[str]):
    """Route timestamps to calendar partitions named by a template.

    Args:
        interval: one of `INTERVALS`.
        template: a `str.format` template with exactly one `{:<strftime>}`
            field, e.g. `"orders_{:%Y_%m}"`; it must give each partition its own name.
        tz: the time zone whose calendar partitions follow (UTC by default),
            e.g. `zoneinfo.ZoneInfo("Europe/Berlin")`.
        allow_naive: treat naive datetimes as wall time in *tz* instead of
            rejecting them.

    Raises:
        ConfigurationError: unknown interval, a template without exactly
            one field, or one that names two partitions alike.

    Thread-safety: immutable; every method may be called from any thread.

    ```pycon
    >>> router = TimeRouter("month", "orders_{:%Y_%m}")
    >>> router.route(datetime(2026, 2, 28, 23, 59, tzinfo=timezone.utc))
    'orders_2026_02'

    ```
    """

    def __init__(
        self,
        interval: Interval,
        template: str,
        *,
        tz: tzinfo = timezone.utc,
        allow_naive: bool = False,
    ) -> None:
        if not isinstance(interval, str):
            raise wrong_type("interval", interval, f"one of {', '.join(map(repr, INTERVALS))}")
        if interval not in INTERVALS:
            raise ConfigurationError(
                f"interval must be one of {', '.join(map(repr, INTERVALS))}, got {interval!r}"
            )
        non_empty_str("template", template)
        fields = _FIELD.findall(template)
        if len(fields) != 1 or template.count("{") != 1:
            raise ConfigurationError(
                "template must hold exactly one '{:<strftime format>}' field, "
                f"e.g. 'orders_{{:%Y_%m}}', got {template!r}"
            )
        if not isinstance(tz, tzinfo):
            raise ConfigurationError(f"tz must be a tzinfo, got {tz!r}")
        self.interval = interval
        self.template = template
        self.tz = tz
        self.allow_naive = allow_naive
        self._prefix, self._suffix = template.split("{", 1)[0], template.rsplit("}", 1)[1]
        self._format = fields[0]
        if not _YEAR.search(self._format.replace("%%", "")):
            raise ConfigurationError(
                f"template {template!r} must show the full year (%Y, or %G with %V for ISO "
                "weeks): without it, partitions a year (or, with %y, a century) apart share "
                "a name"
            )
        self._shows_offset = "%z" in self._format or "%Z" in self._format
        self._names: dict[tuple[Any, timedelta | None], str] = {}
        probe = self.partition(datetime(2023, 12, 25, 13, 45, tzinfo=tz))
        names = set()
        for _ in range(3 if interval == "year" else 60):  # crosses a month and a year
            names.add(probe.name)
            probe = self.partition(probe.end)
        if len(names) != (3 if interval == "year" else 60):
            raise ConfigurationError(
                f"template {template!r} gives two {interval} partitions the same name; "
                "include every field down to the interval (e.g. %Y_%m for months)"
            )

    # -- routing ---------------------------------------------------------------------

    def route(self, key: datetime) -> str:
        """Return the name of the partition holding the datetime *key*.

        Raises:
            TypeError: not a datetime.
            ValueError: naive, unless allowed.

        Runtime complexity: O(1); names are cached per wall-clock bucket and
        UTC offset, which is what tells partitions apart.
        """
        when = self._aware(key, "key")
        tz = self.tz
        # Through UTC when the datetime is in tz already: astimezone() to its
        # own zone would keep a wall time in a DST gap as it is.
        try:
            local = when.astimezone(timezone.utc if when.tzinfo is tz else tz)
            if local.tzinfo is not tz:
                local = local.astimezone(tz)
        except (OverflowError, ValueError) as exc:
            raise self._out_of_range("key", key, exc) from None
        bucket = (self._bucket(local), local.utcoffset())
        name = self._names.get(bucket)
        if name is None:
            with self._in_range("key", key):
                start = self._floor(local)
                self._next_start(start)  # a name parse() can read back: its partition ends
                name = self._name(start)
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[bucket] = name
        return name

    def _bucket(self, local: datetime) -> Any:
        interval = self.interval
        if interval == "hour":
            return (local.year, local.month, local.day, local.hour)
        if interval == "minute":
            return (local.year, local.month, local.day, local.hour, local.minute)
        if interval == "day":
            return (local.year, local.month, local.day)
        if interval == "month":
            return (local.year, local.month)
        if interval == "year":
            return local.year
        return local.date() - timedelta(days=local.weekday())

    def partition(self, when: datetime) -> Partition:
        """The `Partition` holding *when*."""
        return self._partition(self._aware(when, "when"), "when", when)

    def _partition(self, when: datetime, argument: str, value: Any) -> Partition:
        with self._in_range(argument, value):
            start = self._floor(when)
            return Partition(start, self._next_start(start), self._name(start))

    def route_range(self, start: datetime, end: datetime, *, inclusive: bool = False) -> list[str]:
        """Names of every partition a query over `[start, end)` (or `[start, end]`) reads.

        Runtime complexity: O(partitions returned).
        """
        return [p.name for p in self.partitions(start, end, inclusive=inclusive)]

    def partitions(
        self, start: datetime, end: datetime, *, inclusive: bool = False
    ) -> list[Partition]:
        """Every `Partition` overlapping `[start, end)` (`[start, end]` if inclusive)."""
        lo, hi = self._aware(start, "start"), self._aware(end, "end")
        if hi < lo or (hi == lo and not inclusive):
            return []
        result = []
        current = self._partition(lo, "start", start)
        while current.start < hi or (inclusive and current.start == hi):
            result.append(current)
            current = self._partition(current.end, "end", end)
        return result

    # -- calendar --------------------------------------------------------------------

    def floor(self, when: datetime) -> datetime:
        """The start of the partition holding *when*.

        An aware datetime at `tz`'s UTC offset of that instant (a
        fixed-offset `timezone`, so starts compare as instants even in a
        repeated hour; `.astimezone(tz)` gives the zone's own datetime).

        Minute and hour partitions are the spans of one wall-clock minute or
        hour under one UTC offset: where clocks go back, the repeated hour is
        a partition of its own, and where they skip half an hour, the hour's
        partition starts at the transition.
        """
        aware = self._aware(when, "when")
        with self._in_range("when", when):
            return self._floor(aware)

    def _floor(self, when: datetime) -> datetime:
        # Through UTC: astimezone() to the datetime's own zone would keep a wall
        # time that does not exist (in a DST gap) as it is.
        local = when.astimezone(timezone.utc).astimezone(self.tz)
        self._check_supported(local)
        interval = self.interval
        if interval == "minute" or interval == "hour":
            offset = local.utcoffset()
            assert offset is not None
            if interval == "minute":
                wall = local.replace(second=0, microsecond=0, tzinfo=None, fold=0)
            else:
                wall = local.replace(minute=0, second=0, microsecond=0, tzinfo=None, fold=0)
            start = (wall - offset).replace(tzinfo=timezone.utc)
            if self._offset(start) != offset:
                # The offset changed inside this wall minute or hour: the span
                # under *when*'s offset begins at the change.
                start = self._change_after(start, local.astimezone(timezone.utc))
            return _fixed(start, self.tz)
        day = local.date()
        if interval == "week":
            day -= timedelta(days=day.weekday())
        elif interval == "month":
            day = day.replace(day=1)
        elif interval == "year":
            day = day.replace(month=1, day=1)
        return _fixed(_wall(day.year, day.month, day.day, self.tz), self.tz)

    def next_start(self, start: datetime) -> datetime:
        """The start of the partition after the one starting at *start*."""
        aware = self._aware(start, "start")
        with self._in_range("start", start):
            return self._next_start(aware)

    def _next_start(self, start: datetime) -> datetime:
        start = start.astimezone(timezone.utc).astimezone(self.tz)
        if self.interval in ("minute", "hour"):
            offset = start.utcoffset()
            assert offset is not None
            step = timedelta(minutes=1) if self.interval == "minute" else timedelta(hours=1)
            if self.interval == "minute":
                wall = start.replace(second=0, microsecond=0, tzinfo=None, fold=0)
            else:
                wall = start.replace(minute=0, second=0, microsecond=0, tzinfo=None, fold=0)
            end = (wall + step - offset).replace(tzinfo=timezone.utc)
            if self._offset(end - _TICK) != offset:
                end = self._change_after(start.astimezone(timezone.utc), end)
            return _fixed(end, self.tz)
        day = start.date()
        if self.interval == "day":
            day += timedelta(days=1)
        elif self.interval == "week":
            day += timedelta(days=7)
        elif self.interval == "month":
            day = day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1, day=1)
        else:
            day = day.replace(year=day.year + 1, month=1, day=1)
        return _fixed(_wall(day.year, day.month, day.day, self.tz), self.tz)

    def _offset(self, instant: datetime) -> timedelta | None:
        return instant.astimezone(self.tz).utcoffset()

    def _check_supported(self, local: datetime) -> None:
        """Refuse an instant under an offset change the calendar arithmetic does not cover.

        Supported: UTC offsets of whole minutes, and changes that set the wall
        clock back by at most 3 hours (checked over the 26 hours before).
        """
        offset = local.utcoffset()
        if offset is None:
            return
        if offset.seconds % 60 or offset.microseconds:
            raise ConfigurationError(
                f"when {local.isoformat()} is at UTC offset {offset} in {self.tz}: TimeRouter "
                "supports whole-minute offsets only (local mean times before ~1972 are not)"
            )
        earlier = self._offset(local.astimezone(timezone.utc) - _WINDOW)
        if earlier is not None and earlier - offset > _LOOKBACK:
            raise ConfigurationError(
                f"when {local.isoformat()} follows a change in {self.tz} that set clocks back "
                f"by {earlier - offset}: TimeRouter supports changes of at most 3 hours"
            )

    def _change_after(self, lo: datetime, hi: datetime) -> datetime:
        """The first instant in `(lo, hi]` whose UTC offset differs from *lo*'s (bisection)."""
        before = self._offset(lo)
        while hi - lo > _TICK:
            mid = lo + (hi - lo) // 2
            if self._offset(mid) == before:
                lo = mid
            else:
                hi = mid
        return hi

    def name(self, start: datetime) -> str:
        """The template filled in with *start*, the start of a partition.

        Where clocks go back, a minute or hour partition repeats the wall time
        of an earlier one; unless the template shows the UTC offset (`%z` or
        `%Z`), the repeat's name gets its offset appended, e.g.
        `h_2026_10_25_02` (CEST) and then `h_2026_10_25_02_p0100` (CET).
        """
        aware = self._aware(start, "start")
        with self._in_range("start", start):
            return self._name(aware)

    def _name(self, start: datetime) -> str:
        local = start.astimezone(self.tz)
        self._check_supported(local)
        name = self.template.format(local)
        if self._shows_offset or self.interval not in ("minute", "hour"):
            return name
        offset = local.utcoffset()
        instant = local.astimezone(timezone.utc)
        # Clocks went back within the last hours if an earlier offset differs.
        earlier = {self._offset(instant - _TICK), self._offset(instant - _LOOKBACK)}
        earlier.discard(offset)
        if not earlier:
            return name
        if self.interval == "minute":
            wall = local.replace(second=0, microsecond=0, tzinfo=None, fold=0)
        else:
            wall = local.replace(minute=0, second=0, microsecond=0, tzinfo=None, fold=0)
        for before in earlier:
            if before is None:
                continue
            seen = (wall - before).replace(tzinfo=timezone.utc)
            if seen < instant and self._offset(seen) == before:  # this wall time came before
                return name + _offset_suffix(offset)
        return name

    def parse(self, name: str) -> Partition:
        """The `Partition` a name produced by this router stands for.

        Raises:
            ConfigurationError: *name* does not come from this template.
            ArgumentTypeError: *name* is not a `str`.
        """
        if not isinstance(name, str):
            raise wrong_type("name", name, "a partition name (str)")
        repeat = _REPEAT.search(name)
        if repeat is not None and not self._shows_offset and self.interval in ("minute", "hour"):
            base = name[: repeat.start()]
        else:
            base, repeat = name, None
        if not (base.startswith(self._prefix) and base.endswith(self._suffix)):
            raise ConfigurationError(f"name {name!r} does not match template {self.template!r}")
        middle = base[len(self._prefix) : len(base) - len(self._suffix) or None]
        fmt = self._format
        if ("%V" in fmt or "%U" in fmt or "%W" in fmt) and "%u" not in fmt and "%w" not in fmt:
            middle, fmt = middle + "|1", fmt + "|%u"  # strptime needs a weekday for weeks
        try:
            parsed = datetime.strptime(middle, fmt)
        except ValueError:
            raise ConfigurationError(
                f"name {name!r} does not match template {self.template!r}"
            ) from None
        if repeat is None:
            zone: tzinfo = self.tz
        else:  # a repeated wall time: the suffix says under which offset
            text = repeat.group()
            minutes = int(text[2:4]) * 60 + int(text[4:6])
            zone = timezone(timedelta(minutes=minutes if text[1] == "p" else -minutes))
        partition = self._partition(parsed.replace(tzinfo=zone), "name", name)
        if partition.name != name:
            # A wall time in a DST gap resolves past the gap, and a repeat may
            # begin mid-hour: the partition named is then a neighbour.
            with self._in_range("name", name):
                for near in (partition.start - _TICK, partition.end):
                    if self._partition(near, "name", name).name == name:
                        partition = self._partition(near, "name", name)
                        break
        if partition.name != name:
            raise ConfigurationError(
                f"{name!r} is not a partition name of template {self.template!r}"
            )
        return partition

    # -- retention -------------------------------------------------------------------

    def retention_cutoff(self, now: datetime, keep: int | timedelta) -> datetime:
        """Partitions that end at or before this instant are expired.

        Args:
            keep: an `int` number of partitions to keep, counting the one
                holding *now*, or a `timedelta`: keep partitions holding any data
                newer than `now - keep`.
        """
        now = self._aware(now, "now")
        if isinstance(keep, timedelta):
            if keep < timedelta(0):
                raise ConfigurationError(f"keep must not be negative, got {keep!r}")
            return now - keep
        keep = positive_int("keep", keep)
        start = self.floor(now)
        for _ in range(keep - 1):
            start = self.floor(start - timedelta(microseconds=1))
        return start

    def expired(
        self,
        now: datetime,
        *,
        keep: int | timedelta,
        partitions: Iterable[str | Partition] | None = None,
        since: datetime | None = None,
    ) -> list[str]:
        """Names of the partitions to drop under the retention *keep*.

        Give the partitions that exist (names or `Partition`) or
        *since*, the oldest instant data may have; the result is in time order.

        Raises:
            ConfigurationError: neither or both of *partitions* and *since*.
        """
        if (partitions is None) == (since is None):
            raise ConfigurationError("expired needs exactly one of partitions= or since=")
        cutoff = self.retention_cutoff(now, keep)
        if since is not None:
            return [p.name for p in self.partitions(since, cutoff) if p.end <= cutoff]
        assert partitions is not None
        parsed = [p if isinstance(p, Partition) else self.parse(p) for p in partitions]
        return [p.name for p in sorted(parsed) if p.end <= cutoff]

    # -- internals -------------------------------------------------------------------

    @contextmanager
    def _in_range(self, argument: str, value: Any) -> Iterator[None]:
        """Turn datetime's own range errors into a `ConfigurationError` naming *argument*.

        A partition, and the instants the calendar arithmetic looks at around
        it, must lie within `datetime.min` and `datetime.max`.
        """
        try:
            yield
        except ConfigurationError:
            raise
        except (OverflowError, ValueError) as exc:
            raise self._out_of_range(argument, value, exc) from None

    def _out_of_range(self, argument: str, value: Any, exc: Exception) -> ConfigurationError:
        shown = value.isoformat() if isinstance(value, datetime) else repr(value)
        return ConfigurationError(
            f"{argument} {shown} is too near the ends of datetime's range (years "
            f"{datetime.min.year} to {datetime.max.year}) for {self.interval} partitions: "
            f"its partition must start and end within it ({exc})"
        )

    def _aware(self, when: Any, name: str) -> datetime:
        """*when* as an aware datetime; *name* is the argument it was passed as."""
        if not isinstance(when, datetime):
            raise ArgumentTypeError(
                f"{name} must be a datetime, got {type(when).__name__}: {when!r}"
            )
        if when.tzinfo is None or when.utcoffset() is None:
            if not self.allow_naive:
                raise ConfigurationError(
                    f"{name} must be an aware datetime, got the naive {when!r}: pass an aware "
                    "one (e.g. datetime.now(timezone.utc)) or build the router with "
                    "allow_naive=True to read it in its tz"
                )
            return when.replace(tzinfo=self.tz)
        return when

    def __repr__(self) -> str:
        return f"TimeRouter({self.interval!r}, {self.template!r}, tz={self.tz!r})"


def _fixed(instant: datetime, tz: tzinfo) -> datetime:
    """*instant* at *tz*'s UTC offset there, as a fixed-offset datetime.

    Two datetimes in one zone compare by wall time, ignoring `fold`, so the
    two 02:30 of a repeated hour would compare equal; fixed offsets compare
    as instants.
    """
    local = instant.astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None
    return local.replace(tzinfo=timezone(offset), fold=0)


def _offset_suffix(offset: timedelta | None) -> str:
    """`+01:00` as `_p0100`, `-03:30` as `_m0330`: safe in table names."""
    assert offset is not None
    minutes = int(offset.total_seconds()) // 60
    sign = "p" if minutes >= 0 else "m"
    return f"_{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _wall(year: int, month: int, day: int, tz: tzinfo) -> datetime:
    """Midnight of a calendar day in *tz* (the first instant of the day after a DST gap)."""
    moment = datetime(year, month, day, tzinfo=tz)
    # Round-trip through UTC: a wall time that does not exist (DST gap) moves forward.
    return moment.astimezone(timezone.utc).astimezone(tz)
