"""The ketama continuum of libmemcached (and of uhashring's `ketama` mode).

Importable on its own; `scalekit.sharding.placement` re-exports it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterator
from hashlib import md5
from struct import Struct
from typing import Any, Literal, cast

from .._hashing import key_bytes
from .._validation import bad_value, wrong_type
from ..exceptions import ConfigurationError
from ._nodes import Nodes, normalize_nodes

__all__ = ["KETAMA_POINTS_PER_SERVER", "KetamaCompat", "KetamaRing", "ketama_hash"]

#: Whose point counts a ring reproduces.
KetamaCompat = Literal["libmemcached", "uhashring"]

KETAMA_POINTS_PER_SERVER = 160
# An index into the continuum by the top bits of a hash: 4,096 entries, or about
# one per four points on large rings (at most 65,536), so a lookup bisects a handful.
_KETAMA_INDEX_MIN_BITS, _KETAMA_INDEX_MAX_BITS = 12, 16
_unpack_u32le = Struct("<I").unpack_from
_pack_f32_struct = Struct("<f")
_unpack_f32 = _pack_f32_struct.unpack

try:  # CPython's built-in MD5 is about twice as fast as OpenSSL's on short keys.
    from _md5 import md5 as _fast_md5  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - builds without the module
    _fast_md5 = md5


#: The most ring points one node may own (each point is a ring entry in memory).
_MAX_POINTS_PER_SERVER = 1 << 16


def _libmemcached_digests(weight: int, total: int, count: int, points_per_server: int) -> int:
    """libmemcached's `floor((float)(pct * points / 4 * (float)n + 1e-10))`, in float32."""
    pct = _f32(_f32(weight) / _f32(total))
    x = _f32(_f32(_f32(pct * points_per_server) / 4.0) * _f32(count))
    return math.floor(_f32(x + 0.0000000001))


def _f32(x: float) -> float:
    # Rounding each double result to single precision gives exactly the float32
    # result of one +, *, / on float32 operands (53 >= 2 * 24 + 2 bits).
    return float(_unpack_f32(_pack_f32_struct.pack(x))[0])


def ketama_hash(data: bytes, alignment: int = 0) -> int:
    """Return ketama's 32-bit hash: bytes `4a..4a+3` of MD5(*data*) read little-endian."""
    digest = md5(data).digest()
    return int.from_bytes(digest[4 * alignment : 4 * alignment + 4], "little")


def check_points_per_server(name: str, value: Any) -> int:
    """Return *value* if it is a positive multiple of 4 up to the ring's limit.

    Raises:
        ArgumentTypeError: *value* is not an `int`.
        ConfigurationError: it is out of that range or not a multiple of 4.
    """
    expected = f"a positive multiple of 4 up to {_MAX_POINTS_PER_SERVER}"
    if type(value) is not int:
        raise wrong_type(name, value, expected)
    if not 4 <= value <= _MAX_POINTS_PER_SERVER or value % 4:
        raise bad_value(name, value, expected)
    return value


def check_compat(name: str, value: Any) -> KetamaCompat:
    """Return *value* if it is `"libmemcached"` or `"uhashring"`.

    Raises:
        ArgumentTypeError: *value* is not a `str`.
        ConfigurationError: it is another string.
    """
    if not isinstance(value, str):
        raise wrong_type(name, value, "'libmemcached' or 'uhashring'")
    if value in ("libmemcached", "uhashring"):
        return cast(KetamaCompat, value)
    raise ConfigurationError(f"{name} must be 'libmemcached' or 'uhashring', got {value!r}")


class KetamaRing:
    """libmemcached's weighted ketama continuum, or uhashring's `ketama` mode.

    Node *i* of *n* with weight `w_i` out of `W` gets `d_i` MD5 digests
    of `"<name>-<k>"` for k = 0 .. d_i - 1; each digest gives four points
    (its four little-endian 32-bit words). A key maps to the owner of the
    first point >= `ketama_hash(key)`, wrapping to the first point
    (libmemcached's binary search). If two nodes produce the same point
    (about one ring in 3000 at 10 nodes), the greater encoded name owns it.

    `d_i` is `floor(w_i / W * 160 / 4 * n)`, and the two references round
    it differently:

    * `compat="libmemcached"` (default) computes it in single-precision
      float plus 1e-10, as libmemcached does (`hosts.cc`), so e.g. 25 equal
      nodes get 39 digests each, not 40. Checked against libmemcached 1.1.4.
    * `compat="uhashring"` computes it exactly in integers, as uhashring
      does; uhashring also takes the first point strictly greater than the
      key's hash, so a key whose hash is a point goes one point further.

    The two agree whenever the roundings agree (any equal-weight ring of up
    to 24 nodes, for instance).

    Args:
        nodes: names, `(name, weight)` pairs with integer weights, or a mapping.
        points_per_server: points per node at equal weights (160).
        compat: `"libmemcached"` or `"uhashring"`.

    Raises:
        ConfigurationError: see `normalize_nodes()`; *points_per_server*
            not a positive multiple of 4; an unknown *compat*.

    Thread-safety: immutable after construction. Memory: O(160 n).
    """

    def __init__(
        self,
        nodes: Nodes,
        *,
        points_per_server: int = KETAMA_POINTS_PER_SERVER,
        compat: KetamaCompat = "libmemcached",
    ) -> None:
        check_points_per_server("points_per_server", points_per_server)
        self.compat = check_compat("compat", compat)
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
        bits = min(
            _KETAMA_INDEX_MAX_BITS, max(_KETAMA_INDEX_MIN_BITS, len(self._points).bit_length() - 2)
        )
        shift = 32 - bits
        # _index[b] is the first point >= b << shift: a short cut into the bisection.
        self._index = [bisect_left(self._points, b << shift) for b in range(1 << bits)]
        self.get = self._make_get(shift)  # type: ignore[method-assign]

    @property
    def points(self) -> list[tuple[int, Hashable]]:
        """The continuum as sorted `(point, node)` pairs."""
        return list(zip(self._points, self._owners, strict=True))

    def get_hash(self, h: int) -> Hashable:
        """Return the owner of the 32-bit hash *h*. Runtime complexity: O(log points)."""
        if self.compat == "uhashring":
            return self._owners_wrapped[bisect_right(self._points, h) % len(self._points)]
        return self._owners_wrapped[bisect_left(self._points, h)]

    def successors(self, key: Any) -> Iterator[Hashable]:
        """Yield each node once, in ring order from the one *key* maps to.

        The first is `get()`'s answer; the rest are where the key goes
        when the ones before are skipped (down, ejected, or full under
        bounded loads), so skipping a node moves only that node's keys.

        Runtime complexity: O(log points) to start, O(1) expected per node.
        """
        data = key.encode("utf-8") if type(key) is str else key_bytes(key)
        h = _unpack_u32le(md5(data).digest())[0]
        points, owners = self._points, self._owners
        bisect = bisect_right if self.compat == "uhashring" else bisect_left
        start = bisect(points, h)
        seen: set[Hashable] = set()
        total, n = len(self.nodes), len(points)
        for j in range(n):
            owner = owners[(start + j) % n]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == total:
                    return

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
