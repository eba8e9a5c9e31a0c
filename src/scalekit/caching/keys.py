"""Key functions for `cached` and `cachedmethod`, call-compatible with `cachetools.keys`.

A key is a plain tuple: the positional arguments, then (only if there are
keyword arguments) a marker and the sorted `(name, value)` pairs. The
marker is a singleton that pickles and copies as itself, so a memo cache
restored with `pickle` or `copy.deepcopy` still hits on keyword calls.

```pycon
>>> hashkey(1, 2) == (1, 2)
True
>>> hashkey(1, b=2) == hashkey(1, b=2) != hashkey(1, 2)
True

```
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["hashkey", "methodkey", "typedkey", "typedmethodkey"]


class _KwargsMark:
    """Separates positional from keyword arguments in a key (one instance, equal to no argument)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<kwargs>"

    def __reduce__(self) -> str:
        return "KWARGS_MARK"  # pickled by reference: unpickles as the same object

    def __copy__(self) -> _KwargsMark:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _KwargsMark:
        return self


KWARGS_MARK = _KwargsMark()
_MARK = (KWARGS_MARK,)


def hashkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """The default key: the positional arguments, then the sorted keyword arguments.

    Equal calls give equal keys; `f(1, x=2)` and `f(1, 2)` give different ones.

    Runtime complexity: O(n log n) in the number of keyword arguments.
    """
    if kwargs:
        return args + _MARK + tuple(sorted(kwargs.items()))
    return args


def methodkey(self: Any, /, *args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """As `hashkey`, leaving out `self` (the default key of `cachedmethod`)."""
    if kwargs:
        return args + _MARK + tuple(sorted(kwargs.items()))
    return args


def typedkey(*args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """As `hashkey`, followed by the argument types: `f(1)` and `f(1.0)` get different keys."""
    key = hashkey(*args, **kwargs)
    if kwargs:
        key += tuple(type(v) for _, v in sorted(kwargs.items()))
    return key + tuple(map(type, args))


def typedmethodkey(self: Any, /, *args: Hashable, **kwargs: Hashable) -> tuple[Hashable, ...]:
    """As `typedkey`, leaving out `self`."""
    return typedkey(*args, **kwargs)
