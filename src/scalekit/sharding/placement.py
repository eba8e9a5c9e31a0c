"""Placement functions: where a key goes, each bit-exact with its reference.

Needs nothing but `scalekit._hashing`, so a consistent-hash load
balancer can reuse `KetamaRing` and `MaglevTable` (defined in
`scalekit.sharding.ketama` and `scalekit.sharding.maglev`, re-exported
here) without the routers.

* `jump_hash()` - Lamping & Veach, "A Fast, Minimal Memory, Consistent
  Hash Algorithm" (2014), figure 1.
* `key_slot()` - the Redis Cluster specification, "Keys distribution
  model" and "Hash tags": CRC16-XMODEM of the key (or its hash tag) mod 16384.
* `cluster_slot_ranges()` - how `redis-cli --cluster create` splits the
  16384 slots among masters.
* `Rendezvous` - highest random weight (Thaler & Ravishankar, 1998),
  weighted with the logarithmic method (`-w / ln(u)`).
* `KetamaRing` - libmemcached's weighted ketama continuum (MD5, 160
  points per server, four points per digest), or uhashring's `ketama`
  mode with `compat="uhashring"`.
* `MaglevTable` - Eisenbud et al., "Maglev", NSDI 2016, section 3.4.

Nodes are given as names, as `(name, weight)` pairs or as a mapping of
name to weight. A name is a `str`, `bytes` or `int` and is hashed
through `scalekit._hashing.key_bytes()`.
"""

from __future__ import annotations

import math
import struct
from binascii import crc_hqx
from collections.abc import Hashable
from typing import Any

from .._hashing import MASK64, hash32, hash64, key_bytes
from ..exceptions import ArgumentTypeError, ConfigurationError
from ._nodes import Nodes, normalize_nodes
from .ketama import KETAMA_POINTS_PER_SERVER, KetamaRing, ketama_hash
from .maglev import DEFAULT_MAGLEV_SIZE, MaglevTable, maglev_permutation, populate_maglev

__all__ = [
    "DEFAULT_MAGLEV_SIZE",
    "KETAMA_POINTS_PER_SERVER",
    "SLOT_COUNT",
    "KetamaRing",
    "MaglevTable",
    "Nodes",
    "Rendezvous",
    "cluster_slot_ranges",
    "hash_tag",
    "jump_hash",
    "ketama_hash",
    "key_slot",
    "maglev_permutation",
    "normalize_nodes",
    "populate_maglev",
]

SLOT_COUNT = 16384
_JUMP_MULTIPLIER = 2862933555777941757
_MAX_BUCKETS = (1 << 31) - 1  # the reference returns an int32_t


def jump_hash(key: int, num_buckets: int) -> int:
    """Return the bucket in `range(num_buckets)` of a 64-bit *key* (jump consistent hash).

    The loop of the paper's figure 1, with C's wrapping 64-bit multiply and its
    `double` division, so results equal the reference code's.

    Args:
        key: an `int` in 0 .. 2**64 - 1 (hash other keys first, e.g. with
            `scalekit._hashing.hash64()`).
        num_buckets: an `int` in 1 .. 2**31 - 1.

    Raises:
        ConfigurationError: *key* or *num_buckets* out of range.
        ArgumentTypeError: *key* or *num_buckets* is not an `int`.

    Thread-safety: pure function. Runtime complexity: O(log num_buckets).

    ```pycon
    >>> jump_hash(42, 57), jump_hash(0xDEAD10CC, 666)
    (43, 361)

    ```
    """
    if type(key) is not int and (not isinstance(key, int) or isinstance(key, bool)):
        raise ArgumentTypeError(f"key must be an int in 0..2**64-1, got {type(key).__name__}")
    if key < 0 or key > MASK64:
        raise ConfigurationError(f"key must be an unsigned 64-bit int in 0..2**64-1, got {key!r}")
    if type(num_buckets) is not int:
        raise ArgumentTypeError(
            f"num_buckets must be an int in 1..2**31-1, got {num_buckets!r} "
            f"({type(num_buckets).__name__})"
        )
    if not 1 <= num_buckets <= _MAX_BUCKETS:
        raise ConfigurationError(f"num_buckets must be an int in 1..2**31-1, got {num_buckets!r}")
    b = -1
    j = 0
    while j < num_buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & MASK64
        j = int((b + 1) * (2147483648.0 / float((key >> 33) + 1)))
    return b


def hash_tag(key: str | bytes) -> bytes:
    """Return the part of *key* Redis Cluster hashes: the `{tag}` if any, else the key.

    The tag is what lies between the first `{` and the first `}` after it,
    if that is not empty; `str` keys are UTF-8 encoded first.

    Thread-safety: pure function. Runtime complexity: O(len(key)).
    """
    data = _slot_bytes(key)
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            return data[start + 1 : end]
    return data


