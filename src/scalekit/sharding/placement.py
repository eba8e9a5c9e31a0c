"""Placement functions: where a key goes, each bit-exact with its reference.

Importable on its own (it needs only :mod:`scalekit._hashing`), so a
consistent-hash load balancer can reuse :class:`KetamaRing` and
:class:`MaglevTable` without the routers.

* :func:`jump_hash` - Lamping & Veach, "A Fast, Minimal Memory, Consistent
  Hash Algorithm" (2014), figure 1.
* :func:`key_slot` - the Redis Cluster specification, "Keys distribution
  model" and "Hash tags": CRC16-XMODEM of the key (or its hash tag) mod 16384.
* :func:`cluster_slot_ranges` - how ``redis-cli --cluster create`` splits the
  16384 slots among masters.
* :class:`Rendezvous` - highest random weight (Thaler & Ravishankar, 1998),
  weighted with the logarithmic method (``-w / ln(u)``).
* :class:`KetamaRing` - libmemcached's weighted ketama continuum (MD5, 160
  points per server, four points per digest); uhashring's ``ketama`` mode
  builds the same continuum.
* :class:`MaglevTable` - Eisenbud et al., "Maglev", NSDI 2016, section 3.4.

Nodes are given as names, as ``(name, weight)`` pairs or as a mapping of
name to weight. A name is a ``str``, ``bytes`` or ``int`` and is hashed
through :func:`scalekit._hashing.key_bytes`.
"""

from __future__ import annotations

import math
from binascii import crc_hqx
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable, Mapping, Sequence
from hashlib import md5
from struct import Struct
from typing import Any, TypeAlias

from .._hashing import MASK64, hash32, hash64, key_bytes
from ..exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MAGLEV_SIZE",
    "KETAMA_POINTS_PER_SERVER",
    "SLOT_COUNT",
    "KetamaRing",
    "MaglevTable",
    "Rendezvous",
    "cluster_slot_ranges",
    "hash_tag",
    "jump_hash",
    "ketama_hash",
    "key_slot",
    "normalize_nodes",
]

SLOT_COUNT = 16384
KETAMA_POINTS_PER_SERVER = 160
DEFAULT_MAGLEV_SIZE = 65537
_JUMP_MULTIPLIER = 2862933555777941757
_MAX_BUCKETS = (1 << 31) - 1  # the reference returns an int32_t
_MAGLEV_OFFSET_SEED = 1
_MAGLEV_SKIP_SEED = 2
_KETAMA_INDEX_BITS = 12  # a 4096-entry index into the continuum, by top hash bits
_unpack_u32le = Struct("<I").unpack_from
_pack_f32_struct = Struct("<f")
_unpack_f32 = _pack_f32_struct.unpack

try:  # CPython's built-in MD5 is about twice as fast as OpenSSL's on short keys.
    from _md5 import md5 as _fast_md5  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - builds without the module
    _fast_md5 = md5

Nodes: TypeAlias = Iterable[Hashable] | Iterable[tuple[Hashable, float]] | Mapping[Hashable, float]


def jump_hash(key: int, num_buckets: int) -> int:
    """Return the bucket in ``range(num_buckets)`` of a 64-bit *key* (jump consistent hash).

    The loop of the paper's figure 1, with C's wrapping 64-bit multiply and its
    ``double`` division, so results equal the reference code's.

    :param key: an ``int`` in 0 .. 2**64 - 1 (hash other keys first, e.g. with
        :func:`scalekit._hashing.hash64`).
    :param num_buckets: an ``int`` in 1 .. 2**31 - 1.
    :raises ConfigurationError: *num_buckets* out of range.
    :raises ValueError: *key* out of range. :raises TypeError: not an ``int``.

    Thread-safety: pure function. Runtime complexity: O(log num_buckets).

    >>> jump_hash(42, 57), jump_hash(0xDEAD10CC, 666)
    (43, 361)
    """
    if type(key) is not int and (not isinstance(key, int) or isinstance(key, bool)):
        raise TypeError(f"key must be an int in 0..2**64-1, got {type(key).__name__}")
    if key < 0 or key > MASK64:
        raise ValueError(f"key must be an unsigned 64-bit int in 0..2**64-1, got {key!r}")
    if type(num_buckets) is not int or not 1 <= num_buckets <= _MAX_BUCKETS:
        raise ConfigurationError(f"num_buckets must be an int in 1..2**31-1, got {num_buckets!r}")
    b = -1
    j = 0
    while j < num_buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & MASK64
        j = int((b + 1) * (2147483648.0 / float((key >> 33) + 1)))
    return b


