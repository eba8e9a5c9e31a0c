"""Which asyncio tasks wait for a future, read from what asyncio records.

A task blocked in `await fut` is one of *fut*'s done-callbacks (its wakeup)
and has *fut* as its `_fut_waiter`; `gather`, `shield`, `wait_for` (before
Python 3.12), `asyncio.wait` and a `TaskGroup`'s exit put a callback of
their own on *fut* that completes another future, which the waiting task
awaits. Following these callbacks from a future backwards gives the tasks
that cannot go on before it finishes. Only these known links are followed: a
wait through anything else (an `Event`, a `Queue`, a future the code sets
itself, a callback of the code's own) is not seen.

Read on Python 3.10 to 3.13, with the C and the pure-Python `Task`; the
attributes read are asyncio's own (`Future._callbacks`, `Task._fut_waiter`,
the closures of `gather`/`shield`/`wait`, `TaskGroup._on_completed_fut`),
and any of them missing makes the link unseen, never an error.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import functools
from typing import Any

_TASKGROUP: Any = getattr(asyncio, "TaskGroup", None)
_RELEASE_WAITER: Any = getattr(asyncio.tasks, "_release_waiter", None)
# The callbacks of asyncio.tasks that complete the future in their closure
# (by that closure variable's name) once the future they are on is done.
_COMPLETES = {
    "gather.<locals>._done_callback": "outer",
    "shield.<locals>._inner_done_callback": "outer",
}
_WAIT = "_wait.<locals>._on_completion"


def _cell(cells: dict[str, Any], name: str) -> Any:
    cell = cells.get(name)
    try:
        return None if cell is None else cell.cell_contents
    except ValueError:  # an empty cell
        return None


def awaiters(fut: Any) -> list[Any]:
    """The tasks and futures that finish, or go on, only once *fut* is done."""
    found: list[Any] = []
    for entry in getattr(fut, "_callbacks", None) or ():
        try:
            waiter = _completed_by(fut, entry[0] if isinstance(entry, tuple) else entry)
        except Exception:  # a callback of a shape asyncio does not make: no link
            continue
        if waiter is not None and asyncio.isfuture(waiter):
            found.append(waiter)
    return found


def _completed_by(fut: Any, callback: Any) -> Any:
    """The future that *callback*, one of *fut*'s, makes wait for *fut*, if asyncio's."""
    owner = getattr(callback, "__self__", None)
    if owner is not None:
        if getattr(owner, "_fut_waiter", None) is fut:
            return owner  # a task blocked on fut: its wakeup
        if _TASKGROUP is not None and isinstance(owner, _TASKGROUP):
            # The group's task, once in its `async with` exit, awaits every task.
            return getattr(owner, "_on_completed_fut", None)
        return None
    if isinstance(callback, functools.partial):
        if _RELEASE_WAITER is not None and callback.func is _RELEASE_WAITER and callback.args:
            return callback.args[0]  # wait_for's waiter, before Python 3.12
        return None
    code = getattr(callback, "__code__", None)
    closure = getattr(callback, "__closure__", None)
    if code is None or not closure or getattr(callback, "__module__", None) != "asyncio.tasks":
        return None
    cells = dict(zip(code.co_freevars, closure, strict=False))
    name = getattr(callback, "__qualname__", None)
    if name in _COMPLETES:
        return _cell(cells, _COMPLETES[name])
    if name != _WAIT:
        return None
    # asyncio.wait: its waiter waits for this future if it waits for all, or if
    # this is the last one it waits for (a wait with a timeout too: it would end
    # only by timing out).
    if _cell(cells, "return_when") == asyncio.ALL_COMPLETED or _cell(cells, "counter") == 1:
        return _cell(cells, "waiter")
    return None


def waits_for(task: Any, fut: Any) -> bool:
    """Whether *task* cannot go on before *fut* finishes (through the links `awaiters` sees)."""
    seen = {id(fut)}
    todo = [fut]
    while todo:
        for waiter in awaiters(todo.pop()):
            if waiter is task:
                return True
            if id(waiter) not in seen and not waiter.done():
                seen.add(id(waiter))
                todo.append(waiter)
    return False
