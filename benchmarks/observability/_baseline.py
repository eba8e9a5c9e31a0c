"""Today's hot paths with the instrumentation taken out: what the overhead is measured against.

The baseline is built from the current source, not kept as a copy that
drifts: `uninstrumented(func)` parses *func*'s source, removes every
statement that instruments it and compiles the rest in *func*'s own
module. What is removed:

* an `if` (or conditional expression) whose test reads `_emit` or a
  balancer's probe (`_probe`, `_latencies`): its `else` part is kept,
  which is what runs when nobody listens;
* a statement that calls into `_emit` or reads a probe;
* assignments to names nothing else reads once the above is gone (a lock's
  `begun` clock reading, kept only for the wait histogram).

The result is checked to read none of those names any more, so a change
of the instrumentation's shape fails the benchmark instead of measuring
the wrong thing. Nothing else uses this module.
"""

from __future__ import annotations
import __future__

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = [
    "bare_balancer",
    "bare_lock",
    "bare_sync_wrapper",
    "cache_paths",
    "instrumented_paths",
]

# What instrumented code reads: the module, its deferred health events, a balancer's
# probe and its buffers.
_MARKS = frozenset({"_emit", "_health_events", "_probe", "_latencies", "_latency_other"})


def _marked(node: ast.AST, tainted: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and (sub.id in _MARKS or sub.id in tainted):
            return True
        if isinstance(sub, ast.Attribute) and sub.attr in _MARKS:
            return True
    return False


class _Strip(ast.NodeTransformer):
    def __init__(self) -> None:
        self.tainted: set[str] = set()
        self.removed = 0

    def visit_If(self, node: ast.If) -> Any:
        if _marked(node.test, self.tainted):
            self.removed += 1
            kept = [self.visit(s) for s in node.orelse]
            return [s for s in kept if s is not None] or None
        return self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        if _marked(node.test, self.tainted):
            self.removed += 1
            return self.visit(node.orelse)
        return self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> Any:
        node = self.generic_visit(node)  # type: ignore[assignment]
        if _marked(node.value, self.tainted):
            # `on = _emit.on`, `latencies = self._latencies`: the name is instrumentation now.
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.tainted.add(target.id)
            self.removed += 1
            return None
        return node

    def visit_Expr(self, node: ast.Expr) -> Any:
        if _marked(node.value, self.tainted):
            self.removed += 1
            return None
        return self.generic_visit(node)


def _loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


class _DropDead(ast.NodeTransformer):
    """Assignments whose every target nothing reads (after the instrumentation went)."""

    def __init__(self, loaded: set[str]) -> None:
        self.loaded = loaded
        self.removed = 0

    def visit_Assign(self, node: ast.Assign) -> Any:
        names: list[str] = []
        for target in node.targets:
            elts = target.elts if isinstance(target, ast.Tuple) else [target]
            if not all(isinstance(e, ast.Name) for e in elts):
                return node
            names += [e.id for e in elts if isinstance(e, ast.Name)]
        if names and not any(n in self.loaded for n in names):
            self.removed += 1
            return None
        return node


def _fill_empty(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if isinstance(body, list) and not body and name == "body":
                body.append(ast.Pass())
        if isinstance(node, ast.Try) and not node.finalbody and not node.handlers:
            node.finalbody.append(ast.Pass())


def uninstrumented(func: Callable[..., Any]) -> tuple[Callable[..., Any], int]:
    """*func* compiled again without its instrumentation, and how many statements went.

    Raises:
        AssertionError: the stripped function still reads the instrumentation.
    """
    source = textwrap.dedent(inspect.getsource(func))
    tree = ast.parse(source)
    strip = _Strip()
    tree = strip.visit(tree)
    dead = _DropDead(_loaded(tree))
    tree = dead.visit(tree)
    _fill_empty(tree)
    ast.fix_missing_locations(tree)
    left = [
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(tree)
        if (isinstance(n, ast.Name) and n.id in _MARKS)
        or (isinstance(n, ast.Attribute) and n.attr in _MARKS)
    ]
    assert not left, f"{func.__qualname__} still reads {sorted(set(left))} once stripped"
    namespace: dict[str, Any] = {}
    code = compile(
        tree,
        inspect.getsourcefile(func) or "<baseline>",
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    exec(code, func.__globals__, namespace)
    stripped = namespace[func.__name__]
    stripped.__qualname__ = func.__qualname__
    return stripped, strip.removed + dead.removed


def instrumented_paths() -> dict[str, int]:
    """How many instrumentation statements each measured path has (0: the path has none)."""
    from scalekit.balancing.base import Balancer
    from scalekit.caching import decorators
    from scalekit.locking.base import BaseLock

    out = {}
    for func in (Balancer.pick, Balancer.release, BaseLock.acquire, decorators._sync_wrapper):
        out[func.__qualname__] = uninstrumented(func)[1]
    return out


def bare_balancer(cls: type[Any]) -> type[Any]:
    """*cls* with `pick` and `release` stripped of their instrumentation."""
    from scalekit.balancing.base import Balancer

    methods = {name: uninstrumented(getattr(Balancer, name))[0] for name in ("pick", "release")}
    return type(f"Bare{cls.__name__}", (cls,), methods)


def bare_lock(cls: type[Any]) -> type[Any]:
    """*cls* with `acquire` stripped of its instrumentation."""
    from scalekit.locking.base import BaseLock

    return type(f"Bare{cls.__name__}", (cls,), {"acquire": uninstrumented(BaseLock.acquire)[0]})


def bare_sync_wrapper() -> Callable[..., Any]:
    """`cached`'s synchronous wrapper builder, stripped of its instrumentation."""
    from scalekit.caching import decorators

    return uninstrumented(decorators._sync_wrapper)[0]


def cache_paths() -> dict[str, int]:
    """Instrumenting statements in every method the caches' get/set rows can run.

    Every scalekit class of `LRUCache`'s and `TinyLFUCache`'s method
    resolution order is read: Python methods through `_Strip`, compiled
    cores through their `.pyx` source (any mention of `_emit` counts).
    """
    from pathlib import Path

    from scalekit.caching import LRUCache, TinyLFUCache

    out: dict[str, int] = {}
    for cache in (LRUCache(maxsize=1), TinyLFUCache(maxsize=1)):
        name, others = type(cache).__name__, 0
        for cls in type(cache).__mro__:
            module = sys.modules.get(cls.__module__)
            if module is None or not cls.__module__.startswith("scalekit."):
                continue
            source = getattr(module, "__file__", None) or ""
            if not source.endswith(".py"):
                pyx = Path(source.split(".", 1)[0] + ".pyx")
                if pyx.exists() and "_emit" in pyx.read_text():
                    out[f"{name}: {pyx.name}"] = pyx.read_text().count("_emit")
                continue
            for value in vars(cls).values():
                func = getattr(value, "__func__", value)
                if not inspect.isfunction(func):
                    continue
                strip = _Strip()
                strip.visit(ast.parse(textwrap.dedent(inspect.getsource(func))))
                if strip.removed:
                    out[f"{name}: {func.__qualname__}"] = strip.removed
                else:
                    others += 1
        out[f"{name}: the {others} other methods"] = 0
    return out
