"""Lazy exports of backends whose driver is optional (redis-py, kazoo).

A package lists its backend classes in a mapping of name to module; the
module is imported the first time the name is looked up, so importing the
package needs only the core dependencies. A missing driver becomes a
`MissingDependencyError` that names the extra to install, or, when the
name is looked up as an attribute rather than by `from package import name`,
a `MissingBackendError` (an `AttributeError`, so `hasattr`, `inspect` and
`help()` skip the name) with the same message.
"""

from __future__ import annotations

import dis
import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from .exceptions import MissingBackendError, MissingDependencyError

__all__ = [
    "DISTRIBUTION",
    "EXTRAS",
    "lazy_exports",
    "missing",
    "missing_driver",
    "public_dir",
    "require",
]

DISTRIBUTION = "scalekit-primitives"
# Top-level driver module -> (what it is, the extra that installs it).
EXTRAS = {
    "redis": ("redis-py", "redis"),
    "kazoo": ("kazoo", "zookeeper"),
    "msgpack": ("msgpack", "msgpack"),
    "prometheus_client": ("prometheus_client", "prometheus"),
    "opentelemetry": ("the OpenTelemetry API", "opentelemetry"),
}


def missing(what: str, driver: str, cause: BaseException | None = None) -> MissingDependencyError:
    """The `MissingDependencyError` for *what* (a module or class) lacking *driver*."""
    kind, extra = EXTRAS[driver]
    error = MissingDependencyError(
        f"{what} needs {kind}, which is not installed; install it with "
        f"pip install '{DISTRIBUTION}[{extra}]'",
        name=driver,
        extra=extra,
    )
    error.__cause__ = cause
    return error


def missing_driver(what: str, exc: ModuleNotFoundError) -> ModuleNotFoundError:
    """Turn a backend module's failed driver import into the error that names the extra.

    A backend module wraps its driver imports in `try:` and raises
    `missing_driver(__name__, exc) from exc`; a module that is not an
    optional driver comes back unchanged.
    """
    driver = (exc.name or "").partition(".")[0]
    if driver not in EXTRAS:
        return exc
    return missing(what, driver, exc)


def require(what: str, *drivers: str) -> None:
    """Raise `MissingDependencyError` for *what* unless every one of *drivers* is importable.

    A backend module calls it before importing its driver, so `import
    scalekit.locking.redis_lock` without redis-py names the extra instead of
    failing with a bare `ModuleNotFoundError`.
    """
    for driver in drivers:
        try:
            found = importlib.util.find_spec(driver) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise missing(what, driver)


_IMPORT_FROM = dis.opmap["IMPORT_FROM"]


def _importing_from(frame: types.FrameType | None) -> bool:
    """Whether *frame* is executing `from package import name` (the `IMPORT_FROM` opcode).

    That statement turns an `AttributeError` from the package's `__getattr__`
    into a bare "cannot import name" `ImportError`, losing the message, so
    it gets the `ModuleNotFoundError` instead.
    """
    if frame is None:
        return True
    code, at = frame.f_code.co_code, frame.f_lasti
    return not 0 <= at < len(code) or code[at] == _IMPORT_FROM


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a module `__getattr__` and `__dir__` serving *names* lazily.

    Args:
        package: The importing package's `__name__`.
        names: Exported name -> the relative module that defines it.
        namespace: The package's `globals()`; a loaded name is stored there,
            so later lookups cost nothing.

    Returns:
        `(__getattr__, __dir__)` for the package to assign at module level.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(module, package), name)
        except ModuleNotFoundError as exc:
            driver = (exc.name or "").partition(".")[0]
            if driver not in EXTRAS:
                raise
            error = missing(f"{package}.{name}", driver, exc)
            if _importing_from(sys._getframe(1)):
                raise error from exc
            raise MissingBackendError(
                str(error),
                name=name,
                obj=sys.modules.get(package),
                driver=driver,
                extra=error.extra,
            ) from exc
        namespace[name] = value
        return value

    return __getattr__, public_dir(package, namespace, names)


def public_dir(
    package: str, namespace: dict[str, Any], lazy: Mapping[str, str] | None = None
) -> Callable[[], list[str]]:
    """Return a module `__dir__` listing the package's public names only.

    Those are `__all__`, the *lazy* names and the package's public
    submodules; private helpers, imported utilities and dunders stay out, so
    tab completion offers what a user may rely on.

    Args:
        package: The package's `__name__`.
        namespace: The package's `globals()`, read each time `dir()` is called.
        lazy: Names served by the package's lazy `__getattr__`.

    Returns:
        The `__dir__` for the package to assign at module level.
    """
    extra = tuple(lazy or ())

    def __dir__() -> list[str]:
        submodules = {
            name
            for name, value in namespace.items()
            if isinstance(value, types.ModuleType)
            and not name.startswith("_")
            and value.__name__ == f"{package}.{name}"
        }
        return sorted({*namespace.get("__all__", ()), *extra, *submodules})

    return __dir__
