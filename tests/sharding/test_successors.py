"""KetamaRing.successors and MaglevTable.successors: the fallback order of a key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.sharding import KetamaRing, MaglevTable

NAMES = [f"node-{i}" for i in range(9)]


@pytest.mark.parametrize(
    "table",
    [KetamaRing(NAMES), KetamaRing(NAMES, compat="uhashring"), MaglevTable(NAMES, size=1009)],
    ids=["ketama", "ketama-uhashring", "maglev"],
)
@settings(max_examples=200, deadline=None)
@given(key=st.text(max_size=20) | st.integers(min_value=0, max_value=2**64 - 1))
def test_successors_start_at_get_and_list_every_node_once(
    table: KetamaRing | MaglevTable, key: object
) -> None:
    order = list(table.successors(key))
    assert order[0] == table.get(key)
    assert sorted(order) == sorted(NAMES)  # type: ignore[type-var]


@settings(max_examples=100, deadline=None)
@given(key=st.text(max_size=20), skip=st.sampled_from(NAMES))
def test_skipping_a_node_in_the_ring_is_where_its_removal_sends_the_key(
    key: str, skip: str
) -> None:
    """On the ring, the next distinct node is exactly where the key goes without *skip*."""
    ring = KetamaRing(NAMES, compat="uhashring")
    without = KetamaRing([n for n in NAMES if n != skip], compat="uhashring")
    fallback = next(n for n in ring.successors(key) if n != skip)
    assert fallback == without.get(key)
