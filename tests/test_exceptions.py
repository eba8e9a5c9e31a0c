"""The error rule of docs/index.md, enforced on every `raise` in src/, `.pyx` sources included.

Every exception scalekit raises on purpose is a `ScaleKitError` subclass
that also subclasses the builtin a caller would catch. The exceptions the
docs list are the only builtins raised directly: the caches' `KeyError` and
`ValueError("value too large")` (drop-in for cachetools), `NotImplementedError`
for a subclass hook left out, `AttributeError` from a module `__getattr__`,
`AssertionError` for an internal invariant and `SystemExit` from a
`__main__` module; the compiled twins also raise, as Python itself would in
their pure twins, `MemoryError` when an allocation fails, the
`IndexError` of indexing past a `bytearray`'s end, and the `RuntimeError`
of a dict changed under a walk of it (a key's own code changing the cache);
and the `ImportError` of a compiled module whose node layout is not the one
it was built for, which makes the package fall back to pure Python.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import re
import textwrap
import typing
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


def _allowed_in_twin(cls: type[BaseException], args: str, module: str, function: str) -> bool:
    """`_allowed` for a raise in a compiled twin's `.pyx` source (*args*: the call's text)."""
    if cls is MemoryError:
        return args == ""  # PyMem_Malloc returned NULL: what Python raises for it
    if cls is IndexError:
        return args == '"bytearray index out of range"'  # the pure twin's own indexing error
    if cls is ImportError:  # _compiled.load() falls back to pure Python on it
        return function == "check_layout"
    if cls is RuntimeError:  # what a dict raises when it changes while it is walked
        return re.fullmatch(r'_?changed\(\w+, "[^"]+"\)', args) is not None
    if cls is ValueError:
        return module.startswith("scalekit.caching.") and args == '"value too large"'
    if cls is KeyError:
        return module.startswith("scalekit.caching.")
    if cls is AttributeError:
        return function == "__getattr__"
    return cls in (NotImplementedError, AssertionError)


def _exception_class(value: object) -> type[BaseException] | None:
    if isinstance(value, type) and issubclass(value, BaseException):
        return value
    return None


def _returned_classes(func: object, namespace: dict[str, object]) -> list[type[BaseException]]:
    """The exception classes a factory function builds: `return Cls(...)` in its body."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
            target = node.value.func
            if isinstance(target, ast.Name):
                cls = _exception_class(namespace.get(target.id, getattr(builtins, target.id, None)))
                if cls is not None:
                    found.append(cls)
    if not found:  # a factory that delegates: trust its annotated return type
        try:
            hint = typing.get_type_hints(func).get("return")
        except (NameError, TypeError):
            hint = None
        cls = _exception_class(hint)
        if cls is not None:
            found.append(cls)
    return found


def _bound_names(func: ast.AST) -> dict[str, str]:
    """`name = Cls(...)` assignments in *func*, so `raise name` resolves to `Cls`."""
    bound: dict[str, str] = {}
    for node in ast.walk(func):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    bound[target.id] = node.value.func.id
    return bound


def _raises() -> list[tuple[str, int, type[BaseException], ast.Raise, str]]:
    """Every `raise` in src/ whose class is known: direct, through a factory or a local name.

    `raise Cls(...)` and `raise Cls` name the class; `raise make_error(...)`
    calls a factory, resolved to the classes its `return Cls(...)` builds;
    `raise exc` after `exc = Cls(...)` in the same function resolves to
    `Cls`. A factory that builds no class the walk can name is reported, so
    a new indirect raise cannot slip past.
    """
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        namespace = vars(importlib.import_module(module))
        tree = ast.parse(path.read_text())
        functions: dict[int, ast.AST] = {}
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(func):
                    functions[id(inner)] = func
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            func = functions.get(id(node))
            name = getattr(func, "name", "")
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if not isinstance(target, ast.Name):
                continue  # re-raising a stored exception object (flight.error, exc)
            ident = target.id
            if not isinstance(node.exc, ast.Call) and func is not None:
                ident = _bound_names(func).get(ident, ident)
            value = namespace.get(ident, getattr(builtins, ident, None))
            cls = _exception_class(value)
            if cls is not None:
                found.append((module, node.lineno, cls, node, name))
            elif isinstance(node.exc, ast.Call) and callable(value):
                if getattr(value, "__name__", "") in _RERAISERS:
                    continue  # a copy of an exception the user's own code raised
                built = _returned_classes(value, vars(inspect.getmodule(value) or builtins))
                if not built:
                    found.append((module, node.lineno, _UnresolvedFactory, node, name))
                for cls in built:
                    found.append((module, node.lineno, cls, node, name))
    return found


#: Functions that return a copy of a stored exception (a loader's own error, re-raised
#: to each waiter) or the import error they were given when it is not an optional
#: driver's: what they raise is what was raised to them.
_RERAISERS = {"own_copy", "missing_driver"}


class _UnresolvedFactory(Exception):
    """Stands for a `raise factory(...)` whose built class the walk cannot name."""


