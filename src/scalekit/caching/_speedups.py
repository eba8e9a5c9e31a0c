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