def key_slot(key: str | bytes) -> int:
    """Return the Redis Cluster hash slot (0..16383) of *key*, as `CLUSTER KEYSLOT` does.

    CRC16-XMODEM (polynomial 0x1021, initial value 0) of `hash_tag()`
    mod 16384.

    Raises:
        TypeError: *key* is neither `str` nor bytes-like.

    Thread-safety: pure function. Runtime complexity: O(len(key)).

    ```pycon
    >>> key_slot("123456789"), key_slot("{user1000}.following") == key_slot("user1000")
    (12739, True)

    ```
    """
    data = key.encode("utf-8") if type(key) is str else _slot_bytes(key)
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) & (SLOT_COUNT - 1)


def _slot_bytes(key: Any) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise ArgumentTypeError(
        f"key must be a Redis key, str or bytes, got {type(key).__name__}: {key!r}"
    )


def _f32(value: float) -> float:
    """*value* rounded to the nearest C `float` (IEEE single precision)."""
    return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])


_FLOAT32 = struct.Struct("f")


def cluster_slot_ranges(num_nodes: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into *num_nodes* contiguous inclusive ranges, as redis-cli does.

    `redis-cli --cluster create` (`clusterManagerCommandCreate`) computes in
    single precision: `slots_per_node = 16384 / (float) n`, a `float cursor`
    that grows by `slots_per_node` per node, and node *j*'s last slot
    `lround(cursor + slots_per_node - 1)`, at least its first slot; the last
    node takes the rest. Each step here rounds to a `float` as C does, so the
    ranges equal redis-cli's for every count (the tests compare real plans).

    Args:
        num_nodes: the number of masters, 1..16384.

    Returns:
        The `(first, last)` slot range of each master, in order.

    Raises:
        ConfigurationError: *num_nodes* not an int in 1..16384.

    Thread-safety: pure function. Runtime complexity: O(num_nodes).

    ```pycon
    >>> cluster_slot_ranges(3)
    [(0, 5460), (5461, 10922), (10923, 16383)]

    ```
    """
    if type(num_nodes) is not int:
        raise ArgumentTypeError(
            f"num_nodes must be an int in 1..16384, got {num_nodes!r} ({type(num_nodes).__name__})"
        )
    if not 1 <= num_nodes <= SLOT_COUNT:
        raise ConfigurationError(f"num_nodes must be an int in 1..16384, got {num_nodes!r}")
    per_node = _f32(SLOT_COUNT / num_nodes)
    ranges = []
    first = 0
    cursor = 0.0
    for j in range(num_nodes):
        # float + float, then - 1 (int converted to float); lround of a positive value.
        last = math.floor(_f32(_f32(cursor + per_node) - 1.0) + 0.5)
        if last > SLOT_COUNT or j == num_nodes - 1:
            last = SLOT_COUNT - 1
        last = max(last, first)
        ranges.append((first, last))
        first = last + 1
        cursor = _f32(cursor + per_node)
    return ranges


class Rendezvous:
    """Highest random weight (rendezvous) placement over a fixed set of nodes.

    A key goes to the node with the highest score `w / -ln(u)`, where `u`
    in (0, 1) is the top 53 bits of `hash64(key, seed=hash32(name))`; with
    equal weights that is the node with the highest hash, as in Thaler &
    Ravishankar. Ties (which need equal 53-bit prefixes) go to the greater
    encoded name, so the result depends on the set of nodes, not their order.

    Args:
        nodes: names, `(name, weight)` pairs or a mapping name -> weight.

    Raises:
        ConfigurationError: see `normalize_nodes()`.

    Thread-safety: immutable after construction. Memory: O(n).
    """

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = normalize_nodes(nodes)
        self._seeded = [(hash32(name), float(w), key_bytes(name), name) for name, w in self.nodes]

    def scores(self, key: Any) -> dict[Hashable, float]:
        """Return each node's score for *key*. Runtime complexity: O(n)."""
        data = key_bytes(key)
        return {
            name: w / -math.log(((hash64(data, seed) >> 11) + 0.5) * 2.0**-53)
            for seed, w, _, name in self._seeded
        }

    def get(self, key: Any) -> Hashable:
        """Return the node *key* belongs to. Runtime complexity: O(n)."""
        data = key_bytes(key)
        best: tuple[float, bytes] | None = None
        winner: Hashable = None
        for seed, w, encoded, name in self._seeded:
            u = ((hash64(data, seed) >> 11) + 0.5) * 2.0**-53
            score = (w / -math.log(u), encoded)
            if best is None or score > best:
                best, winner = score, name
        return winner
