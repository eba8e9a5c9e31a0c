"""The caching classes that have a compiled twin, resolved once at import.

`FrequencySketch` here is the compiled class when the extension is built
and `SCALEKIT_PURE_PYTHON` is not set (see `scalekit._compiled`), else the
pure-Python reference class of the same name. `linked`, `sieve`, `lfu`,
`s3fifo` and `tinylfu` turn a pure cache class into the class its module publishes:
the pure class with the compiled core first among its bases, or the pure
class itself without the extension; `compiled_hit` gives `cached` its
compiled hit path. Type checkers see the pure classes: a twin has the same
constructor, attributes and methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._compiled import load

__all__ = ["FrequencySketch", "compiled_hit", "lfu", "linked", "s3fifo", "sieve", "tinylfu"]

C = TypeVar("C", bound=type)

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


def linked(cls: C, *, reorder: bool) -> C:
    """The public class for the pure `cls` (`LRUCache` or `FIFOCache`): compiled if built.

    The compiled class is `cls` with the compiled core first in its bases,
    so the core's hot paths and hooks replace the pure ones and every other
    method is the pure class's. Without the extension (or with
    `SCALEKIT_PURE_PYTHON=1`) it is `cls` itself.

    Args:
        cls: the pure-Python class.
        reorder: whether a read moves the key to the newest end (LRU).

    Returns:
        The class to publish under `cls`'s name.
    """
    core = load("scalekit.caching._clinked")
    if core is None:
        return cls
    return _twin(core.LinkedCore, cls, {"_reorder": reorder})


def compiled_hit(cache: object, miss: Callable[[Any, Any, Any], Any]) -> Callable[..., Any] | None:
    """The compiled hit path of `cached` over `cache`, or `None` to keep the pure wrapper.

    Only for a compiled `LRUCache` or `FIFOCache` whose class keeps the
    core's `get` and reads (a subclass overriding `get`, `__getitem__` or
    `__missing__` gets the pure wrapper, which calls them), with `cached`'s
    default key, no lock and no `info=True` counters.

    Args:
        cache: the decorator's cache.
        miss: called as `miss(key, args, kwargs)` on a miss.

    Returns:
        The wrapper, or `None`.
    """
    core = load("scalekit.caching._clinked")
    if core is None or not isinstance(cache, core.LinkedCore):
        return None
    if type(cache).get is not core.LinkedCore.get or not getattr(cache, "_plain_reads", False):
        return None  # read through the class's own get, __getitem__ or __missing__
    return core.CachedHit(cache, miss)  # type: ignore[no-any-return]


def sieve(cls: C) -> C:
    """The public `SIEVECache` for the pure `cls`: compiled if built (as `linked`)."""
    return _core_twin("scalekit.caching._clinked", "SieveCore", cls)


def lfu(cls: C) -> C:
    """The public `LFUCache` for the pure `cls`: compiled if built (as `linked`)."""
    return _core_twin("scalekit.caching._cfreq", "LFUCore", cls)


def s3fifo(cls: C) -> C:
    """The public `S3FIFOCache` for the pure `cls`: compiled if built (as `linked`)."""
    return _core_twin("scalekit.caching._cfreq", "S3FIFOCore", cls)


def _core_twin(module: str, core: str, cls: C) -> C:
    """`cls` with the compiled *core* of *module* first among its bases, or `cls` itself.

    Args:
        module: the extension module holding the core.
        core: the core class's name in it.
        cls: the pure-Python class.

    Returns:
        The class to publish under `cls`'s name.
    """
    loaded = load(module)
    if loaded is None:
        return cls
    return _twin(getattr(loaded, core), cls, {})


def _twin(core: type, cls: C, extra: dict[str, Any]) -> C:
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        **extra,
    }
    return type(cls)(cls.__name__, (core, cls), namespace)


def tinylfu(cls: C) -> C:
    """The public `TinyLFUCache` for the pure `cls`: compiled if built (as `linked`).

    Args:
        cls: the pure-Python class.

    Returns:
        The class to publish under `cls`'s name.
    """
    core = load("scalekit.caching._ctinylfu")
    if core is None:
        return cls
    core.bind(cls)
    return _twin(core.TinyLFUCore, cls, {})
