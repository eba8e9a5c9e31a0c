"""`python -m scalekit`: print the version, the active implementation and the backends."""

from __future__ import annotations

import importlib
import sys

from . import __version__
from ._compiled import implementation

_BACKENDS = (
    ("redis", "redis", "pip install 'scalekit-primitives[redis]'"),
    ("zookeeper", "kazoo", "pip install 'scalekit-primitives[zookeeper]'"),
)


def main() -> int:
    print(f"scalekit {__version__} (Python {sys.version.split()[0]})")
    print(f"  {'hot paths':<10} {implementation()}")
    for label, module, hint in _BACKENDS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            print(f"  {label:<10} not importable ({module} missing: {hint})")
        else:
            version = getattr(mod, "__version__", "unknown version")
            print(f"  {label:<10} available ({module} {version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
