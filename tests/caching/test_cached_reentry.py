"""`cached` re-entry: a caller raises `ReentrantCallError` exactly when waiting would deadlock.

A task or thread that a call starts and that asks for the call's own key
deadlocks only if the call waits for it. Started and left running (an
audit, a prefetch, a notification), it waits for the call and gets its
value; awaited by the call (directly, or through `gather`, `wait_for`,
`shield`, `asyncio.wait` or a `TaskGroup`), it raises, whether the call
starts awaiting it before or after it asks. The bound of the second case is
docs/caching.md's: within `0.1` s of the event loop's clock.

Every test is bounded by `asyncio.wait_for` or a thread join with a timeout;
the computations that outlast the watch's period say so.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from scalekit.caching import LRUCache, ReentrantCallError, cached, cachedmethod
from scalekit.caching import decorators as decorators_module

#: docs/caching.md: a caller the call starts awaiting later raises within this
#: many seconds of the event loop's clock.
WATCH_BOUND = 0.1


async def _direct(t: asyncio.Task[Any]) -> Any:
    return await t


async def _gather(t: asyncio.Task[Any]) -> Any:
    return (await asyncio.gather(t))[0]


async def _wait_for(t: asyncio.Task[Any]) -> Any:
    return await asyncio.wait_for(t, 5)


async def _shield(t: asyncio.Task[Any]) -> Any:
    return await asyncio.shield(t)


async def _wait(t: asyncio.Task[Any]) -> Any:
    await asyncio.wait({t})
    return t.result()


async def _wait_timeout(t: asyncio.Task[Any]) -> Any:
    # A wait with a timeout counts: it would end only by timing out.
    await asyncio.wait({t}, timeout=5)
    return t.result()


AWAITS: dict[str, Callable[[asyncio.Task[Any]], Awaitable[Any]]] = {
    "await": _direct,
    "gather": _gather,
    "wait_for": _wait_for,
    "shield": _shield,
    "asyncio.wait": _wait,
    "asyncio.wait-timeout": _wait_timeout,
}


# -- a task the call starts and never awaits ------------------------------------------


def test_a_fire_and_forget_task_started_by_the_call_waits_and_gets_its_value() -> None:
    # An audit task started by the computation asks for the same key while the
    # computation runs on, for longer than the watch's period (two periods).
    calls: list[int] = []
    seen: list[Any] = []

    @cached(LRUCache(10))
    async def f(x: int) -> int:
        calls.append(x)
        asking = asyncio.Event()
        asyncio.get_running_loop().create_task(audit(x, asking))
        await asking.wait()  # the audit is waiting for this call now
        await asyncio.sleep(2 * WATCH_BOUND)  # the rest of the computation
        return x * 10

    async def audit(x: int, asking: asyncio.Event) -> None:
        asking.set()
        try:
            seen.append(await f(x))
        except BaseException as exc:  # the bug: ReentrantCallError
            seen.append(exc)

    async def main() -> int:
        value = await f(1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)
        return value

    assert asyncio.run(asyncio.wait_for(main(), 5)) == 10
    assert seen == [10] and calls == [1]


def test_a_fire_and_forget_task_that_fails_gets_the_calls_error() -> None:
    seen: list[Any] = []

    @cached(LRUCache(10))
    async def f(x: int) -> int:
        asking = asyncio.Event()
        asyncio.get_running_loop().create_task(audit(x, asking))
        await asking.wait()
        raise LookupError("backend says no")

    async def audit(x: int, asking: asyncio.Event) -> None:
        asking.set()
        try:
            seen.append(await f(x))
        except BaseException as exc:
            seen.append(exc)

    async def main() -> None:
        with pytest.raises(LookupError):
            await f(1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)

    asyncio.run(asyncio.wait_for(main(), 5))
    assert len(seen) == 1 and type(seen[0]) is LookupError


def test_a_task_of_the_call_that_asks_for_another_key_is_not_watched_into_an_error() -> None:
    # A prefetch of the next key by a task the call started, while the call
    # awaits it: no wait on the call itself, so it completes.
    calls: list[int] = []

    @cached(LRUCache(10))
    async def f(x: int) -> int:
        calls.append(x)
        if x == 1:
            return await asyncio.create_task(f(2)) + 1
        return x

    assert asyncio.run(asyncio.wait_for(f(1), 5)) == 3
    assert calls == [1, 2]


def test_an_async_cachedmethod_fire_and_forget_task_gets_the_value() -> None:
    seen: list[Any] = []

    class Service:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, int] = LRUCache(4)
            self.calls = 0

        @cachedmethod(lambda self: self.cache)
        async def load(self, x: int) -> int:
            self.calls += 1
            asking = asyncio.Event()
            asyncio.get_running_loop().create_task(self.notify(x, asking))
            await asking.wait()
            await asyncio.sleep(0)
            return x + 100

        async def notify(self, x: int, asking: asyncio.Event) -> None:
            asking.set()
            try:
                seen.append(await self.load(x))
            except BaseException as exc:
                seen.append(exc)

    async def main() -> tuple[int, int]:
        service = Service()
        value = await service.load(1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)
        return value, service.calls

    assert asyncio.run(asyncio.wait_for(main(), 5)) == (101, 1)
    assert seen == [101]


# -- a task the call starts and awaits: a real deadlock ---------------------------------


def _run_awaiting_its_task(how: str, ask_first: bool) -> tuple[list[Any], bool, int]:
    """`f(1)` starts a task that asks for `f(1)`, and awaits it *how*.

    With *ask_first*, the task is waiting for the call before the call starts
    awaiting it. Returns what the call saw from the task, whether it saw it
    within `WATCH_BOUND` of the loop's clock, and the number of calls.
    """
    calls: list[int] = []
    seen: list[Any] = []
    in_time: list[bool] = []

    @cached(LRUCache(10))
    async def f(x: int) -> Any:
        calls.append(x)
        asking = asyncio.Event()
        if how == "TaskGroup":
            try:
                async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                    group.create_task(side(x, asking))
                    if ask_first:
                        await asking.wait()
                        _probe(seen, in_time)
            except Exception as exc:  # an ExceptionGroup of the task's error
                seen.extend(getattr(exc, "exceptions", [exc]))
                return "recovered"
            return "unreachable"
        task = asyncio.get_running_loop().create_task(side(x, asking))
        if ask_first:
            await asking.wait()  # the task is waiting for this call now
            _probe(seen, in_time)
        try:
            return await AWAITS[how](task)
        except ReentrantCallError as exc:
            seen.append(exc)
            return "recovered"

    async def side(x: int, asking: asyncio.Event) -> Any:
        asking.set()
        return await f(x)

    assert asyncio.run(asyncio.wait_for(f(1), 5)) == "recovered"
    return seen, (in_time or [True])[0], len(calls)


def _probe(seen: list[Any], in_time: list[bool]) -> None:
    # A timer of WATCH_BOUND set as the call starts awaiting the task: by the
    # time it fires, and five loop steps more (no waiting: the error travels
    # from the task to the call through callbacks, a TaskGroup's among them),
    # the call has seen the task's ReentrantCallError.
    loop = asyncio.get_running_loop()

    def step(left: int) -> None:
        if left:
            loop.call_soon(step, left - 1)
        else:
            in_time.append(bool(seen))

    loop.call_later(WATCH_BOUND, step, 5)


HOWS = [*AWAITS, "TaskGroup"]


@pytest.mark.parametrize("ask_first", [False, True], ids=["awaited-then-asks", "asks-then-awaited"])
@pytest.mark.parametrize("how", HOWS)
def test_a_task_the_call_awaits_raises_instead_of_waiting_for_the_call(
    how: str, ask_first: bool
) -> None:
    if how == "TaskGroup" and sys.version_info < (3, 11):
        pytest.skip("asyncio.TaskGroup is new in Python 3.11")
    seen, in_time, calls = _run_awaiting_its_task(how, ask_first)
    assert len(seen) == 1 and isinstance(seen[0], ReentrantCallError), seen
    message = str(seen[0])
    assert "f asked for key (1,)" in message and "waiting would never end" in message
    assert in_time, f"not raised within {WATCH_BOUND} s of the call awaiting the task"
    assert calls == 1


@pytest.mark.parametrize("awaited", [False, True], ids=["never-awaited", "awaited-later"])
def test_a_task_started_by_a_task_of_the_call_is_watched_too(awaited: bool) -> None:
    # The call starts a helper task, which starts the task that asks: it inherits
    # the call's context through both. It deadlocks only if the call awaits the helper.
    calls: list[int] = []
    seen: list[Any] = []

    @cached(LRUCache(10))
    async def f(x: int) -> Any:
        calls.append(x)
        asking = asyncio.Event()
        helper = asyncio.get_running_loop().create_task(helper_of(x, asking))
        await asking.wait()  # the grandchild waits for this call now
        if awaited:
            try:
                await helper
            except ReentrantCallError as exc:
                seen.append(exc)
        return x

    async def helper_of(x: int, asking: asyncio.Event) -> None:
        async def ask() -> None:
            asking.set()
            seen.append(await f(x))

        await asyncio.create_task(ask())

    async def main() -> int:
        value = await f(1)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0)
        return value  # type: ignore[no-any-return]

    assert asyncio.run(asyncio.wait_for(main(), 5)) == 1 and calls == [1]
    if awaited:
        assert len(seen) == 1 and isinstance(seen[0], ReentrantCallError)
    else:
        assert seen == [1]


def test_a_watched_task_that_is_cancelled_leaves_the_call_running() -> None:
    # The audit task gives up (its own caller cancels it) while it waits: the
    # call goes on and stores its value.
    calls: list[int] = []

    @cached(LRUCache(10))
    async def f(x: int) -> int:
        calls.append(x)
        asking = asyncio.Event()
        audit = asyncio.get_running_loop().create_task(side(x, asking))
        await asking.wait()
        audit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await audit
        return x

    async def side(x: int, asking: asyncio.Event) -> int:
        asking.set()
        return await f(x)

    async def main() -> int:
        return await f(1) + await f(1)

    assert asyncio.run(asyncio.wait_for(main(), 5)) == 2 and calls == [1]


# -- threads: the waits-for graph only has waits inside cached calls -------------------


def _wait_until_waiting(thread: threading.Thread) -> None:
    # Polls the flights' waits-for table until *thread* waits on a flight.
    for _ in range(1000):
        if thread.ident in decorators_module._WAITING:
            return
        threading.Event().wait(0.005)
    raise AssertionError("the thread never waited for the call")


def test_a_thread_started_by_the_call_and_not_joined_waits_and_gets_its_value() -> None:
    calls: list[int] = []
    seen: list[Any] = []

    @cached(LRUCache(10), lock=threading.Lock())
    def f(x: int) -> int:
        calls.append(x)
        side = threading.Thread(target=lambda: seen.append(_call(f, x)), daemon=True)
        side.start()
        _wait_until_waiting(side)  # the thread waits for this call, which goes on
        started.append(side)
        return x * 10

    started: list[threading.Thread] = []
    assert f(1) == 10
    started[0].join(5)
    assert seen == [10] and calls == [1]


def test_a_thread_the_call_joins_is_not_detected_and_waits_for_the_call() -> None:
    # The documented limit: a join is no wait inside `cached`, so the thread
    # waits for the call; joined with a timeout, the call goes on after it and
    # the thread then gets the value. Without the timeout the join never returns.
    seen: list[Any] = []
    joined: list[bool] = []

    @cached(LRUCache(10))
    def f(x: int) -> int:
        side = threading.Thread(target=lambda: seen.append(_call(f, x)), daemon=True)
        side.start()
        _wait_until_waiting(side)
        side.join(0.05)
        joined.append(not side.is_alive())
        started.append(side)
        return x * 10

    started: list[threading.Thread] = []
    assert f(1) == 10
    started[0].join(5)
    assert joined == [False] and seen == [10]


def _call(f: Callable[[int], Any], x: int) -> Any:
    try:
        return f(x)
    except BaseException as exc:
        return exc
