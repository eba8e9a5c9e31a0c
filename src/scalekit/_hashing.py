"""The one stable key hash of scalekit: MurmurHash3 over a documented byte encoding.

Python's builtin `hash()` of a `str` is salted per process
(`PYTHONHASHSEED`), so two workers would place the same key on different
shards. Everything in scalekit that places a key hashes it here instead.

Byte encoding (`key_bytes()`), the same bytes redis-py sends for a key:

* `str`: its UTF-8 encoding;
* `bytes`, `bytearray`, `memoryview`: the bytes as they are;
* `int` (not `bool`): the ASCII decimal digits, with a leading `-` for
  negatives (`12` and `"12"` therefore hash alike, as they do in Redis).

Anything else (`float`, `bool`, `None`, tuples, ...) is a `TypeError`:
there is no encoding of those that every client would agree on.

Hash (`hash64()`): the first 64 bits of MurmurHash3_x64_128 with the
given seed, read as an unsigned little-endian integer, which is
`mmh3.hash128(data, seed, x64arch=True, signed=False) & (2**64 - 1)`.
"""

from __future__ import annotations

from typing import Any

import mmh3

from .exceptions import ArgumentTypeError

__all__ = ["MASK64", "hash32", "hash64", "key_bytes"]

MASK64 = (1 << 64) - 1

KeyLike = str | bytes | bytearray | memoryview | int


def key_bytes(key: Any) -> bytes:
    """Return the documented byte encoding of *key* (see the module docstring).

    Raises:
        TypeError: *key* is not a str, bytes-like object or int.

    Thread-safety: pure function. Runtime complexity: O(len(key)).

    ```pycon
    >>> key_bytes("café"), key_bytes(-12)
    (b'caf\\xc3\\xa9', b'-12')

    ```
    """
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return str(int(key)).encode("ascii")
    raise ArgumentTypeError(
        f"key must be str, bytes or int to be hashed stably, got {type(key).__name__}: {key!r}"
    )


def hash64(key: Any, seed: int = 0) -> int:
    """Return the stable unsigned 64-bit hash of *key* (MurmurHash3_x64_128, low 64 bits).

    Args:
        key: a str, bytes-like object or int, encoded by `key_bytes()`.
        seed: the 32-bit MurmurHash3 seed (0 by default).

    Raises:
        TypeError: *key* has no stable encoding.

    Thread-safety: pure function. Runtime complexity: O(len(key)).
    """
    data = key if isinstance(key, (str, bytes)) else key_bytes(key)
    # mmh3 encodes a str as UTF-8 itself, which is the documented encoding.
    return int(mmh3.hash128(data, seed, True, False)) & MASK64


def hash32(key: Any, seed: int = 0) -> int:
    """Return the stable unsigned 32-bit hash of *key* (MurmurHash3_x86_32).

    Args:
        key: a str, bytes-like object or int, encoded by `key_bytes()`.
        seed: the 32-bit MurmurHash3 seed.

    Raises:
        TypeError: *key* has no stable encoding.

    Thread-safety: pure function. Runtime complexity: O(len(key)).
    """
    data = key if isinstance(key, (str, bytes)) else key_bytes(key)
    return int(mmh3.hash(data, seed, False))
