"""How `TinyLFUCache` moves its window: ghosts, the admission margin and the hill climber.

Split from `tinylfu.py`, which holds the queues and the admission duel;
the class docstring of [`TinyLFUCache`][scalekit.caching.TinyLFUCache]
describes the three mechanisms.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ._sketch import FrequencySketch

_TRANSFER_LIMIT = 1000
_RESTART_THRESHOLD = 0.05
_STEP_PERCENT = 0.0625
_STEP_DECAY = 0.98
_MIN_SAMPLE = 10_000
_GHOST_DIVISOR = 20  # each ghost list remembers entries / 20 keys
_STEP_DIVISOR = 500  # a ghost hit moves the window by maxsize / 500 (at least 1)
_MAX_MARGIN = 2  # how much hotter than the victim a candidate must be, at most


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
        self._ghost_step = max(1, maximum // _STEP_DIVISOR)
        self._margin = 0
        # The climber sees phase changes the ghosts miss (a loop after a
        # recency phase: its keys return too late to be remembered).
        self._hits_in_sample = 0
        self._misses_in_sample = 0
        self._previous_hit_rate = 0.0
        self._step = _STEP_PERCENT * maximum  # the first step grows the window

    def _clear_ghosts(self) -> None:
        self._rejected.clear()
        self._evicted.clear()

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
                self._increase_window(self._ghost_step)
        elif key in evicted:
            # Evicted to admit a candidate, wanted again: the main area would have.
            del evicted[key]
            if self._window_max > 1:
                self._decrease_window(self._ghost_step)
            elif self._margin < _MAX_MARGIN:
                self._margin += 1

    def _remember_rejected(self, key: Any) -> None:
        self._remember(self._rejected, key)

    def _remember_evicted(self, key: Any) -> None:
        self._remember(self._evicted, key)

    def _remember(self, ghost: OrderedDict[Any, None], key: Any) -> None:
        ghost[key] = None
        # Bounded by the number of entries (not weight units) the cache holds.
        if len(ghost) > max(1, len(self) // _GHOST_DIVISOR):
            ghost.popitem(last=False)

    # -- Caffeine's climb / determineAdjustment ---------------------------------------

    def _climb(self) -> None:
        self._demote_from_protected()
        maximum = self._maxsize
        if 2 * self.currsize < maximum:
            # Caffeine's sketch is not initialized until the cache is half full.
            self._previous_hit_rate = 0.0
            self._hits_in_sample = self._misses_in_sample = 0
            return
        requests = self._hits_in_sample + self._misses_in_sample
        if requests < max(self._sketch.sample_size, _MIN_SAMPLE):
            return
        hit_rate = self._hits_in_sample / requests
        change = hit_rate - self._previous_hit_rate
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART_THRESHOLD:
            next_step = _STEP_PERCENT * maximum * (1 if amount >= 0 else -1)
        else:
            next_step = _STEP_DECAY * amount
        self._previous_hit_rate = hit_rate
        self._step = next_step
        self._hits_in_sample = self._misses_in_sample = 0
        if amount > 0:
            self._increase_window(int(amount))
        elif amount < 0:
            self._decrease_window(int(-amount))

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
            key, value = protected.popitem(last=False)
            probation[key] = value
            self._protected_used -= self._weight(key)
