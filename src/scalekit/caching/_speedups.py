"""The caching classes that have a compiled twin, resolved once at import.

Each name here is the compiled class when the extension is built and
`SCALEKIT_PURE_PYTHON` is not set (see `scalekit._compiled`), else the
pure-Python reference class of the same name. Type checkers see the pure
class: the twin has the same constructor, attributes and methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._compiled import load

__all__ = ["FrequencySketch"]

if TYPE_CHECKING:
    from ._sketch import FrequencySketch
else:
    _csketch = load("scalekit.caching._csketch")
    if _csketch is None:
        from ._sketch import FrequencySketch
    else:
        FrequencySketch = _csketch.FrequencySketch


def _restore_sketch(
    entries: int,
    sample_size: int,
    size: int,
    rows: list[bytearray],
    door: bytearray | None,
    door_mask: int,
) -> FrequencySketch:
    """Rebuild a pickled compiled sketch as the implementation active here.

    Args:
        entries: the `entries` it was sized for.
        sample_size: events between two ageing steps.
        size: events counted since the last ageing step.
        rows: its four rows of counters.
        door: its doorkeeper bits, or `None` without a doorkeeper.
        door_mask: the doorkeeper's bit mask.

    Returns:
        A sketch with that state, of the class `FrequencySketch` is here.
    """
    sketch = FrequencySketch.__new__(FrequencySketch)
    sketch.entries = entries
    sketch.sample_size = sample_size
    sketch.size = size
    sketch._rows = rows
    sketch._mask = len(rows[0]) - 1
    sketch._door = door
    sketch._door_mask = door_mask
    return sketch
