"""Random replacement eviction."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .._validation import random_source
from ..exceptions import ArgumentTypeError
from .base import MISSING, Cache

__all__ = ["RRCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_RANDOM_CHOICE = random.Random.choice


class RRCache(Cache[K, V]):
    """Evicts a random entry; drop-in for `cachetools.RRCache`.

    Keys are kept in a list with an index map (swap-remove), so choosing
    and removing a victim is O(1).

    Args:
        maxsize: capacity (entries, or units of `getsizeof`): an `int` >= 0, where `0`
            caches nothing (every write raises `ValueError("value too large")`),
            or `math.inf` for no bound.
        choice: picks the victim from a sequence of keys, as cachetools'
            `choice=` (default: `rng.choice`, or `random.choice` without *rng*,
            as in cachetools: `random.seed()` then makes evictions reproducible).
        getsizeof: optional function giving a value's size.
        rng: the `random.Random` to draw victims from (seed it for
            reproducible runs; any object with a `choice` method); ignored
            when *choice* is given, though still checked. A deep copy or an
            unpickled cache draws from its own copy of the generator, in the
            state the source's had; `copy.copy` shares `choice`, and so the
            generator, with the source, as in cachetools.

    Raises:
        ArgumentTypeError: `maxsize` is neither an `int` nor `math.inf` (a bool,
            `None`, a string), `choice` is not callable, or `rng` has no
            callable `choice` method (`rng must be a random.Random ..., got int: 5`).
        ConfigurationError: `maxsize` is negative, NaN, a finite float or above
            `sys.float_info.max`.

    Thread-safety: not thread-safe; guard shared use with a lock.

    Runtime complexity: O(1) per operation.
    """

    _state: ClassVar[tuple[str, ...] | None] = ("_data", "_index", "_keys", "_sizes")

    def __init__(
        self,
        maxsize: int,
        choice: Callable[[Sequence[Any]], Any] | None = None,
        getsizeof: Callable[[V], int] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if choice is not None and not callable(choice):
            raise ArgumentTypeError(
                f"choice must be callable (it picks the victim from a sequence of keys), "
                f"got {type(choice).__name__}: {choice!r}"
            )
        random_source("rng", rng, "choice", "choice(keys)")
        super().__init__(maxsize, getsizeof)
        if choice is None:
            # cachetools' default: the random module's shared generator, so that
            # random.seed() makes evictions reproducible.
            choice = random.choice if rng is None else rng.choice
        self._choice = choice
        self._bind_draw()
        self._data: dict[Any, Any] = {}
        self._index: dict[Any, int] = {}
        self._keys: list[Any] = []

    def _get(self, key: K, default: Any = None) -> Any:
        """Return the value for *key*, or *default*. Runtime complexity: O(1)."""
        value = self._data.get(key, MISSING)
        if value is MISSING:
            self._misses += 1
            return default
        self._hits += 1
        return value

    if not TYPE_CHECKING:  # type checkers see the overloads of Cache.get
        get = _get

    def __setitem__(self, key: K, value: V) -> None:
        if self._sizes is not None:
            Cache.__setitem__(self, key, value)
            return
        data = self._data
        if key in data:
            data[key] = value
            return
        if len(data) >= self._maxsize:
            if self._inline and data:
                keys = self._keys
                getrandbits = self._getrandbits
                if getrandbits is None:
                    victim = self._choice(keys)
                else:
                    n = len(keys)
                    bits = n.bit_length()
                    i = getrandbits(bits)
                    while i >= n:
                        i = getrandbits(bits)
                    victim = keys[i]
                # The body of _remove, inlined: this is the miss path.
                del data[victim]
                index = self._index
                i = index.pop(victim)
                last = keys.pop()
                if i < len(keys):
                    keys[i] = last
                    index[last] = i
                self._evictions += 1
            else:
                self._make_room()
        index = self._index
        keys = self._keys
        data[key] = value
        index[key] = len(keys)
        keys.append(key)

    def _bind_draw(self) -> None:
        # With the choice method of a plain random.Random (the default, `rng=` or
        # `choice=r.choice`), __setitem__ draws the victim's index itself, as
        # Random.choice does (getrandbits of the length's bit length, redrawn
        # while out of range): the same victims, one Python call fewer per
        # eviction. Derived from `_choice` whenever the state is set, so that a
        # deep copy or an unpickled cache draws from its own generator, the one
        # its copied `_choice` is bound to.
        choice: Any = self._choice
        owner = getattr(choice, "__self__", None)
        if type(owner) is random.Random and getattr(choice, "__func__", None) is _RANDOM_CHOICE:
            self._getrandbits: Callable[[int], int] | None = owner.getrandbits
        else:
            self._getrandbits = None

    def __getstate__(self) -> dict[str, Any]:
        """The state to copy or pickle: without the bound draw, derived again from `choice`."""
        state = dict(self.__dict__)
        state.pop("_getrandbits", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_draw()

    @property
    def choice(self) -> Callable[[Sequence[Any]], Any]:
        """The function choosing victims."""
        return self._choice

    def _touch(self, key: Any) -> Any:
        return self._data.get(key, MISSING)

    _peek = _touch

    def _update(self, key: Any, value: Any) -> bool:
        data = self._data
        if key not in data:
            return False
        data[key] = value
        return True

    def _insert(self, key: Any, value: Any) -> None:
        self._data[key] = value
        self._index[key] = len(self._keys)
        self._keys.append(key)

    def _remove(self, key: Any) -> Any:
        value = self._data.pop(key)
        keys = self._keys
        index = self._index.pop(key)
        last = keys.pop()
        if index < len(keys):
            keys[index] = last
            self._index[last] = index
        return value

    def _victim(self) -> Any:
        return self._choice(self._keys)

    def _clear(self) -> None:
        # The values are held until the cache is empty and whole: a value's __del__
        # may write to it (its entry must then be in the key list too).
        held = list(self._data.values())
        self._data.clear()
        self._index.clear()
        self._keys.clear()
        del held
