"""How `TinyLFUCache` moves its window: ghosts, admission margin, shadows, hill climber.

Split from `tinylfu.py`, which holds the queues and the admission duel;
the class docstring of [`TinyLFUCache`][scalekit.caching.TinyLFUCache]
describes the five mechanisms.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ._sketch import FrequencySketch

_TRANSFER_LIMIT = 1000
_RESTART_THRESHOLD = 0.05
_STEP_PERCENT = 0.0625
_STEP_DECAY = 0.98
# The climber's sample is long enough that the difference between two
# samples' hit ratios has this standard error at most (0.75 point).
_SAMPLE_ERROR = 0.0075
_GHOST_DIVISOR = 20  # each ghost list remembers entries / 20 keys
_MAX_MARGIN = 2  # how much hotter than the victim a candidate must be, at most
_SHADOW_ENTRIES = 1024  # the sampled LRU simulates at most this many entries
_Z = 2.0  # the shadow LRU must beat the cache by this many standard errors
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _sample_floor(hit_rate: float) -> int:
    """The fewest requests a climber sample takes after one at `hit_rate`.

    Two samples of `n` requests at hit ratio `p` differ by noise of standard
    error `sqrt(2 * p * (1 - p) / n)`; `n` brings it down to `_SAMPLE_ERROR`.
    Before the first sample, or after one without a hit, `p` is 1/2 (the
    most noise).
    """
    p = hit_rate or 0.5
    return int(2 * p * (1 - p) / _SAMPLE_ERROR**2)


_FIRST_SAMPLE = _sample_floor(0.0)


class WindowSizing:
    """The window-sizing half of `TinyLFUCache` (a mixin; not for direct use)."""

    # Provided by TinyLFUCache and Cache.
    _maxsize: Any
    _sizes: dict[Any, int] | None
    _sketch: FrequencySketch
    _window: OrderedDict[Any, Any]
    _probation: OrderedDict[Any, Any]
    _protected: OrderedDict[Any, Any]
    _window_max: Any
    _protected_max: Any
    _window_used: int
    _protected_used: int

    if TYPE_CHECKING:

        def _weight(self, key: Any) -> int: ...

        def __len__(self) -> int: ...

        @property
        def currsize(self) -> int: ...

    def _init_sizing(self, maximum: Any, span: Any) -> None:
        # The window and protected maxima share this span as in Caffeine; past
        # it the window keeps growing into the probation segment (up to
        # maxsize - 1), so recency-heavy traffic can make the cache nearly LRU.
        self._span = span
        # Ghosts: the keys of the latest candidates the filter rejected and of
        # the latest main-area victims it evicted to admit a candidate.
        self._rejected: OrderedDict[Any, None] = OrderedDict()
        self._evicted: OrderedDict[Any, None] = OrderedDict()
        self._margin = 0
        # The climber sees phase changes the ghosts miss (a loop after a
        # recency phase: its keys return too late to be remembered).
        self._hits_in_sample = 0
        self._misses_in_sample = 0
        self._previous_hit_rate = 0.0
        self._sample_min = _FIRST_SAMPLE
        self._step = _STEP_PERCENT * maximum  # the first step grows the window
        # A miniature LRU over a hash-sampled subset of the keys (Waldspurger et
        # al.'s miniature simulation) tells when plain recency beats the cache by
        # more than the ghosts can make up at one entry per hit.
        self._shadow: OrderedDict[Any, None] = OrderedDict()
        self._shadow_max = 1
        self._shadow_shift = 64  # a key is sampled if the top bits of its hash are 0
        self._shadow_hits = 0
        self._sampled_hits = 0
        self._sampled = 0
        # A FIFO of the same size over the same sampled keys: when it beats the
        # shadow LRU beyond noise, a hit in the window no longer moves its entry.
        self._shadow_fifo: OrderedDict[Any, None] = OrderedDict()
        self._fifo_hits = 0
        self._window_fifo = False
        self._order_lru = self._order_fifo = 0  # their hits since the order was last set
        self._size_shadow()

    def _clear_ghosts(self) -> None:
        self._rejected.clear()
        self._evicted.clear()
        self._shadow.clear()
        self._shadow_fifo.clear()
        self._shadow_hits = self._sampled_hits = self._sampled = self._fifo_hits = 0
        self._order_lru = self._order_fifo = 0  # the window keeps its order, as its size

    # -- the shadow LRU ------------------------------------------------------------

    def _size_shadow(self) -> None:
        # As many entries as the cache holds (all of maxsize with unit sizes),
        # sampled at 1 in 2**k keys so that the shadow keeps at most 1,024.
        entries = self._maxsize if self._sizes is None else max(1, len(self))
        if math.isinf(entries) or entries < 1:
            self._shadow_shift = -1  # unbounded or empty: nothing to compare with
            return
        k = max(0, (int(entries) - 1).bit_length() - _SHADOW_ENTRIES.bit_length() + 1)
        if 64 - k != self._shadow_shift:
            self._shadow.clear()
            self._shadow_fifo.clear()
            self._shadow_shift = 64 - k
        self._shadow_max = max(1, int(entries) >> k)

    def _observe(self, key: Any, hit: bool) -> None:
        """Replay one lookup of a sampled `key` through the shadow LRU.

        The caller checks the sample (inlined on the lookup paths):
        `shift == 64`, or `0 < shift` and `((stable_hash(key) * _GOLDEN) & _M64) >> shift == 0`.
        """
        self._sampled += 1
        if hit:
            self._sampled_hits += 1
        shadow = self._shadow
        if key in shadow:
            shadow.move_to_end(key)
            self._shadow_hits += 1
        else:
            shadow[key] = None
            if len(shadow) > self._shadow_max:
                shadow.popitem(False)
        fifo = self._shadow_fifo
        if key in fifo:
            self._fifo_hits += 1
        else:
            fifo[key] = None
            if len(fifo) > self._shadow_max:
                fifo.popitem(False)

    def _recency_wins(self) -> bool:
        """Whether the shadow LRU beat the cache on the sampled keys, beyond noise."""
        lru, ours, fifo = self._shadow_hits, self._sampled_hits, self._fifo_hits
        self._shadow_hits = self._sampled_hits = self._sampled = self._fifo_hits = 0
        self._window_order_test(lru, fifo)
        # The difference of two hit counts on the same requests: its standard
        # error is at most the square root of the requests either one hit.
        return lru - ours > _Z * math.sqrt(lru + ours)

    def _window_order_test(self, lru: int, fifo: int) -> None:
        """Order the window as whichever of LRU and FIFO hit more on the sampled keys.

        The two shadows' hits add up over climber samples until their
        difference exceeds `_Z` standard errors (a sequential test: a small
        difference needs several samples to show), then the window takes the
        winner's order and the count starts over.
        """
        lru += self._order_lru
        fifo += self._order_fifo
        if abs(fifo - lru) > _Z * math.sqrt(fifo + lru):
            self._window_fifo = fifo > lru
            lru = fifo = 0
        self._order_lru, self._order_fifo = lru, fifo

    def _become_lru(self) -> None:
        """Move the whole main area into the window (oldest first): the cache acts as LRU."""
        window = self._window
        for queue in (self._protected, self._probation):
            for key in reversed(queue):
                window[key] = queue[key]
                window.move_to_end(key, last=False)
                self._window_used += self._weight(key)
            queue.clear()
        self._protected_used = 0
        self._set_window(max(1, self._maxsize - 1))

    # -- ghosts and the admission margin -------------------------------------------

    def _on_miss(self, key: Any) -> None:
        """A key was inserted after a miss: learn from the ghosts that remember it."""
        self._misses_in_sample += 1
        rejected, evicted = self._rejected, self._evicted
        if key in rejected:
            # Rejected by the filter, wanted again: recency would have kept it.
            del rejected[key]
            if self._margin > 0:
                self._margin -= 1
            else:
                self._increase_window(self._ghost_step())
        elif key in evicted:
            # Evicted to admit a candidate, wanted again: the main area would have.
            del evicted[key]
            if self._window_max > 1:
                self._decrease_window(self._ghost_step())
            elif self._margin < _MAX_MARGIN:
                self._margin += 1

    def _ghost_step(self) -> Any:
        # One entry per ghost hit, as ARC moves its target by one per ghost hit:
        # in units of getsizeof, the mean size of the entries held.
        if self._sizes is None:
            return 1
        return max(1, self.currsize // max(1, len(self)))

    def _remember_rejected(self, key: Any) -> None:
        self._remember(self._rejected, key)

    def _remember_evicted(self, key: Any) -> None:
        self._remember(self._evicted, key)

    def _remember(self, ghost: OrderedDict[Any, None], key: Any) -> None:
        ghost[key] = None
        # Bounded by the number of entries (not weight units) the cache holds.
        if len(ghost) > max(1, len(self) // _GHOST_DIVISOR):
            ghost.popitem(False)

    # -- Caffeine's climb / determineAdjustment ---------------------------------------

    def _climb(self) -> None:
        self._demote_from_protected()
        maximum = self._maxsize
        if 2 * self.currsize < maximum:
            # Caffeine's sketch is not initialized until the cache is half full.
            self._previous_hit_rate = 0.0
            self._sample_min = _FIRST_SAMPLE
            self._hits_in_sample = self._misses_in_sample = 0
            return
        requests = self._hits_in_sample + self._misses_in_sample
        if requests < max(self._sketch.sample_size, self._sample_min):
            return
        hit_rate = self._hits_in_sample / requests
        # The shadow is read on the climber's sample: a jump to LRU is hard to
        # undo (the climber walks back at 6.25% a sample), so it needs a long look.
        if self._recency_wins() and self._window_max < self._maxsize - 1:
            self._become_lru()
            self._set_previous_hit_rate(hit_rate)
            self._hits_in_sample = self._misses_in_sample = 0
            return
        if self._sizes is not None:
            self._size_shadow()
        change = hit_rate - self._previous_hit_rate
        if abs(change) < _SAMPLE_ERROR:
            # Within one standard error of the last sample: noise, not a
            # response to the last step. Hold the window (Caffeine moves anyway).
            self._hits_in_sample = self._misses_in_sample = 0
            return
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            next_step = _STEP_PERCENT * maximum * (1 if amount >= 0 else -1)
        else:
            next_step = _STEP_DECAY * amount
        self._set_previous_hit_rate(hit_rate)
        self._step = next_step
        self._hits_in_sample = self._misses_in_sample = 0
        if amount > 0:
            self._increase_window(int(amount))
        elif amount < 0:
            self._decrease_window(int(-amount))

    def _set_previous_hit_rate(self, hit_rate: float) -> None:
        self._previous_hit_rate = hit_rate
        self._sample_min = _sample_floor(hit_rate)

    # -- moving entries between the window and the main area -------------------------

    def _set_window(self, window_max: Any) -> None:
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
            queue = probation
            if key is None or quota < self._weight(key):
                key = next(iter(protected), None)
                queue = protected
            if key is None:
                break
            weight = self._weight(key)
            if quota < weight:
                break
            quota -= weight
            if queue is protected:
                self._protected_used -= weight
            window[key] = queue.pop(key)
            self._window_used += weight
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
            probation[key] = window.pop(key)
            self._window_used -= weight
        self._set_window(self._window_max + quota)

    def _demote_from_protected(self) -> None:
        protected, probation = self._protected, self._probation
        for _ in range(_TRANSFER_LIMIT):
            if self._protected_used <= self._protected_max or not protected:
                break
            key, value = protected.popitem(False)
            probation[key] = value
            self._protected_used -= self._weight(key)
