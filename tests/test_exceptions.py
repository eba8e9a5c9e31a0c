"""The error rule of docs/index.md, enforced on every `raise` in src/.

Every exception scalekit raises on purpose is a `ScaleKitError` subclass
that also subclasses the builtin a caller would catch. The exceptions the
docs list are the only builtins raised directly: the caches' `KeyError` and
`ValueError("value too large")` (drop-in for cachetools), `NotImplementedError`
for a subclass hook left out, `AttributeError` from a module `__getattr__`,
`AssertionError` for an internal invariant and `SystemExit` from a
`__main__` module.
"""

from __future__ import annotations

import ast
import builtins
import importlib
from datetime import datetime
from pathlib import Path

import pytest

import scalekit
from scalekit.balancing import RoundRobin
from scalekit.exceptions import ArgumentTypeError, ConfigurationError, ScaleKitError
from scalekit.sharding import HashRouter, TimeRouter

SRC = Path(scalekit.__file__).resolve().parent


def _allowed(cls: type[BaseException], node: ast.Raise, module: str, function: str) -> bool:
    if cls is KeyError:
        return module.startswith("scalekit.caching.")
    if cls is ValueError:
        call = node.exc
        return (
            module.startswith("scalekit.caching.")
            and isinstance(call, ast.Call)
            and [ast.literal_eval(arg) for arg in call.args] == ["value too large"]
        )
    if cls is AttributeError:
        return function == "__getattr__"
    if cls is SystemExit:
        return module.endswith(".__main__")
    return cls in (NotImplementedError, AssertionError)


def _raises() -> list[tuple[str, int, type[BaseException], ast.Raise, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        namespace = vars(importlib.import_module(module))
        tree = ast.parse(path.read_text())
        functions = {
            id(inner): func.name
            for func in ast.walk(tree)
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(func)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if not isinstance(target, ast.Name):
                continue  # re-raising a stored exception object (flight.error, exc)
            cls = namespace.get(target.id, getattr(builtins, target.id, None))
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found.append((module, node.lineno, cls, node, functions.get(id(node), "")))
    return found


def test_every_deliberate_raise_is_a_scalekit_error_or_a_documented_builtin() -> None:
    found = _raises()
    assert len(found) > 100  # the walk sees the package, not an empty directory
    wrong = [
        f"{module}:{line}: raise {cls.__name__}"
        for module, line, cls, node, function in found
        if not issubclass(cls, ScaleKitError) and not _allowed(cls, node, module, function)
    ]
    assert wrong == []


def test_every_raised_scalekit_error_also_subclasses_a_builtin() -> None:
    from scalekit import exceptions

    # The family bases and the lock errors no builtin describes stay plain, as STYLE.md shows.
    plain = {
        exceptions.BackendError,
        exceptions.LockError,
        exceptions.LockNotOwnedError,
        exceptions.LockLostError,
    }
    raised = {cls for _, _, cls, _, _ in _raises() if issubclass(cls, ScaleKitError)}
    classes = raised | {getattr(exceptions, name) for name in exceptions.__all__}
    for cls in classes - plain - {ScaleKitError}:
        generic = (Exception, BaseException, object)
        builtin = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in generic]
        assert builtin, f"{cls.__name__} subclasses no builtin a caller would catch"


def test_releasing_an_unknown_endpoint_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot release unknown endpoint 'zzz'") as info:
        RoundRobin(["a"]).release("zzz")
    assert isinstance(info.value, ValueError)


def test_routing_a_float_key_is_an_argument_type_error() -> None:
    with pytest.raises(ArgumentTypeError, match=r"got float: 1\.5") as info:
        HashRouter(["a"]).route(1.5)  # type: ignore[arg-type]
    assert isinstance(info.value, TypeError) and isinstance(info.value, ScaleKitError)


def test_time_router_naive_datetime_wrong_type_and_bogus_name() -> None:
    router = TimeRouter("month", "orders_{:%Y_%m}")
    with pytest.raises(ConfigurationError, match="naive datetime") as naive:
        router.route(datetime(2026, 1, 1))
    assert isinstance(naive.value, ValueError)
    with pytest.raises(ArgumentTypeError, match="expected a datetime, got str") as wrong_type:
        router.route("2026-01-01")  # type: ignore[arg-type]
    assert isinstance(wrong_type.value, TypeError)
    with pytest.raises(ConfigurationError, match="'bogus' does not match template") as bogus:
        router.parse("bogus")
    assert isinstance(bogus.value, ValueError)
