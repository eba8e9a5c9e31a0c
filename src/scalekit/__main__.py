"""`python -m scalekit`: print the version, the active implementation and the backends."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from ._compiled import implementation

#: (label, driver module, install hint) of every optional backend scalekit can use.
_BACKENDS = (
    ("redis", "redis", "pip install 'scalekit-primitives[redis]'"),
    ("zookeeper", "kazoo", "pip install 'scalekit-primitives[zookeeper]'"),
    ("msgpack", "msgpack", "pip install 'scalekit-primitives[msgpack]'"),
    ("prometheus", "prometheus_client", "pip install 'scalekit-primitives[prometheus]'"),
    ("opentelemetry", "opentelemetry.metrics", "pip install 'scalekit-primitives[opentelemetry]'"),
    ("psycopg", "psycopg", "pip install 'psycopg[binary]' for SQLFencedStore on PostgreSQL"),
)


def _distribution_version(module: str) -> str:
    from importlib import metadata

    name = {"opentelemetry.metrics": "opentelemetry-api"}.get(module, module)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown version"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; `--help` explains it, any other argument is a usage error (exit 2)."""
    argparse.ArgumentParser(
        prog="python -m scalekit",
        description="Print scalekit's version, whether the compiled hot paths are active, "
        "and which optional backends (drivers) this environment can import, with the "
        "install command of each missing one.",
    ).parse_args(argv)
    print(f"scalekit {__version__} (Python {sys.version.split()[0]})")
    print(f"  {'hot paths':<14} {implementation()}")
    for label, module, hint in _BACKENDS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            print(f"  {label:<14} not importable ({module} missing: {hint})")
        else:
            version = getattr(mod, "__version__", None) or _distribution_version(module)
            print(f"  {label:<14} available ({module} {version})")
    return 0


def _run() -> int:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`python -m scalekit | head -1`): stop quietly,
        # with stdout pointed at devnull so the interpreter's own flush at exit
        # does not fail a second time.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a piped tool cut short
    return code


if __name__ == "__main__":
    raise SystemExit(_run())
