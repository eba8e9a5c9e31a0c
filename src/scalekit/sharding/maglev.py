"""Maglev lookup tables (Eisenbud et al., NSDI 2016, section 3.4).

Importable on its own; `scalekit.sharding.placement` re-exports it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

from .._hashing import hash64, key_bytes
from .._validation import bad_value, wrong_type
from ..exceptions import ConfigurationError
from ._nodes import Nodes, normalize_nodes

__all__ = ["DEFAULT_MAGLEV_SIZE", "MaglevTable", "maglev_permutation", "populate_maglev"]

DEFAULT_MAGLEV_SIZE = 65537
_MAGLEV_OFFSET_SEED = 1
_MAGLEV_SKIP_SEED = 2


class MaglevTable:
    """A Maglev lookup table (NSDI 2016, section 3.4) over weighted nodes.

    Node *i* has `offset = hash64(name, 1) mod M` and
    `skip = hash64(name, 2) mod (M - 1) + 1`; its preference list is
    `(offset + j * skip) mod M`. Nodes take turns claiming their next
    unclaimed preferred entry until all M are filled, in the order of their
    encoded names (`scalekit._hashing.key_bytes()`). Weights change how
    often a node gets a turn: in round r a node of weight w takes a turn
    while its turns so far times `max weight` <= `r * w`, so equal
    weights give the paper's round robin exactly. A key goes to
    `table[hash64(key) mod M]`.

    Args:
        nodes: names, `(name, weight)` pairs or a mapping.
        size: the table size M, a prime (65537 by default), >= the node count.

    Raises:
        ConfigurationError: see `normalize_nodes()`; *size* not prime
            or smaller than the number of nodes.

    Thread-safety: immutable after construction. Build cost O(M log M),
    memory O(M); lookup O(1).
    """

    def __init__(self, nodes: Nodes, *, size: int = DEFAULT_MAGLEV_SIZE) -> None:
        self.nodes = normalize_nodes(nodes)
        check_maglev_size("size", size)
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

    def successors(self, key: Any) -> Iterator[Hashable]:
        """Yield each node once, in table order from the entry *key* maps to.

        The first is `get()`'s answer; the rest are where the key goes
        when the ones before are skipped, so skipping a node moves only that
        node's keys. Runtime complexity: O(1) expected per node while few
        are skipped; O(size) to list every node.
        """
        table, size = self.table, self.size
        start = hash64(key) % size
        seen: set[Hashable] = set()
        total = len(self.nodes)
        for j in range(size):
            owner = table[(start + j) % size]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == total:
                    return


def maglev_permutation(name: Any, size: int) -> tuple[int, int]:
    """Return the `(offset, skip)` that define node *name*'s preference list."""
    return hash64(name, _MAGLEV_OFFSET_SEED) % size, hash64(name, _MAGLEV_SKIP_SEED) % (
        size - 1
    ) + 1


def populate_maglev(
    permutations: Sequence[tuple[int, int]], weights: Sequence[float], size: int
) -> list[int]:
    """Fill a table of *size* entries with node indexes (the paper's pseudocode 1).

    Args:
        permutations: `(offset, skip)` per node.
        weights: positive weight per node.

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


#: The largest table accepted: the table is held in memory, one entry per slot.
MAX_MAGLEV_SIZE = 1 << 26


def check_maglev_size(name: str, size: Any) -> int:
    """Return *size* if it is a prime in 2 .. `MAX_MAGLEV_SIZE`.

    Raises:
        ArgumentTypeError: *size* is not an `int`.
        ConfigurationError: *size* is not a prime in that range.
    """
    if type(size) is not int:
        raise wrong_type(name, size, "a prime number")
    if size > MAX_MAGLEV_SIZE:
        raise bad_value(name, size, f"a prime number up to {MAX_MAGLEV_SIZE}")
    if size < 2 or not _is_prime(size):
        raise bad_value(name, size, "a prime number")
    return size


def _is_prime(n: int) -> bool:
    if n < 4:
        return n >= 2
    if n % 2 == 0:
        return False
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))
