"""The hash TinyLFU's sketch and shadow sample take of a key: the same in every process.

Python salts the `hash()` of `str` and `bytes` per process
(`PYTHONHASHSEED`), and with them the `hash()` of every tuple holding one,
which is every key `cached`, `cachedmethod` and the `*_cache` decorators
build for a text argument. A sketch indexed by `hash()` would then collide
on other keys in every process, and a cache's admission decisions (and hit
ratio) would change from one run to the next. `stable_hash` is, modulo
`2**64` (the value is always in `0 .. 2**64 - 1`):

* an exact `str`: the hash of its UTF-8 encoding (lone surrogates kept) as
  `bytes`;
* an exact `bytes`: the bytes read as a little-endian number modulo the
  prime `2**61 - 1`, plus the length times the odd constant
  `0x9E3779B97F4A7C15` (so that trailing zero bytes count);
* an exact `tuple` `(x1, ..., xn)`: with `P1 = 11400714785074694791`,
  `P2 = 14029467366897019727` and `P5 = 2870177450012600261`, start from
  `acc = P5`; for each item, `acc = rotl31(acc + stable_hash(xi) * P2) * P1`
  (`rotl31` rotates the 64 bits left by 31); then
  `acc += n ^ (P5 ^ 3527539)`, and `acc == 2**64 - 1` becomes
  `1546275796`. This is the xxHash-style combination CPython (3.8 and later,
  64-bit) uses for `hash(tuple)`, over the stable hashes of the items, so a
  tuple of numbers keeps exactly its `hash()` (modulo `2**64`);
* `None`: `0xF0E1D2C3B4A59687` (its `hash()` is its address before
  Python 3.12);
* `keys.KWARGS_MARK`, the marker between positional and keyword arguments in
  a key: `0x6B7761726773D00D`;
* an exact `type` (as `typedkey` appends): the hash of the `str`
  `f"{t.__module__}.{t.__qualname__}"`;
* an instance of a subclass of `tuple` (a `namedtuple`, the hashed tuple
  `cachetools.keys.hashkey` returns), `str` (a `StrEnum` member) or
  `bytes`: the hash of the plain `tuple` of its items, or of its text or
  bytes, whatever its own `__hash__` (the sketch only estimates, so a
  subclass whose equality differs from its contents' costs accuracy, never
  a wrong result);
* anything else: `hash(key)` modulo `2**64`. For `int`, `float`, `bool` and
  `complex` that is the same in every process (on a 64-bit build); for a
  `frozenset` (whose `hash()` combines its items' salted hashes), a
  `datetime` or an instance of a user class it follows `PYTHONHASHSEED`
  or the object's address as `hash()` does.

So the keys that hash the same in every process are `int`, `float`,
`bool`, `complex`, `None`, `str` and `bytes`, exact types, and tuples
(nested to any depth) of these, which covers every key `hashkey`,
`methodkey`, `typedkey` and `typedmethodkey` build from such arguments.
The compiled sketch and the compiled TinyLFU core compute the same value
in C (`_keyhash.pxi`), calling this function only for a non-ASCII `str`,
a `type` and the subclasses.
"""

from __future__ import annotations

from typing import Any

from .keys import KWARGS_MARK

__all__ = ["stable_hash"]

_M64 = (1 << 64) - 1
_P = (1 << 61) - 1
_LENGTH = 0x9E3779B97F4A7C15
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P5 = 2870177450012600261
_TAIL = _P5 ^ 3527539
_NONE = 0xF0E1D2C3B4A59687
_MARK = 0x6B7761726773D00D


def stable_hash(key: Any) -> int:
    """A 64-bit hash of *key* that is the same in every process for the keys listed above.

    Example:
        >>> stable_hash(12) == hash(12)
        True
        >>> stable_hash("a") == 97 + 0x9E3779B97F4A7C15
        True
        >>> stable_hash((1, 2.5)) == hash((1, 2.5)) % 2**64
        True
    """
    kind = type(key)
    if kind is tuple:
        acc = _P5
        for item in key:
            # The two commonest items inline (a call costs more than their hash).
            item_kind = type(item)
            if item_kind is str:
                data = item.encode("utf-8", "surrogatepass")
                lane = int.from_bytes(data, "little") % _P + len(data) * _LENGTH
            elif item_kind is int:
                lane = hash(item)
            else:
                lane = stable_hash(item)
            acc = (acc + lane * _P2) & _M64
            acc = (((acc << 31) | (acc >> 33)) * _P1) & _M64
        acc = (acc + (len(key) ^ _TAIL)) & _M64
        return 1546275796 if acc == _M64 else acc
    if kind is str:
        data = key.encode("utf-8", "surrogatepass")
    elif kind is bytes:
        data = key
    elif key is None:
        return _NONE
    elif key is KWARGS_MARK:
        return _MARK
    elif kind is type:
        return stable_hash(f"{key.__module__}.{key.__qualname__}")
    elif isinstance(key, tuple):  # a namedtuple, cachetools' hashed tuple: as its items
        return stable_hash(tuple(tuple.__iter__(key)))
    elif isinstance(key, (str, bytes)):  # a StrEnum member: as its text
        return stable_hash(str.__str__(key) if isinstance(key, str) else bytes(memoryview(key)))
    else:
        return hash(key) & _M64
    return (int.from_bytes(data, "little") % _P + len(data) * _LENGTH) & _M64
