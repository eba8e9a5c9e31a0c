"""TimeRouter: calendar partitions (``orders_2026_11``), retention and rollover.

Partitions follow the calendar of one time zone (UTC by default): a month
partition runs from the 1st at 00:00 to the next 1st, whatever the month's
length; weeks are ISO weeks starting on Monday. Retention works like
TimescaleDB's ``drop_chunks(older_than)``; :class:`Rollover` rolls a write
index over by age, size or document count as Elasticsearch's ILM does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from .._validation import non_empty_str, positive_int
from ..exceptions import ArgumentTypeError, ConfigurationError
from .base import Router

__all__ = ["INTERVALS", "Partition", "Rollover", "TimeRouter"]

INTERVALS = ("minute", "hour", "day", "week", "month", "year")
_FIELD = re.compile(r"\{:([^{}]*)\}")


@dataclass(frozen=True, order=True)
class Partition:
    """One time partition: its name and the half-open span ``[start, end)`` it holds."""

    start: datetime
    end: datetime
    name: str


class TimeRouter(Router):
    """Route timestamps to calendar partitions named by a template.

    :param interval: one of :data:`INTERVALS`.
    :param template: a ``str.format`` template with exactly one ``{:<strftime>}``
        field, e.g. ``"orders_{:%Y_%m}"``; it must give each partition its own name.
    :param tz: the time zone whose calendar partitions follow (UTC by default),
        e.g. ``zoneinfo.ZoneInfo("Europe/Berlin")``.
    :param allow_naive: treat naive datetimes as wall time in *tz* instead of
        rejecting them.
    :raises ConfigurationError: unknown interval, a template without exactly
        one field, or one that names two partitions alike.

    Thread-safety: immutable; every method may be called from any thread.

    >>> router = TimeRouter("month", "orders_{:%Y_%m}")
    >>> router.route(datetime(2026, 2, 28, 23, 59, tzinfo=timezone.utc))
    'orders_2026_02'
    """

    def __init__(
        self, interval: str, template: str, *, tz: tzinfo = timezone.utc, allow_naive: bool = False
    ) -> None:
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

    def route(self, key: Any) -> str:
        """Return the name of the partition holding the datetime *key*.

        :raises TypeError: not a datetime. :raises ValueError: naive, unless allowed.
        Runtime complexity: O(1).
        """
        return self.name(self.floor(key))

    def partition(self, when: datetime) -> Partition:
        """The :class:`Partition` holding *when*."""
        start = self.floor(when)
        return Partition(start, self.next_start(start), self.name(start))

    def route_range(self, start: datetime, end: datetime, *, inclusive: bool = False) -> list[str]:
        """Names of every partition a query over ``[start, end)`` (or ``[start, end]``) reads.

        Runtime complexity: O(partitions returned).
        """
        return [p.name for p in self.partitions(start, end, inclusive=inclusive)]

    def partitions(
        self, start: datetime, end: datetime, *, inclusive: bool = False
    ) -> list[Partition]:
        """Every :class:`Partition` overlapping ``[start, end)`` (``[start, end]`` if inclusive)."""
        lo, hi = self._aware(start), self._aware(end)
        if hi < lo or (hi == lo and not inclusive):
            return []
        result = []
        current = self.partition(lo)
        while current.start < hi or (inclusive and current.start == hi):
            result.append(current)
            current = Partition(current.end, self.next_start(current.end), self.name(current.end))
        return result

    # -- calendar --------------------------------------------------------------------

    def floor(self, when: datetime) -> datetime:
        """The start of the partition holding *when*, as an aware datetime in ``tz``."""
        local = self._aware(when).astimezone(self.tz)
        interval = self.interval
        if interval == "minute":
            local = local.replace(second=0, microsecond=0)
        elif interval == "hour":
            local = local.replace(minute=0, second=0, microsecond=0)
        else:
            day = local.date()
            if interval == "week":
                day -= timedelta(days=day.weekday())
            elif interval == "month":
                day = day.replace(day=1)
            elif interval == "year":
                day = day.replace(month=1, day=1)
            local = _wall(day.year, day.month, day.day, self.tz)
        return local

    def next_start(self, start: datetime) -> datetime:
        """The start of the partition after the one starting at *start*."""
        start = start.astimezone(self.tz)
        if self.interval in ("minute", "hour"):
            step = timedelta(minutes=1) if self.interval == "minute" else timedelta(hours=1)
            return (start.astimezone(timezone.utc) + step).astimezone(self.tz)
        day = start.date()
        if self.interval == "day":
            day += timedelta(days=1)
        elif self.interval == "week":
            day += timedelta(days=7)
        elif self.interval == "month":
            day = day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1, day=1)
        else:
            day = day.replace(year=day.year + 1, month=1, day=1)
        return _wall(day.year, day.month, day.day, self.tz)

    def name(self, start: datetime) -> str:
        """The template filled in with *start*."""
        return self.template.format(start)

    def parse(self, name: str) -> Partition:
        """The :class:`Partition` a name produced by this router stands for.

        :raises ValueError: *name* does not come from this template.
        """
        if not (name.startswith(self._prefix) and name.endswith(self._suffix)):
            raise ConfigurationError(f"{name!r} does not match template {self.template!r}")
        middle = name[len(self._prefix) : len(name) - len(self._suffix) or None]
        fmt = self._format
        if ("%V" in fmt or "%U" in fmt or "%W" in fmt) and "%u" not in fmt and "%w" not in fmt:
            middle, fmt = middle + "|1", fmt + "|%u"  # strptime needs a weekday for weeks
        try:
            parsed = datetime.strptime(middle, fmt)
        except ValueError:
            raise ConfigurationError(
                f"{name!r} does not match template {self.template!r}"
            ) from None
        partition = self.partition(parsed.replace(tzinfo=self.tz))
        if partition.name != name:
            raise ConfigurationError(
                f"{name!r} is not a partition name of template {self.template!r}"
            )
        return partition

    # -- retention -------------------------------------------------------------------

    def retention_cutoff(self, now: datetime, keep: int | timedelta) -> datetime:
        """Partitions that end at or before this instant are expired.

        :param keep: an ``int`` number of partitions to keep, counting the one
            holding *now*, or a ``timedelta``: keep partitions holding any data
            newer than ``now - keep``.
        """
        now = self._aware(now)
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

        Give the partitions that exist (names or :class:`Partition`) or
        *since*, the oldest instant data may have; the result is in time order.

        :raises ConfigurationError: neither or both of *partitions* and *since*.
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

    def _aware(self, when: Any) -> datetime:
        if not isinstance(when, datetime):
            raise ArgumentTypeError(f"expected a datetime, got {type(when).__name__}: {when!r}")
        if when.tzinfo is None or when.utcoffset() is None:
            if not self.allow_naive:
                raise ConfigurationError(
                    f"naive datetime {when!r}: pass an aware one (e.g. datetime.now(timezone.utc))"
                    " or build the router with allow_naive=True to read it in its tz"
                )
            return when.replace(tzinfo=self.tz)
        return when

    def __repr__(self) -> str:
        return f"TimeRouter({self.interval!r}, {self.template!r}, tz={self.tz!r})"


def _wall(year: int, month: int, day: int, tz: tzinfo) -> datetime:
    """Midnight of a calendar day in *tz* (the first instant of the day after a DST gap)."""
    moment = datetime(year, month, day, tzinfo=tz)
    # Round-trip through UTC: a wall time that does not exist (DST gap) moves forward.
    return moment.astimezone(timezone.utc).astimezone(tz)


class Rollover:
    """An Elasticsearch-ILM style write index that rolls over by age, size or documents.

    Writes go to :attr:`write_index` (``"<prefix>-000001"`` and up); when any
    of the conditions is met, :meth:`maybe_rollover` starts the next
    generation. Reads cover :meth:`read_indices`; :meth:`expired` lists the
    generations rolled over longer than ``keep`` ago (ILM's delete phase
    ``min_age`` counts from rollover).

    :param prefix: the index name before the generation number.
    :param max_age: roll over once the write index is this old.
    :param max_size: ... once this many bytes were recorded into it.
    :param max_docs: ... once this many documents were recorded into it.
    :param clock: returns the current aware datetime.
    :raises ConfigurationError: no condition, or a condition that is not positive.

    Thread-safety: not thread-safe; guard with a lock if shared.
    """

    def __init__(
        self,
        prefix: str,
        *,
        max_age: timedelta | None = None,
        max_size: int | None = None,
        max_docs: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.prefix = non_empty_str("prefix", prefix)
        if max_age is None and max_size is None and max_docs is None:
            raise ConfigurationError("give at least one of max_age, max_size, max_docs")
        if max_age is not None and (not isinstance(max_age, timedelta) or max_age <= timedelta(0)):
            raise ConfigurationError(f"max_age must be a positive timedelta, got {max_age!r}")
        self.max_age = max_age
        self.max_size = None if max_size is None else positive_int("max_size", max_size)
        self.max_docs = None if max_docs is None else positive_int("max_docs", max_docs)
        self._clock = clock
        self.generation = 1
        self._created = [self._clock()]
        self._rolled: list[datetime] = []
        self.size = 0
        self.docs = 0

    @property
    def write_index(self) -> str:
        """The index new documents go to."""
        return self._name(self.generation)

    def read_indices(self) -> list[str]:
        """Every generation, oldest first: what a search must read."""
        return [self._name(g) for g in range(1, self.generation + 1)]

    def record(self, *, size: int = 0, docs: int = 1) -> str:
        """Account one write of *size* bytes and *docs* documents; return the write index."""
        self.size += size
        self.docs += docs
        return self.write_index

    def should_rollover(self) -> bool:
        """True when the write index meets any rollover condition."""
        age = self._clock() - self._created[-1]
        return (
            (self.max_age is not None and age >= self.max_age)
            or (self.max_size is not None and self.size >= self.max_size)
            or (self.max_docs is not None and self.docs >= self.max_docs)
        )

    def maybe_rollover(self) -> str | None:
        """Roll over if a condition is met; return the new write index, else None."""
        if not self.should_rollover():
            return None
        now = self._clock()
        self._rolled.append(now)
        self._created.append(now)
        self.generation += 1
        self.size = self.docs = 0
        return self.write_index

    def expired(self, keep: timedelta) -> list[str]:
        """Generations rolled over at least *keep* ago (never the write index)."""
        now = self._clock()
        return [self._name(g + 1) for g, at in enumerate(self._rolled) if now - at >= keep]

    def _name(self, generation: int) -> str:
        return f"{self.prefix}-{generation:06d}"
