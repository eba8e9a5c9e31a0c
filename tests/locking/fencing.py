"""A fenced register in a real Redis and the checker the fault tests share.

Each critical section runs ``begin(token)``, reads the counter, and
``commit(token, start, value + 1)``. The store rejects a begin or commit
whose token is older than the newest token it has seen (Kleppmann's
fencing), logs every accepted commit as ``(token, start, end)`` in server
time, and :func:`check` asserts that accepted sections never overlap, that
their tokens only grow, and that no update was lost.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

_BEGIN = """
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < newest then return {0, 0} end
redis.call('SET', KEYS[1], ARGV[1])
local t = redis.call('TIME')
return {1, tonumber(t[1]) * 1000000 + tonumber(t[2])}
"""

_COMMIT = """
local newest = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < newest then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3])
local t = redis.call('TIME')
local now = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('RPUSH', KEYS[3], ARGV[1] .. ':' .. ARGV[2] .. ':' .. now)
return 1
"""

_stores = itertools.count()


@dataclass(frozen=True)
class Section:
    token: int
    start: int
    end: int


class FencedStore:
    """A counter in Redis that only accepts the newest fencing token."""

    def __init__(self, url: str, prefix: str | None = None) -> None:
        import redis

        self.url = url
        self.prefix = prefix or f"fenced-{next(_stores)}"
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self._begin = self.client.register_script(_BEGIN)
        self._commit = self.client.register_script(_COMMIT)
        self._keys = [f"{self.prefix}:newest", f"{self.prefix}:value", f"{self.prefix}:log"]

    def begin(self, token: int) -> int | None:
        """Start a section; return its start time (µs) or None if the token is stale."""
        ok, start = self._begin(keys=self._keys[:1], args=[token])
        return int(start) if ok == 1 else None

    def read(self) -> int:
        return int(self.client.get(self._keys[1]) or 0)

    def commit(self, token: int, start: int, value: int) -> bool:
        """Write *value* if *token* is still the newest; log the accepted section."""
        return int(self._commit(keys=self._keys, args=[token, start, value])) == 1

    def section(self, token: int) -> bool:
        """One whole read-increment-write section; True if it was accepted."""
        start = self.begin(token)
        if start is None:
            return False
        value = self.read()
        return self.commit(token, start, value + 1)

    def sections(self) -> list[Section]:
        out = []
        for raw in self.client.lrange(self._keys[2], 0, -1):
            token, start, end = (int(x) for x in raw.split(b":"))
            out.append(Section(token, start, end))
        return out


def check(store: FencedStore, *, min_sections: int = 1) -> list[Section]:
    """Assert mutual exclusion, growing tokens and no lost update; return the sections."""
    sections = sorted(store.sections(), key=lambda s: s.start)
    assert len(sections) >= min_sections, f"only {len(sections)} sections were accepted"
    for before, after in itertools.pairwise(sections):
        assert before.end <= after.start, f"overlapping sections: {before} and {after}"
        assert before.token < after.token, f"token went backwards: {before} then {after}"
    assert store.read() == len(sections), (
        f"lost updates: counter {store.read()} after {len(sections)} accepted sections"
    )
    return sections


def describe(sections: list[Any]) -> str:
    return ", ".join(f"{s.token}" for s in sections)
