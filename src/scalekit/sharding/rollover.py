"""Rollover: an Elasticsearch-ILM style write index that rolls over by age, size or docs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from .._validation import a_callable, non_empty_str, non_negative_int, positive_int
from ..exceptions import ConfigurationError

__all__ = ["Rollover"]


class Rollover:
    """An Elasticsearch-ILM style write index that rolls over by age, size or documents.

    Writes go to `write_index` (`"<prefix>-000001"` and up); when any
    of the conditions is met, `maybe_rollover()` starts the next
    generation. Reads cover `read_indices()`; `expired()` lists the
    generations rolled over longer than `keep` ago (ILM's delete phase
    `min_age` counts from rollover).

    Args:
        prefix: the index name before the generation number.
        max_age: roll over once the write index is this old.
        max_size: ... once this many bytes were recorded into it.
        max_docs: ... once this many documents were recorded into it.
        clock: returns the current aware datetime.

    Raises:
        ConfigurationError: no condition, or a condition that is not positive.

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
        self._clock = a_callable("clock", clock)
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
        """Account one write of *size* bytes and *docs* documents; return the write index.

        Raises:
            ArgumentTypeError: *size* or *docs* is not an `int`.
            ConfigurationError: *size* or *docs* is negative.
        """
        size = non_negative_int("size", size)
        docs = non_negative_int("docs", docs)
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
