"""The hash TinyLFU's sketch and shadow sample take of a key: `hash()`, but stable for text.

Python salts the `hash()` of `str` and `bytes` per process
(`PYTHONHASHSEED`), so a sketch indexed by it would collide on other keys
in every process, and a cache's admission decisions (and hit ratio) would
change from one run to the next. `stable_hash` hashes the contents of an
exact `str` (its UTF-8 encoding, lone surrogates kept) or `bytes` instead,
the same in every process: the bytes read as a little-endian number modulo
the prime `2**61 - 1`, plus the length times a 64-bit odd constant (so that
trailing zero bytes count), modulo `2**64`. Every other key keeps its
`hash()` (an `int`'s is already the same everywhere). The compiled sketch
computes the same value in C for ASCII `str` and for `bytes`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["stable_hash"]

_M64 = (1 << 64) - 1
_P = (1 << 61) - 1
_LENGTH = 0x9E3779B97F4A7C15


def stable_hash(key: Any) -> int:
    """`hash(key)`, or for an exact `str` or `bytes` a 64-bit hash of its contents.

    Example:
        >>> stable_hash(12) == hash(12)
        True
        >>> stable_hash("a") == 97 + 0x9E3779B97F4A7C15
        True
    """
    kind = type(key)
    if kind is str:
        data = key.encode("utf-8", "surrogatepass")
    elif kind is bytes:
        data = key
    else:
        return hash(key)
    return (int.from_bytes(data, "little") % _P + len(data) * _LENGTH) & _M64
