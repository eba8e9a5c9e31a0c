"""Node lists for the placement structures: names, `(name, weight)` pairs or a mapping."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, TypeAlias

from .._hashing import key_bytes
from .._validation import iterable
from ..exceptions import ArgumentTypeError, ConfigurationError

__all__ = ["Nodes", "normalize_nodes"]

Nodes: TypeAlias = Iterable[Hashable] | Iterable[tuple[Hashable, float]] | Mapping[Hashable, float]


def normalize_nodes(nodes: Nodes, *, integer_weights: bool = False) -> list[tuple[Hashable, float]]:
    """Return *nodes* as a list of `(name, weight)` pairs, checked.

    Args:
        nodes: names (weight 1), `(name, weight)` pairs, or a mapping.
        integer_weights: require `int` weights (ketama's are integers).

    Raises:
        ConfigurationError: no nodes, a duplicate name or a weight that is
            not positive.
        ArgumentTypeError: *nodes* is not a collection, or a name cannot be
            hashed stably.

    Thread-safety: pure function. Runtime complexity: O(n).
    """
    if isinstance(nodes, (str, bytes)):
        raise ArgumentTypeError(f"nodes must be a collection of names, got the string {nodes!r}")
    items: Iterable[Any] = (
        nodes.items()
        if isinstance(nodes, Mapping)
        else iterable("nodes", nodes, "a collection of names, (name, weight) pairs or a mapping")
    )
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
