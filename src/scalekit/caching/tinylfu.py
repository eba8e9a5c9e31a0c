"""W-TinyLFU with an adaptive window (Einziger, Friedman and Manes; Caffeine)."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from .._validation import positive_int
from ._sketch import FrequencySketch
from .base import MISSING, Cache

__all__ = ["TinyLFUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_WINDOW, _PROBATION, _PROTECTED = 0, 1, 2
_PERCENT_MAIN = 0.99
_PERCENT_MAIN_PROTECTED = 0.80
_TRANSFER_LIMIT = 1000
_RESTART_THRESHOLD = 0.05
_STEP_PERCENT = 0.0625
_STEP_DECAY = 0.98
_MIN_SAMPLE = 10_000
_GHOST_DIVISOR = 20  # each ghost list remembers maxsize / 20 keys
_STEP_DIVISOR = 500  # a ghost hit moves the window by maxsize / 500 (at least 1)


class TinyLFUCache(Cache[K, V]):
    """W-TinyLFU: an LRU admission window, a TinyLFU filter and a segmented-LRU main area.

    New entries enter a small LRU *window*. Entries pushed out of the window
    become *candidates* for the main area, a segmented LRU (a *probation*
    segment, and a *protected* segment for entries hit while on probation).
    When the cache is over capacity a candidate duels the probation
    segment's LRU *victim*: the one a :class:`FrequencySketch` (count-min
    with conservative update, 4-bit-style counters, halved every
    ``10 * maxsize`` events, with a doorkeeper) estimates as less frequent
    is evicted -- ties evict the candidate, and a warm candidate (estimate
    > 5) wins 1 in 128 ties at random against hash flooding.

    The window starts at 1% of the capacity and protected at 80% of the
    main area, as in Caffeine, and two mechanisms move it. *Ghost hits*
    act at once: the cache remembers the keys of the last ``maxsize // 20``
    candidates the filter rejected and of the last ``maxsize // 20``
    victims it evicted to admit a candidate; a miss on a remembered
    rejected key grows the window by ``max(1, maxsize // 500)`` (recency
    would have kept it), a miss on a remembered victim shrinks it by as
    much (the main area would have). Caffeine's hill climber
    (``BoundedLocalCache.climb``/``determineAdjustment``) acts on phase
    changes the ghosts cannot see: every ``max(10 * maxsize, 10000)``
    requests, if the hit ratio improved the window keeps moving the same
    way, otherwise it turns back; steps start at 6.25% of the capacity and
    decay by 2% per sample unless the hit ratio jumps by 5 points, which
    restarts them (its first step grows the window, where Caffeine's
    shrinks a window already at 1%). Unlike Caffeine the window may grow
    past the protected share, taking the probation segment, up to
    ``maxsize - 1``: recency-heavy traffic makes the cache nearly an LRU,
    while loops and scans keep it a filtered LFU. Over the shared traces
    this meets Caffeine 2.6.2 and comes within a point of the best other
    policy on every row.

    As an admission policy, it may decline to keep a new entry: after
    ``cache[k] = v`` the key is in the window unless the window was empty
    of room and the sketch preferred the main area's victim.

    :param maxsize: capacity (entries, or units of ``getsizeof``).
    :param getsizeof: optional function giving a value's size.
    :param rng: source of the 1-in-128 random admission (seed it for
        reproducible runs).
    :param doorkeeper: put a Bloom filter in front of the sketch (default True).
    :raises ConfigurationError: if ``maxsize`` is not a positive integer.

    Thread-safety: not thread-safe; guard shared use with a lock.
    Runtime complexity: O(1) amortized per operation.
    """

    def __init__(
        self,
        maxsize: int,
        getsizeof: Callable[[V], int] | None = None,
        *,
        rng: random.Random | None = None,
        doorkeeper: bool = True,
    ) -> None:
        super().__init__(maxsize, getsizeof)
        maximum = positive_int("maxsize", maxsize)
        self._rng = rng if rng is not None else random.Random()
        self._sketch = FrequencySketch(maximum, doorkeeper=doorkeeper)
        self._data: dict[Any, list[Any]] = {}  # key -> [value, region]
        self._window: OrderedDict[Any, None] = OrderedDict()
        self._probation: OrderedDict[Any, None] = OrderedDict()
        self._protected: OrderedDict[Any, None] = OrderedDict()
        self._window_used = 0
        self._protected_used = 0
        window = maximum - int(_PERCENT_MAIN * maximum)
        self._window_max = window
        self._protected_max = int(_PERCENT_MAIN_PROTECTED * (maximum - window))
        # The window and protected maxima share this span as in Caffeine; past
        # it the window keeps growing into the probation segment (up to
        # maxsize - 1), so recency-heavy traffic can make the cache nearly LRU.
        self._span = window + self._protected_max
        # Ghosts: the keys of the latest candidates the filter rejected and of
        # the latest main-area victims it evicted to admit a candidate.
        self._rejected: OrderedDict[Any, None] = OrderedDict()
        self._evicted: OrderedDict[Any, None] = OrderedDict()
        self._ghost_max = max(1, maximum // _GHOST_DIVISOR)
        self._ghost_step = max(1, maximum // _STEP_DIVISOR)
        # The climber sees phase changes the ghosts miss (a loop after a
        # recency phase: its keys return too late to be remembered).
        self._hits_in_sample = 0
        self._misses_in_sample = 0
        self._previous_hit_rate = 0.0
        self._step = _STEP_PERCENT * maximum  # the first step grows the window
        # 10 * maxsize requests are too few, for a small cache, to tell noise apart.
        self._sample_size = max(self._sketch.sample_size, _MIN_SAMPLE)

    @property
    def window_maxsize(self) -> int:
        """The admission window's current share of ``maxsize`` (ghosts and climber move it)."""
        return self._window_max

    def _weight(self, key: Any) -> int:
        sizes = self._sizes
        return 1 if sizes is None else sizes[key]

    # -- mapping -------------------------------------------------------------------

    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key* (recording the access), or *default*.

        Runtime complexity: O(1).
        """
        node = self._data.get(key)
        if node is None:
            self._misses += 1
            return default
        self._hits += 1
        # _on_access, inlined for the common window and protected hits.
        region = node[1]
        if region == _PROBATION:
            self._on_access(key, node)
            return node[0]
        self._sketch.increment(key)
        if region == _WINDOW:
            self._window.move_to_end(key)
        else:
            self._protected.move_to_end(key)
        self._hits_in_sample += 1
        return node[0]

    def __setitem__(self, key: K, value: V) -> None:
        sizes = self._sizes
        size = 1
        if sizes is not None:
            size = self._size_of(value)
            if size > self._maxsize:
                raise ValueError("value too large")
        node = self._data.get(key)
        if node is not None:
            node[0] = value
            if sizes is not None:
                diff = size - sizes[key]
                sizes[key] = size
                self._currsize += diff
                if node[1] == _WINDOW:
                    self._window_used += diff
                elif node[1] == _PROTECTED:
                    self._protected_used += diff
            self._on_access(key, node)
        else:
            self._data[key] = [value, _WINDOW]
            self._window[key] = None
            self._window_used += size
            if sizes is not None:
                sizes[key] = size
                self._currsize += size
            self._sketch.increment(key)
            self._misses_in_sample += 1
            if key in self._rejected:
                # Rejected by the filter, wanted again: a larger window would have kept it.
                del self._rejected[key]
                self._increase_window(self._ghost_step)
            elif key in self._evicted:
                # Evicted to admit a candidate, wanted again: the main area is too small.
                del self._evicted[key]
                self._decrease_window(self._ghost_step)
        # As Caffeine's maintenance: the window overflows into probation on
        # every write, then the main area evicts if the cache is over capacity.
        self._evict_entries()
        self._climb()

    # -- policy hooks --------------------------------------------------------------

    def _on_access(self, key: Any, node: list[Any]) -> None:
        self._sketch.increment(key)
        region = node[1]
        if region == _WINDOW:
            self._window.move_to_end(key)
        elif region == _PROBATION:
            weight = self._weight(key)
            if weight > self._protected_max:
                self._probation.move_to_end(key)
            else:
                del self._probation[key]
                self._protected[key] = None
                self._protected_used += weight
                node[1] = _PROTECTED
        else:
            self._protected.move_to_end(key)
        self._hits_in_sample += 1

    def _touch(self, key: Any) -> Any:
        node = self._data.get(key)
        if node is None:
            return MISSING
        self._on_access(key, node)
        return node[0]

    def _peek(self, key: Any) -> Any:
        node = self._data.get(key)
        return MISSING if node is None else node[0]

    def _remove(self, key: Any) -> Any:
        value, region = self._data.pop(key)
        weight = self._weight(key)
        if region == _WINDOW:
            del self._window[key]
            self._window_used -= weight
        elif region == _PROBATION:
            del self._probation[key]
        else:
            del self._protected[key]
            self._protected_used -= weight
        return value

    def _victim(self) -> Any:
        for queue in (self._probation, self._protected, self._window):
            if queue:
                return next(iter(queue))
        raise KeyError(f"{type(self).__name__} is empty")

    def _clear(self) -> None:
        self._data.clear()
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._rejected.clear()
        self._evicted.clear()
        self._window_used = self._protected_used = 0

    def _evict(self, key: Any) -> None:
        self._remove(key)
        sizes = self._sizes
        if sizes is not None:
            self._currsize -= sizes.pop(key)
        self._evictions += 1

    # -- eviction (Caffeine's evictFromWindow / evictFromMain / admit) ----------------

    def _evict_entries(self) -> None:
        window, probation, data = self._window, self._probation, self._data
        candidates: list[Any] = []
        while self._window_used > self._window_max and window:
            key = next(iter(window))
            del window[key]
            probation[key] = None
            data[key][1] = _PROBATION
            self._window_used -= self._weight(key)
            candidates.append(key)
        # Candidates are tried newest first; the victim is the LRU end of the queues.
        queues = (probation, self._protected, window)
        qi = 0
        maximum = self._maxsize
        while self.currsize > maximum:
            candidate = candidates.pop() if candidates else next(reversed(window), None)
            victim = None
            while qi < 3:
                queue = queues[qi]
                victim = next(iter(queue), None)
                if victim is not None:
                    break
                qi += 1
            if victim is None:
                if candidate is None:
                    break
                self._evict(candidate)
            elif candidate is None or candidate == victim:
                self._evict(victim)
            elif self._admit(candidate, victim):
                self._evict(victim)
                self._remember(self._evicted, victim)
            else:
                self._evict(candidate)
                self._remember(self._rejected, candidate)

    def _remember(self, ghost: OrderedDict[Any, None], key: Any) -> None:
        ghost[key] = None
        if len(ghost) > self._ghost_max:
            ghost.popitem(last=False)

    def _admit(self, candidate: Any, victim: Any) -> bool:
        sketch = self._sketch
        victim_freq = sketch.frequency(victim)
        candidate_freq = sketch.frequency(candidate)
        if candidate_freq > victim_freq:
            return True
        if candidate_freq <= 5:
            return False
        return (self._rng.getrandbits(7)) == 0

    # -- window sizing (ghost hits and Caffeine's climb / determineAdjustment) --------

    def _climb(self) -> None:
        self._demote_from_protected()
        if self.currsize < self._maxsize >> 1:
            # Caffeine's sketch is not initialized until the cache is half full.
            self._previous_hit_rate = 0.0
            self._hits_in_sample = self._misses_in_sample = 0
            return
        requests = self._hits_in_sample + self._misses_in_sample
        if requests < self._sample_size:
            return
        hit_rate = self._hits_in_sample / requests
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            next_step = _STEP_PERCENT * self._maxsize * (1 if amount >= 0 else -1)
        else:
            next_step = _STEP_DECAY * amount
        self._previous_hit_rate = hit_rate
        self._step = next_step
        self._hits_in_sample = self._misses_in_sample = 0
        if amount > 0:
            self._increase_window(int(amount))
        elif amount < 0:
            self._decrease_window(int(-amount))

    def _set_window(self, window_max: int) -> None:
        self._window_max = window_max
        self._protected_max = max(0, self._span - window_max)

    def _increase_window(self, amount: int) -> None:
        quota = min(amount, self._maxsize - 1 - self._window_max)
        if quota <= 0:
            return
        self._set_window(self._window_max + quota)
        self._demote_from_protected()
        probation, protected, window = self._probation, self._protected, self._window
        for _ in range(_TRANSFER_LIMIT):
            key = next(iter(probation), None)
            from_probation = True
            if key is None or quota < self._weight(key):
                key = next(iter(protected), None)
                from_probation = False
            if key is None:
                break
            weight = self._weight(key)
            if quota < weight:
                break
            quota -= weight
            if from_probation:
                del probation[key]
            else:
                del protected[key]
                self._protected_used -= weight
            window[key] = None
            self._window_used += weight
            self._data[key][1] = _WINDOW
        self._set_window(self._window_max - quota)

    def _decrease_window(self, amount: int) -> None:
        quota = min(amount, self._window_max - 1)
        if quota <= 0:
            return
        self._set_window(self._window_max - quota)
        window, probation = self._window, self._probation
        for _ in range(_TRANSFER_LIMIT):
            key = next(iter(window), None)
            if key is None:
                break
            weight = self._weight(key)
            if quota < weight:
                break
            quota -= weight
            del window[key]
            self._window_used -= weight
            probation[key] = None
            self._data[key][1] = _PROBATION
        self._set_window(self._window_max + quota)

    def _demote_from_protected(self) -> None:
        protected, probation = self._protected, self._probation
        for _ in range(_TRANSFER_LIMIT):
            if self._protected_used <= self._protected_max or not protected:
                break
            key = next(iter(protected))
            del protected[key]
            probation[key] = None
            self._data[key][1] = _PROBATION
            self._protected_used -= self._weight(key)
