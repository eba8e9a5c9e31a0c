"""W-TinyLFU with an adaptive window (Einziger, Friedman and Manes; Caffeine)."""

from __future__ import annotations

import math
import random
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

from .._validation import random_source
from ._keyhash import stable_hash
from ._speedups import FrequencySketch
from ._tinylfu_sizing import _GOLDEN, _M64, WindowSizing
from .base import _OPS, MISSING, Cache, _defined_outside

__all__ = ["TinyLFUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_PERCENT_MAIN = 0.99
_PERCENT_MAIN_PROTECTED = 0.80
_WARM = 6  # a candidate this frequent may win a lost duel at random (Caffeine's hash-flood guard)
_DEFAULT_SEED = 0x7F4A7C15
_FILL_SKETCH = 1024  # below this many entries a filling cache's sketch is sized for twice its count


class _Segment(OrderedDict[Any, Any]):
    """The probation queue: an `OrderedDict` that gives back its table once most entries left.

    A dict never shrinks its table as keys leave, and the probation queue is
    the one that empties in bulk: it holds nearly every entry while the cache
    fills, then each hit promotes its entry to the protected queue. Without
    this, a cache whose every entry was hit once keeps two full-size tables.
    `pop` (which promotion and removal use) remembers the largest size seen;
    when fewer than a quarter of that remain (and it held at least 64), the
    queue is rebuilt in place (same object, same order) with a table sized
    by what it holds. The
    rebuild copies at most a third as many entries as left since the last
    one, so it costs O(1) amortized per pop.
    """

    _peak = 0

    def pop(self, key: Any, *default: Any) -> Any:
        n = len(self)
        value = super().pop(key, *default)
        if n > self._peak:
            self._peak = n
        elif n < self._peak >> 2 and self._peak >= 64:
            items = list(self.items())
            self.clear()  # frees the table
            self.update(items)
            self._peak = len(items)
        return value


class TinyLFUCache(WindowSizing, Cache[K, V]):
    """W-TinyLFU: an LRU admission window, a TinyLFU filter and a segmented-LRU main area.

    New entries enter a small LRU *window*. Entries pushed out of the window
    become *candidates* for the main area, a segmented LRU (a *probation*
    segment, and a *protected* segment for entries hit while on probation).
    When the cache is over capacity a candidate duels the probation
    segment's LRU *victim*: a frequency sketch (count-min with conservative
    update and 4-bit counters, halved every `10 * entries` events, with a
    doorkeeper) estimates both, and the candidate is admitted only if its
    estimate exceeds the victim's by more than the *admission margin*
    (0 unless loops raise it, see below); otherwise the candidate is
    evicted. A warm candidate (estimate >= 6) that loses still wins 1 duel
    in 128 at random, as in Caffeine, so that keys crafted to collide in
    the sketch cannot lock the main area.

    The window starts at 1% of the capacity and protected at 80% of the
    main area, as in Caffeine; five adaptive mechanisms then move the
    balance between recency and frequency:

    * *Ghosts*, as in ARC: the cache remembers the keys of the last
      `entries // 20` candidates the filter rejected and of the last
      `entries // 20` victims it evicted to admit a candidate. A miss on a
      remembered rejected key means recency would have kept it: the window
      grows by one entry (as ARC moves its target by one per ghost hit). A
      miss on a remembered victim means the main area would have kept it:
      the window shrinks by one entry.
    * The *admission margin* continues that dial past the smallest window:
      a victim ghost hit when the window is already at its minimum raises
      the margin by one (up to 2), and a rejected ghost hit lowers it
      before the window grows again. It stops the churn of loops and scans
      larger than the cache, where every sketch reset makes just-seen
      candidates look one count hotter than the residents they would evict.
    * A *shadow LRU* (a miniature simulation): an LRU of the cache's entry
      count over a hash-sampled subset of the keys (every key up to 1,024
      entries, 1 in `2**k` above, so it holds at most 1,024 keys). Once per
      climber sample, if it hit more than the cache on the same sampled
      lookups by over two standard errors, the main area moves into the
      window and the cache becomes an LRU (sweeps where recency is optimal
      from the start, which one-entry ghost steps would reach too late).
    * A *shadow FIFO* beside it (as many entries, the same sampled keys)
      sets the window's order. Their hits add up over climber samples
      until they differ by more than two standard errors; then the window
      takes the winner's order and the count starts over. In FIFO order a
      hit in the window leaves its entry in place: where a hit is a key's
      last use (keys requested exactly twice), moving it to the recent end
      keeps a dead key longer (S3-FIFO's argument for FIFO queues).
    * Caffeine's *hill climber* (`BoundedLocalCache.climb` and
      `determineAdjustment`) acts on phase changes the ghosts cannot see.
      Its sample is `10 * entries` requests, as in Caffeine, or more when
      that is too few to measure a hit ratio: at least
      `2 * p * (1 - p) / 0.0075**2` requests at the previous sample's hit
      ratio `p` (8,888 at first), so that two samples' hit ratios differ by
      noise of 0.75 point (one standard error). A change within that noise
      holds the window; otherwise, if the hit ratio improved the window
      keeps moving the same way, else it turns back; steps start at 6.25%
      of the capacity and decay by 2% per move unless the hit ratio jumps
      by 5 points, which restarts them.

    Unlike Caffeine the window may grow past the protected share, taking
    the probation segment, up to `maxsize - 1`: recency-heavy traffic
    makes the cache nearly an LRU, while loops and scans keep it a
    filtered LFU.

    Every size that follows the traffic (the sketch, its ageing period, the
    climber's sample, the ghost lists and the shadow) counts *entries*, not
    units of `getsizeof`: the sketch starts at 16 entries and doubles as
    the cache fills (with unit sizes, for the largest power of two of the
    entries held, or twice them up to 1,024, and `maxsize` entries once
    full; twice the entries held with `getsizeof`), so an empty
    `TinyLFUCache(10**7)` takes a few kilobytes and a cache of large
    values still ages, climbs and keeps short ghost lists. The window and
    segment shares are in units of `getsizeof`. `maxsize=0` caches nothing; `maxsize=math.inf` never
    evicts, so its policy never acts.

    As an admission policy, it may decline to keep a new entry: after
    `cache[k] = v` the key is in the window unless the window was empty
    of room and the sketch preferred the main area's victim.

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        getsizeof: optional function giving a value's size.
        rng: source of the 1-in-128 random admission. The default is a
            `random.Random` with a fixed seed, so that replays are
            reproducible: the sketch and the shadow's sample hash keys with
            `_keyhash.stable_hash`, the same in every process for `int`,
            `float`, `bool`, `None`, `str` and `bytes` (whose `hash()`
            Python salts per process) and tuples of them, such as the keys
            `cached` builds, so replays of such keys repeat exactly; other
            keys (a `frozenset`, your own classes) are hashed by `hash()`
            and may follow `PYTHONHASHSEED`. Pass your
            own `rng` (for example `random.Random()`) to make admission
            unpredictable to clients that choose keys; the hit ratio then
            varies from run to run by the spread over seeds (docs/caching.md).
            Any object with a `getrandbits(k)` method will do; it is checked
            at construction.
        doorkeeper: put a Bloom filter in front of the sketch (default True).

    Raises:
        ArgumentTypeError: `maxsize` is neither an `int` nor `math.inf` (a bool,
            `None`, a string), or `rng` has no callable `getrandbits`
            (`rng must be a random.Random ..., got int: 5`).
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) amortized per operation.
    """

    #: True when a class outside scalekit overrides popitem or __delitem__ (cachetools
    #: users hook evictions that way): then each eviction goes through popitem().
    _hooked_evictions: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooked_evictions = _defined_outside(cls, "popitem") or _defined_outside(
            cls, "__delitem__"
        )

    _window_writes = 0  # new keys written since the window was last rebuilt
    _window_bytes = 0  # its size then, plus a quarter

    def __init__(
        self,
        maxsize: int,
        getsizeof: Callable[[V], int] | None = None,
        *,
        rng: random.Random | None = None,
        doorkeeper: bool = True,
    ) -> None:
        random_source("rng", rng, "getrandbits", "getrandbits(k)")
        super().__init__(maxsize, getsizeof)
        maximum: Any = self._maxsize
        self._rng = rng if rng is not None else random.Random(_DEFAULT_SEED)
        # Unit-sized entries cannot outnumber maxsize; sized ones may (size 0).
        self._entry_bound: Any = maximum if getsizeof is None else math.inf
        self._sketch = FrequencySketch(int(min(16, self._entry_bound)), doorkeeper=doorkeeper)
        # Each key is in exactly one queue, with its value: no per-entry index or
        # node beyond the OrderedDict's own (a lookup tries the queues in turn).
        self._window: OrderedDict[Any, Any] = OrderedDict()
        self._probation: OrderedDict[Any, Any] = _Segment()
        self._protected: OrderedDict[Any, Any] = OrderedDict()
        self._window_used = 0
        self._protected_used = 0
        if math.isinf(maximum):
            window = protected = maximum  # unbounded: nothing ever leaves the window
        else:
            window = maximum - int(_PERCENT_MAIN * maximum)
            protected = int(_PERCENT_MAIN_PROTECTED * (maximum - window))
        self._window_max = window
        self._protected_max = protected
        self._init_sizing(maximum, window + protected)

    @property
    def window_maxsize(self) -> int:
        """The admission window's current share of `maxsize` (ghosts and climber move it)."""
        return self._window_max  # type: ignore[no-any-return]

    def _weight(self, key: Any) -> int:
        sizes = self._sizes
        return 1 if sizes is None else sizes[key]

    # -- mapping -------------------------------------------------------------------

    def _queue(self, key: Any) -> OrderedDict[Any, Any] | None:
        for queue in (self._protected, self._window, self._probation):
            if key in queue:
                return queue
        return None

    def __contains__(self, key: object) -> bool:
        """Whether `key` is cached, without counting a hit or touching the policy."""
        return key in self._protected or key in self._window or key in self._probation

    def __len__(self) -> int:
        """The number of cached entries."""
        return len(self._window) + len(self._probation) + len(self._protected)

    def __iter__(self) -> Iterator[K]:
        """The cached keys (window, probation, then protected), without touching the policy.

        Iterates over a snapshot: a key written while iterating (which may move
        it to another segment) is visited once, a key added is not visited and
        a key removed is skipped.
        """
        for key in [*self._window, *self._probation, *self._protected]:
            if key in self:
                yield key

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D) -> V | D: ...
    def get(self, key: K, default: Any = None) -> Any:
        """Return the value for `key` (recording the access), or `default`.

        Runtime complexity: O(1).
        """
        # _on_access, inlined for the common protected and window hits.
        queue = self._protected
        value = queue.get(key, MISSING)
        if value is MISSING:
            queue = self._window
            value = queue.get(key, MISSING)
            if value is MISSING:
                queue = self._probation
                if key not in queue:
                    self._misses += 1
                    shift = self._shadow_shift
                    if shift == 64 or (
                        shift > 0 and not ((stable_hash(key) * _GOLDEN) & _M64) >> shift
                    ):
                        self._observe(key, False)
                    return default
                self._hits += 1
                shift = self._shadow_shift
                if shift == 64 or (
                    shift > 0 and not ((stable_hash(key) * _GOLDEN) & _M64) >> shift
                ):
                    self._observe(key, True)
                return self._on_access(key, queue)
        self._hits += 1
        shift = self._shadow_shift
        if shift == 64 or (shift > 0 and not ((stable_hash(key) * _GOLDEN) & _M64) >> shift):
            self._observe(key, True)
        self._sketch.increment(key)
        if queue is not self._window or not self._window_fifo:
            queue.move_to_end(key)
        self._hits_in_sample += 1
        return value

    def __getitem__(self, key: K) -> V:
        """Return the value for `key` (recording the access).

        Raises:
            KeyError: if absent (unless a subclass defines `__missing__`).

        Runtime complexity: O(1).
        """
        queue = self._queue(key)
        if queue is None:
            self._misses += 1
            shift = self._shadow_shift
            if shift == 64 or (shift > 0 and not ((stable_hash(key) * _GOLDEN) & _M64) >> shift):
                self._observe(key, False)
            return self.__missing__(key)
        self._hits += 1
        shift = self._shadow_shift
        if shift == 64 or (shift > 0 and not ((stable_hash(key) * _GOLDEN) & _M64) >> shift):
            self._observe(key, True)
        return self._on_access(key, queue)  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        """Store `value`; the cache may then evict it or another entry (see the class).

        Raises:
            ValueError: `"value too large"` if its size exceeds `maxsize`.

        Runtime complexity: O(1) amortized.
        """
        sizes = self._sizes
        size = 1 if sizes is None else self._size_of(value)
        if size > self._maxsize:
            raise ValueError("value too large")
        mark = 0
        if sizes is not None:
            # As the base class's writes: code of a key or a value that writes,
            # deletes or clears this cache meanwhile is counted, and the sizes
            # are then recounted (see `Cache._settle_sizes`).
            _OPS.started = mark = _OPS.started + 1
        try:
            queue = self._queue(key)
            if queue is not None:
                # The old value is released once the write is done (its __del__
                # may use the cache).
                old = queue[key]
                queue[key] = value
                if sizes is not None:
                    diff = size - sizes[key]
                    sizes[key] = size
                    self._currsize += diff
                    if queue is self._window:
                        self._window_used += diff
                    elif queue is self._protected:
                        self._protected_used += diff
                self._on_access(key, queue)
            else:
                old = None
                self._window[key] = value
                self._window_used += size
                if sizes is not None:
                    sizes[key] = size
                    self._currsize += size
                if self._sketch.entries < self._entry_bound:
                    self._grow_sketch()
                self._sketch.increment(key)
                self._on_miss(key)
            # As Caffeine's maintenance: the window overflows into probation on
            # every write, then the main area evicts if the cache is over capacity.
            self._evict_entries()
            self._climb()
        finally:
            if sizes is not None and _OPS.started != mark:
                self._settle_sizes()
        del old

    def _grow_sketch(self) -> None:
        # Called on each write of a new key until the sketch has its full size.
        count = len(self)
        sketch = self._sketch
        bound = self._entry_bound
        if count >= bound:
            sketch.ensure_capacity(bound)  # full: sized for maxsize entries
            return
        if count > sketch.entries:
            # Sized for twice the entries held up to 1,024 entries (48 KiB) and
            # for a weighted cache, whose count varies with the sizes; past that
            # a filling cache's sketch is sized for the largest power of two of
            # the entries held (half to all of them), never more than a cache of
            # `count` entries gets. Nothing is evicted before the cache is full,
            # so no duel reads the sketch yet.
            target = 2 * count
            if target > _FILL_SKETCH and self._sizes is None:
                target = max(_FILL_SKETCH, 1 << (count.bit_length() - 1))
            sketch.ensure_capacity(min(target, bound))
        if self._sizes is None and self._window_max >= _FILL_SKETCH:
            self._compact_window()  # a smaller window's slack is not worth a look

    def _compact_window(self) -> None:
        # While the cache fills past its window, every new key pushes the oldest
        # window entry to probation; a dict's deleted slots are freed only when
        # it resizes, and then to a table for 3x the keys it holds: twice the one
        # those keys need. Rebuilt in place (same object, same order) when the
        # table has grown while the window's count has not, at most once per
        # quarter of its entries written, so O(1) amortized per write.
        window = self._window
        self._window_writes += 1
        if self._window_writes < len(window) >> 2 or len(window) < self._window_max:
            return
        size = sys.getsizeof(window)
        if size <= self._window_bytes:
            return
        if self._window_bytes:  # else the window just filled, by insertions only
            items = list(window.items())
            window.clear()
            window.update(items)
        self._window_writes = 0
        self._window_bytes = sys.getsizeof(window) * 5 // 4

    # -- policy hooks --------------------------------------------------------------

    def _on_access(self, key: Any, queue: OrderedDict[Any, Any]) -> Any:
        self._sketch.increment(key)
        self._hits_in_sample += 1
        if queue is self._probation:
            weight = self._weight(key)
            if weight <= self._protected_max:
                value = queue.pop(key)
                self._protected[key] = value
                self._protected_used += weight
                return value
        if queue is not self._window or not self._window_fifo:
            queue.move_to_end(key)
        return queue[key]

    def _touch(self, key: Any) -> Any:
        queue = self._queue(key)
        if queue is None:
            return MISSING
        return self._on_access(key, queue)

    def _peek(self, key: Any) -> Any:
        queue = self._queue(key)
        return MISSING if queue is None else queue[key]

    def _remove(self, key: Any) -> Any:
        queue = self._queue(key)
        if queue is None:
            raise KeyError(key)
        value = queue.pop(key)
        if queue is self._window:
            self._window_used -= self._weight(key)
        elif queue is self._protected:
            self._protected_used -= self._weight(key)
        return value

    def _victim(self) -> Any:
        for queue in (self._probation, self._protected, self._window):
            if queue:
                return next(iter(queue))
        raise KeyError(f"{type(self).__name__} is empty")

    def _clear(self) -> None:
        # The entries are held until the cache is empty and whole: a key's or
        # value's __del__ may write to it.
        held = [list(queue.items()) for queue in (self._window, self._probation, self._protected)]
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._clear_ghosts()
        self._window_used = self._protected_used = 0
        self._window_writes = self._window_bytes = 0
        del held

    def popitem(self) -> tuple[K, V]:
        """Remove and return the `(key, value)` pair the policy evicts next.

        Called by a write that evicts (when a subclass overrides `popitem`
        or `__delitem__`), it removes the entry that write's admission duel
        chose: the candidate the sketch rejected, or the main area's victim
        it lost to. Called directly, no candidate is pending: it removes the
        main area's victim, the least recent entry of probation (then of
        protected, then of the window). The entry leaves through
        `__delitem__`.

        Raises:
            KeyError: if the cache is empty (its context suppressed, as cachetools).

        Runtime complexity: O(1).
        """
        key = self.__dict__.pop("_evicting", MISSING)
        if key is MISSING or key not in self:
            return super().popitem()
        value = self._peek(key)
        del self[key]
        return key, value

    def _evict_hooked(self, key: Any) -> None:
        # A subclass hooks evictions: the entry the policy chose leaves through
        # self.popitem() (see popitem), and so through __delitem__, as in cachetools.
        ops = _OPS
        started = ops.started
        self.__dict__["_evicting"] = key
        try:
            self.popitem()
        finally:
            self.__dict__.pop("_evicting", None)
        if ops.started == started + 1:
            ops.started = started  # the eviction's own weighted delete is no re-entry
        self._evictions += 1

    def _evict(self, key: Any) -> None:
        if self._hooked_evictions:
            self._evict_hooked(key)
            return
        # The value is released once the books are kept: its __del__ may use the cache.
        value = self._remove(key)
        sizes = self._sizes
        if sizes is not None:
            self._currsize -= sizes.pop(key)
        self._evictions += 1
        del value

    # -- eviction (Caffeine's evictFromWindow / evictFromMain / admit) ----------------

    def _evict_entries(self) -> None:
        window, probation = self._window, self._probation
        candidates: list[Any] = []
        while self._window_used > self._window_max and window:
            key, value = window.popitem(False)
            probation[key] = value
            self._window_used -= self._weight(key)
            candidates.append(key)
        # Candidates are tried newest first; the victim is the LRU end of the queues.
        queues = (probation, self._protected, window)
        qi = 0
        maximum = self._maxsize
        while self.currsize > maximum:
            candidate = None
            while candidates:
                # A candidate may have been evicted as a victim earlier in this loop.
                candidate = candidates.pop()
                if candidate in probation:
                    break
                candidate = None
            if candidate is None:
                candidate = next(reversed(window), None)
            victim = None
            while qi < 3:
                victim = next(iter(queues[qi]), None)
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
                self._remember_evicted(victim)
            else:
                self._evict(candidate)
                self._remember_rejected(candidate)

    def _admit(self, candidate: Any, victim: Any) -> bool:
        sketch = self._sketch
        victim_freq = sketch.frequency(victim)
        candidate_freq = sketch.frequency(candidate)
        if candidate_freq > victim_freq + self._margin:
            return True
        if candidate_freq < _WARM:
            return False
        return self._rng.getrandbits(7) == 0


if not TYPE_CHECKING:  # the compiled twin when the extension is built (see _speedups)
    from ._speedups import tinylfu

    TinyLFUCache = tinylfu(TinyLFUCache)
