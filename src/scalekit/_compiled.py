"""Which implementation of scalekit's hot paths runs: compiled twins or pure Python.

A few hot paths have a compiled twin (a Cython extension module built when
scalekit is installed from source with a C compiler; see `hatch_build.py`).
The pure-Python modules are the reference and the fallback: a module that
uses a twin asks [load][scalekit._compiled.load] for it at import and keeps
the pure class when it gets `None`. Set `SCALEKIT_PURE_PYTHON=1` in the
environment before importing scalekit to run the pure code even where the
extension is built. `python -m scalekit` prints
[implementation][scalekit._compiled.implementation].
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

from .exceptions import ConfigurationError

__all__ = ["COMPILED_MODULES", "PURE_PYTHON_ENV", "implementation", "load", "pure_python_requested"]

PURE_PYTHON_ENV = "SCALEKIT_PURE_PYTHON"

# Every compiled twin and the pure code it stands in for.
COMPILED_MODULES = {
    "scalekit.caching._csketch": "TinyLFU's frequency sketch",
    "scalekit.caching._clinked": "the LRU, FIFO and SIEVE caches and cached's hit path",
    "scalekit.caching._ctinylfu": "TinyLFUCache's lookups, writes and admission",
    "scalekit.caching._cfreq": "the LFU and S3-FIFO caches",
}

_loaded: dict[str, ModuleType | None] = {}


def pure_python_requested() -> bool:
    """Whether `SCALEKIT_PURE_PYTHON` asks for the pure-Python implementation (`1`, `true`)."""
    return os.environ.get(PURE_PYTHON_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load(module: str) -> ModuleType | None:
    """Import the compiled twin `module`, or return `None` to keep the pure code.

    `None` when `SCALEKIT_PURE_PYTHON` is set or the extension was not built
    (installed without a C compiler, or from a pure wheel), silently: that
    is a supported configuration. An extension that is present but fails to
    import (built for another version of its source, a missing symbol)
    also gives `None`, with a `RuntimeWarning` naming the error.

    Args:
        module: a key of `COMPILED_MODULES`.

    Returns:
        The imported module, or `None`.

    Raises:
        ConfigurationError: if `module` is not a key of `COMPILED_MODULES`.
    """
    if module not in COMPILED_MODULES:
        raise ConfigurationError(
            f"module must be one of {sorted(COMPILED_MODULES)}, got {module!r}"
        )
    if module not in _loaded:
        found: ModuleType | None = None
        if not pure_python_requested():
            try:
                found = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
            except ImportError as exc:
                warnings.warn(
                    f"scalekit: the compiled {module} did not import ({exc}); "
                    "using the pure-Python implementation",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _loaded[module] = found
    return _loaded[module]


def implementation() -> str:
    """One line saying which implementation is active, for `python -m scalekit`.

    Example:
        ```pycon
        >>> implementation().startswith(("compiled", "pure Python"))
        True

        ```
    """
    if pure_python_requested():
        return f"pure Python ({PURE_PYTHON_ENV} is set)"
    active = [name for name in COMPILED_MODULES if load(name) is not None]
    if not active:
        return "pure Python (the compiled extension is not built)"
    missing = [name for name in COMPILED_MODULES if name not in active]
    text = "compiled extension for " + ", ".join(COMPILED_MODULES[name] for name in active)
    if missing:
        text += "; not built: " + ", ".join(COMPILED_MODULES[name] for name in missing)
    return text + "; everything else pure Python"