def hash_tag(key: str | bytes) -> bytes:
    """Return the part of *key* Redis Cluster hashes: the ``{tag}`` if any, else the key.

    The tag is what lies between the first ``{`` and the first ``}`` after it,
    if that is not empty; ``str`` keys are UTF-8 encoded first.

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
    """Return the Redis Cluster hash slot (0..16383) of *key*, as ``CLUSTER KEYSLOT`` does.

    CRC16-XMODEM (polynomial 0x1021, initial value 0) of :func:`hash_tag`
    mod 16384.

    :raises TypeError: *key* is neither ``str`` nor bytes-like.

    Thread-safety: pure function. Runtime complexity: O(len(key)).

    >>> key_slot("123456789"), key_slot("{user1000}.following") == key_slot("user1000")
    (12739, True)
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
    raise TypeError(f"a Redis key must be str or bytes, got {type(key).__name__}: {key!r}")


def cluster_slot_ranges(num_nodes: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into *num_nodes* contiguous inclusive ranges, as redis-cli does.

    ``redis-cli --cluster create`` gives node *j* the slots from the end of
    node *j-1* up to ``lround(j * 16384 / n + 16384 / n - 1)``; the last node
    takes the rest.

    :raises ConfigurationError: *num_nodes* not in 1..16384.

    Thread-safety: pure function. Runtime complexity: O(num_nodes).

    >>> cluster_slot_ranges(3)
    [(0, 5460), (5461, 10922), (10923, 16383)]
    """
    if type(num_nodes) is not int or not 1 <= num_nodes <= SLOT_COUNT:
        raise ConfigurationError(f"num_nodes must be an int in 1..16384, got {num_nodes!r}")
    per_node = SLOT_COUNT / num_nodes
    ranges = []
    first = 0
    cursor = 0.0
    for j in range(num_nodes):
        last = math.floor(cursor + per_node - 1 + 0.5)  # C lround() of a positive value
        if last > SLOT_COUNT or j == num_nodes - 1:
            last = SLOT_COUNT - 1
        last = max(last, first)
        ranges.append((first, last))
        first = last + 1
        cursor += per_node
    return ranges


def normalize_nodes(nodes: Nodes, *, integer_weights: bool = False) -> list[tuple[Hashable, float]]:
    """Return *nodes* as a list of ``(name, weight)`` pairs, checked.

    :param nodes: names (weight 1), ``(name, weight)`` pairs, or a mapping.
    :param integer_weights: require ``int`` weights (ketama's are integers).
    :raises ConfigurationError: no nodes, a duplicate name or a weight that is
        not positive. :raises TypeError: a name that cannot be hashed stably.

    Thread-safety: pure function. Runtime complexity: O(n).
    """
    items: Iterable[Any] = nodes.items() if isinstance(nodes, Mapping) else nodes
    if isinstance(nodes, (str, bytes)):
        raise ConfigurationError(f"nodes must be a collection of names, got the string {nodes!r}")
    pairs: list[tuple[Hashable, float]] = []
    seen: set[bytes] = set()
    for item in items:
        name, weight = item if isinstance(item, tuple) and len(item) == 2 else (item, 1)
        encoded = key_bytes(name)
        if encoded in seen:
            raise ConfigurationError(f"nodes must be distinct, got {name!r} twice")
        seen.add(encoded)
        ok = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if integer_weights:
            ok = ok and isinstance(weight, int)
        if not ok or not math.isfinite(weight) or weight <= 0:
            kind = "a positive integer" if integer_weights else "a positive finite number"
            raise ConfigurationError(f"weight must be {kind}, got {weight!r} for node {name!r}")
        pairs.append((name, weight))
    if not pairs:
        raise ConfigurationError("nodes must not be empty: give at least one node")
    return pairs


class Rendezvous:
    """Highest random weight (rendezvous) placement over a fixed set of nodes.

    A key goes to the node with the highest score ``w / -ln(u)``, where ``u``
    in (0, 1) is the top 53 bits of ``hash64(key, seed=hash32(name))``; with
    equal weights that is the node with the highest hash, as in Thaler &
    Ravishankar. Ties (which need equal 53-bit prefixes) go to the greater
    encoded name, so the result depends on the set of nodes, not their order.

    :param nodes: names, ``(name, weight)`` pairs or a mapping name -> weight.
    :raises ConfigurationError: see :func:`normalize_nodes`.

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


def _libmemcached_digests(weight: int, total: int, count: int, points_per_server: int) -> int:
    """libmemcached's ``floor((float)(pct * points / 4 * (float)n + 1e-10))``, in float32."""
    pct = _f32(_f32(weight) / _f32(total))
    x = _f32(_f32(_f32(pct * points_per_server) / 4.0) * _f32(count))
    return math.floor(_f32(x + 0.0000000001))


def _f32(x: float) -> float:
    # Rounding each double result to single precision gives exactly the float32
    # result of one +, *, / on float32 operands (53 >= 2 * 24 + 2 bits).
    return float(_unpack_f32(_pack_f32_struct.pack(x))[0])


def ketama_hash(data: bytes, alignment: int = 0) -> int:
    """Return ketama's 32-bit hash: bytes ``4a..4a+3`` of MD5(*data*) read little-endian."""
    digest = md5(data).digest()
    return int.from_bytes(digest[4 * alignment : 4 * alignment + 4], "little")


class KetamaRing:
    """libmemcached's weighted ketama continuum, or uhashring's ``ketama`` mode.

    Node *i* of *n* with weight ``w_i`` out of ``W`` gets ``d_i`` MD5 digests
    of ``"<name>-<k>"`` for k = 0 .. d_i - 1; each digest gives four points
    (its four little-endian 32-bit words). A key maps to the owner of the
    first point >= ``ketama_hash(key)``, wrapping to the first point
    (libmemcached's binary search). If two nodes produce the same point
    (about one ring in 3000 at 10 nodes), the greater encoded name owns it.

    ``d_i`` is ``floor(w_i / W * 160 / 4 * n)``, and the two references round
    it differently:

    * ``compat="libmemcached"`` (default) computes it in single-precision
      float plus 1e-10, as libmemcached does (``hosts.cc``), so e.g. 25 equal
      nodes get 39 digests each, not 40. Checked against libmemcached 1.1.4.
    * ``compat="uhashring"`` computes it exactly in integers, as uhashring
      does; uhashring also takes the first point strictly greater than the
      key's hash, so a key whose hash is a point goes one point further.

    The two agree whenever the roundings agree (any equal-weight ring of up
    to 24 nodes, for instance).

    :param nodes: names, ``(name, weight)`` pairs with integer weights, or a mapping.
    :param points_per_server: points per node at equal weights (160).
    :param compat: ``"libmemcached"`` or ``"uhashring"``.
    :raises ConfigurationError: see :func:`normalize_nodes`; *points_per_server*
        not a positive multiple of 4; an unknown *compat*.

    Thread-safety: immutable after construction. Memory: O(160 n).
    """

    def __init__(
        self,
        nodes: Nodes,
        *,
        points_per_server: int = KETAMA_POINTS_PER_SERVER,
        compat: str = "libmemcached",
    ) -> None:
        if type(points_per_server) is not int or points_per_server < 4 or points_per_server % 4:
            raise ConfigurationError(
                f"points_per_server must be a positive multiple of 4, got {points_per_server!r}"
            )
        if compat not in ("libmemcached", "uhashring"):
            raise ConfigurationError(
                f"compat must be 'libmemcached' or 'uhashring', got {compat!r}"
            )
        self.compat = compat
        self.nodes = normalize_nodes(nodes, integer_weights=True)
        total = sum(int(w) for _, w in self.nodes)
        count = len(self.nodes)
        owner: dict[int, Hashable] = {}
        for name, weight in self.nodes:
            if compat == "uhashring":
                digests = (points_per_server // 4) * count * int(weight) // total
            else:
                digests = _libmemcached_digests(int(weight), total, count, points_per_server)
            prefix = key_bytes(name) + b"-"
            for k in range(digests):
                digest = md5(prefix + str(k).encode("ascii")).digest()
                for a in range(4):
                    point = int.from_bytes(digest[4 * a : 4 * a + 4], "little")
                    # A point two nodes share goes to the greater encoded name, so
                    # the ring depends on the set of nodes, not their order.
                    if point not in owner or key_bytes(owner[point]) < prefix[:-1]:
                        owner[point] = name
        if not owner:
            raise ConfigurationError("the ketama ring has no points: every weight rounds to 0")
        self._points = sorted(owner)
        self._owners = [owner[p] for p in self._points]
        self._owners_wrapped = [*self._owners, self._owners[0]]
        shift = 32 - _KETAMA_INDEX_BITS
        # _index[b] is the first point >= b << shift: a short cut into the bisection.
        self._index = [
            bisect_left(self._points, b << shift) for b in range(1 << _KETAMA_INDEX_BITS)
        ]
        self.get = self._make_get(shift)  # type: ignore[method-assign]

    @property
    def points(self) -> list[tuple[int, Hashable]]:
        """The continuum as sorted ``(point, node)`` pairs."""
        return list(zip(self._points, self._owners, strict=True))

    def get_hash(self, h: int) -> Hashable:
        """Return the owner of the 32-bit hash *h*. Runtime complexity: O(log points)."""
        if self.compat == "uhashring":
            return self._owners_wrapped[bisect_right(self._points, h) % len(self._points)]
        return self._owners_wrapped[bisect_left(self._points, h)]

    def _uhashring_get(self, key: Any) -> Hashable:
        data = key.encode("utf-8") if type(key) is str else key_bytes(key)
        return self.get_hash(_unpack_u32le(_fast_md5(data).digest())[0])

    def get(self, key: Any) -> Hashable:
        """Return the node *key* maps to: the first point >= MD5 hash of its bytes.

        Runtime complexity: O(log points) worst case, O(1) expected.
        """
        data = key.encode("utf-8") if type(key) is str else key_bytes(key)
        return self.get_hash(_unpack_u32le(md5(data).digest())[0])

    def _make_get(self, shift: int) -> Any:
        points, owners, index = self._points, self._owners_wrapped, self._index
        last = len(points)
        if self.compat == "uhashring":
            return self._uhashring_get

        def get(key: Any) -> Hashable:
            data = key.encode("utf-8") if type(key) is str else key_bytes(key)
            h = _unpack_u32le(_fast_md5(data).digest())[0]
            i: int = index[h >> shift]
            if i < last and points[i] < h:
                i = bisect_left(points, h, i)
            return owners[i]

        get.__doc__ = KetamaRing.get.__doc__
        return get


class MaglevTable:
    """A Maglev lookup table (NSDI 2016, section 3.4) over weighted nodes.

    Node *i* has ``offset = hash64(name, 1) mod M`` and
    ``skip = hash64(name, 2) mod (M - 1) + 1``; its preference list is
    ``(offset + j * skip) mod M``. Nodes take turns claiming their next
    unclaimed preferred entry until all M are filled, in the order of their
    encoded names (:func:`scalekit._hashing.key_bytes`). Weights change how
    often a node gets a turn: in round r a node of weight w takes a turn
    while its turns so far times ``max weight`` <= ``r * w``, so equal
    weights give the paper's round robin exactly. A key goes to
    ``table[hash64(key) mod M]``.

    :param nodes: names, ``(name, weight)`` pairs or a mapping.
    :param size: the table size M, a prime (65537 by default), >= the node count.
    :raises ConfigurationError: see :func:`normalize_nodes`; *size* not prime
        or smaller than the number of nodes.

    Thread-safety: immutable after construction. Build cost O(M log M),
    memory O(M); lookup O(1).
    """

    def __init__(self, nodes: Nodes, *, size: int = DEFAULT_MAGLEV_SIZE) -> None:
        self.nodes = normalize_nodes(nodes)
        if type(size) is not int or size < 2 or not _is_prime(size):
            raise ConfigurationError(f"size must be a prime number, got {size!r}")
        if size < len(self.nodes):
            raise ConfigurationError(
                f"size must be at least the number of nodes ({len(self.nodes)}), got {size}"
            )
        self.size = size
        # Turns go in the order of the encoded names, so the table depends on
        # the set of nodes, not on the order they were listed in.
        ordered = sorted(self.nodes, key=lambda node: key_bytes(node[0]))
        names = [name for name, _ in ordered]
        indexes = populate_maglev(
            [maglev_permutation(name, size) for name in names], [w for _, w in ordered], size
        )
        self.table: tuple[Hashable, ...] = tuple(names[i] for i in indexes)

    def get_hash(self, h: int) -> Hashable:
        """Return the node owning the 64-bit hash *h*. Runtime complexity: O(1)."""
        return self.table[h % self.size]

    def get(self, key: Any) -> Hashable:
        """Return the node *key* maps to. Runtime complexity: O(len(key))."""
        return self.table[hash64(key) % self.size]


def maglev_permutation(name: Any, size: int) -> tuple[int, int]:
    """Return the ``(offset, skip)`` that define node *name*'s preference list."""
    return hash64(name, _MAGLEV_OFFSET_SEED) % size, hash64(name, _MAGLEV_SKIP_SEED) % (
        size - 1
    ) + 1


def populate_maglev(
    permutations: Sequence[tuple[int, int]], weights: Sequence[float], size: int
) -> list[int]:
    """Fill a table of *size* entries with node indexes (the paper's pseudocode 1).

    :param permutations: ``(offset, skip)`` per node.
    :param weights: positive weight per node.

    Runtime complexity: O(M log M) expected for equal weights.
    """
    entry = [-1] * size
    nexts = [0] * len(permutations)
    turns = [0] * len(permutations)
    top = max(weights)
    filled = 0
    rnd = 0
    while True:
        rnd += 1
        for i, (offset, skip) in enumerate(permutations):
            if turns[i] * top > rnd * weights[i]:
                continue
            turns[i] += 1
            c = (offset + nexts[i] * skip) % size
            while entry[c] >= 0:
                nexts[i] += 1
                c = (offset + nexts[i] * skip) % size
            entry[c] = i
            nexts[i] += 1
            filled += 1
            if filled == size:
                return entry


def _is_prime(n: int) -> bool:
    if n < 4:
        return n >= 2
    if n % 2 == 0:
        return False
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))