_PYX_IMPORT = re.compile(r"^from (\.+[\w.]*) import \(?([\w, ]+)\)?\s*$", re.MULTILINE)
_PYX_RAISE = re.compile(r"^(?P<indent> *)raise (?P<name>\w+)(?P<call>\((?P<args>.*)\))?\s*$")
_PYX_DEF = re.compile(r"^(?P<indent> *)(?:async def|cpdef|cdef|def) .*?(?P<name>\w+)\s*\(")


def _twin_raises() -> list[tuple[str, int, type[BaseException], str, str]]:
    """Every `raise Name` or `raise Name(...)` in the Cython sources: (module, line, class,
    the call's argument text, enclosing function).

    Cython is no Python `ast` can read, so the walk is by line: every `raise`
    in a `.pyx` file is one line, and a `raise` the pattern cannot read is
    reported. A name resolves through the file's relative imports, else to a
    builtin; one that resolves to no exception class is reported too.
    """
    found = []
    for path in sorted([*SRC.rglob("*.pyx"), *SRC.rglob("*.pxd")]):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts)
        package = ".".join(parts[:-1])
        text = path.read_text()
        imported: dict[str, object] = {}
        for source, names in _PYX_IMPORT.findall(text):
            target = importlib.import_module(source, package)
            for name in (n.strip() for n in names.split(",")):
                if name:
                    imported[name] = getattr(target, name)
        defs: list[tuple[int, str]] = []  # (indent, name) of the enclosing definitions
        for number, line in enumerate(text.splitlines(), start=1):
            code = line.split("#", 1)[0].rstrip()
            if not code.strip():
                continue
            indent = len(code) - len(code.lstrip())
            while defs and defs[-1][0] >= indent:
                defs.pop()
            head = _PYX_DEF.match(code)
            if head is not None and code.endswith(":"):
                defs.append((indent, head["name"]))
                continue
            if not re.match(r"\s*raise\b", code) or code.strip() == "raise":
                continue
            match = _PYX_RAISE.match(code)
            if match is None:
                found.append((module, number, _UnresolvedFactory, code.strip(), ""))
                continue
            name = match["name"]
            cls = _exception_class(imported.get(name, getattr(builtins, name, None)))
            function = defs[-1][1] if defs else ""
            found.append((module, number, cls or _UnresolvedFactory, match["args"] or "", function))
    return found


def test_every_raise_in_the_compiled_twins_is_a_scalekit_error_or_a_documented_builtin() -> None:
    found = _twin_raises()
    modules = {module for module, *_ in found}
    # The walk sees every compiled twin, not an empty directory.
    assert modules == {
        f"scalekit.caching.{m}" for m in ("_ccore", "_cfreq", "_clinked", "_csketch", "_ctinylfu")
    }
    assert len(found) > 20
    wrong = [
        f"{module}:{line}: raise {cls.__name__}({args})"
        for module, line, cls, args, function in found
        if not issubclass(cls, ScaleKitError) and not _allowed_in_twin(cls, args, module, function)
    ]
    assert wrong == []


def test_the_twin_walk_reads_the_raises_it_must() -> None:
    by_line = {(module, args): cls for module, _, cls, args, _ in _twin_raises()}
    assert by_line[("scalekit.caching._ctinylfu", '"value too large"')] is ValueError
    assert by_line[("scalekit.caching._clinked", "key")] is KeyError
    assert _allowed_in_twin(TypeError, '"x"', "scalekit.caching._clinked", "f") is False
    assert _allowed_in_twin(ValueError, '"rows"', "scalekit.caching._csketch", "f") is False


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
        exceptions.StaleTokenError,
    }
    raised = {cls for _, _, cls, _, _ in _raises() if issubclass(cls, ScaleKitError)}
    assert exceptions.ArgumentTypeError in raised
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
    with pytest.raises(ArgumentTypeError, match="key must be a datetime, got str") as wrong_type:
        router.route("2026-01-01")  # type: ignore[arg-type]
    assert isinstance(wrong_type.value, TypeError)
    with pytest.raises(ConfigurationError, match="'bogus' does not match template") as bogus:
        router.parse("bogus")
    assert isinstance(bogus.value, ValueError)


def test_the_walk_sees_raises_through_factories() -> None:
    factory = [
        (module, cls)
        for module, _, cls, node, _ in _raises()
        if isinstance(node.exc, ast.Call)
        and isinstance(node.exc.func, ast.Name)
        and node.exc.func.id == "_incomparable"
    ]
    assert factory and all(cls is ArgumentTypeError for _, cls in factory)


def test_routing_an_incomparable_key_is_an_argument_type_error() -> None:
    from scalekit.sharding import RangeRouter

    router = RangeRouter([10, 20], ["a", "b", "c"])
    with pytest.raises(ArgumentTypeError, match=r"key 'x' \(str\) cannot be compared") as info:
        router.route("x")
    assert isinstance(info.value, TypeError)
