"""`cached` single-flight: wait cycles, interrupted leaders and calls that hang.

Each test was a bug: it failed (hung, or raised the wrong error) before its
fix. Threads and tasks are joined with a timeout, so a regression fails
within seconds instead of hanging the run; nothing sleeps to wait for a
condition it could be told about.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from scalekit.caching import LRUCache, ReentrantCallError, cached, cachedmethod

from .test_cached import _waits_on_a_flight

# -- a key whose hash or comparison calls the same function --------------------------


class _Node:
    # A structural hash memoized through the cached function itself.
    def __init__(self, digest: Any, name: str, child: _Node | None = None) -> None:
        self.digest, self.name, self.child = digest, name, child

    def __hash__(self) -> int:
        return hash(self.digest(self.child)) if self.child is not None else hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Node) and (self.name, self.child) == (other.name, other.child)


@pytest.mark.parametrize("maxsize", [0, 1, 2, 10])
def test_a_key_whose_hash_calls_the_same_cached_function_does_not_hang(maxsize: int) -> None:
    # The nested call misses (a cache too small to keep the child's digest) while the
    # outer call looks its own key up in the calls in progress: it must not wait for itself.
    @cached(LRUCache(maxsize))
    def digest(node: _Node) -> str:
        return node.name if node.child is None else node.name + "/" + digest(node.child)

    out: list[Any] = []

    def call() -> None:
        try:
            out.append(digest(_Node(digest, "a", _Node(digest, "b", _Node(digest, "c")))))
        except BaseException as exc:  # the test reports it
            out.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the call waits for itself"
    if maxsize == 1 and isinstance(out[0], ReentrantCallError):
        # With one entry, storing c's digest may evict b, whose hash needs c's digest:
        # a call that would wait for itself, reported as documented.
        return
    assert out == ["a/b/c"]
    assert digest(_Node(digest, "c")) == "c"


# -- wait cycles through two leaders --------------------------------------------------


def test_a_cycle_through_two_leader_threads_raises_instead_of_hanging() -> None:
    both_inside = threading.Barrier(2, timeout=5)

    @cached(LRUCache(100), lock=threading.Lock())
    def f(k: str) -> Any:
        if k in ("a", "b"):
            both_inside.wait()  # each thread leads its own key
            return (k, f("b" if k == "a" else "a"))  # a needs b, b needs a
        return k

    results: dict[str, Any] = {}

    def call(k: str) -> None:
        try:
            results[k] = f(k)
        except RecursionError as exc:
            results[k] = exc

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "the two leaders deadlocked"
    # The thread that closed the cycle raises; the other gets its own copy.
    assert all(isinstance(results[k], ReentrantCallError) for k in "ab"), results
    assert f("c") == "c"  # no flight is left behind


def test_a_cycle_through_three_functions_on_two_threads_raises() -> None:
    both_inside = threading.Barrier(2, timeout=5)

    @cached(LRUCache(10))
    def g(k: str) -> Any:
        return f(k)

    @cached(LRUCache(10))
    def f(k: str) -> Any:
        both_inside.wait()
        return g("b") if k == "a" else f("a")

    errors: list[BaseException] = []

    def call(k: str) -> None:
        try:
            f(k)
        except RecursionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads), "the cycle deadlocked"
    assert len(errors) == 2 and all(isinstance(e, ReentrantCallError) for e in errors)


def test_a_follower_of_a_finished_leader_is_not_taken_for_a_cycle() -> None:
    # Concurrent callers of one key that form no cycle still share one call.
    calls: list[int] = []
    started = threading.Event()
    release = threading.Event()

    @cached(LRUCache(10))
    def slow(x: int) -> int:
        calls.append(x)
        started.set()
        release.wait(5)
        return x

    out: list[Any] = []
    leader = threading.Thread(target=lambda: out.append(slow(1)), daemon=True)
    leader.start()
    assert started.wait(5)
    followers = [threading.Thread(target=lambda: out.append(slow(1)), daemon=True) for _ in "xy"]
    for t in followers:
        t.start()
    release.set()
    for t in [leader, *followers]:
        t.join(5)
    assert out == [1, 1, 1] and calls == [1]


def test_a_cycle_through_two_leader_tasks_raises_instead_of_hanging() -> None:
    @cached(LRUCache(100))
    async def f(k: str) -> Any:
        await asyncio.sleep(0)  # both tasks lead their key before either asks for the other
        return (k, await f("b" if k == "a" else "a"))

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(f(k)) for k in "ab"]
        _, pending = await asyncio.wait(tasks, timeout=5)
        for t in pending:
            t.cancel()
        assert not pending, "the two leader tasks deadlocked"
        return [t.exception() for t in tasks]

    errors = asyncio.run(main())
    assert all(isinstance(e, ReentrantCallError) for e in errors), errors


# -- a child task's mark names the flight, not the key -----------------------------


def test_a_task_started_by_a_finished_call_may_wait_for_a_new_call_of_its_key() -> None:
    started: list[asyncio.Task[Any]] = []
    events: dict[str, asyncio.Event] = {}

    @cached(None)  # every call computes (single-flight only)
    async def f(k: str) -> str:
        if not started:
            started.append(asyncio.create_task(refresher()))
        await asyncio.sleep(0)
        return k

    async def refresher() -> Any:
        await events["first_done"].wait()  # the call that started this task is over
        other = asyncio.create_task(f("x"))  # an unrelated caller starts a new flight
        await asyncio.sleep(0)
        result = await f("x")  # joins it: nothing re-entered
        await other
        return result

    async def main() -> Any:
        events["first_done"] = asyncio.Event()
        assert await f("x") == "x"
        events["first_done"].set()
        return await asyncio.wait_for(started[0], 5)

    assert asyncio.run(main()) == "x"


# -- a leader interrupted by a BaseException -------------------------------------------


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_a_leader_interrupt_is_not_raised_in_the_waiting_threads(interrupt: type) -> None:
    inside = threading.Event()
    followers_waiting = threading.Event()
    calls: list[str] = []

    @cached(LRUCache(10))
    def load(k: int) -> int:
        calls.append(threading.current_thread().name)
        if threading.current_thread().name == "leader":
            inside.set()
            followers_waiting.wait(5)
            raise interrupt()
        return k

    out: list[Any] = []

    def follower() -> None:
        try:
            out.append(load(1))
        except BaseException as exc:  # the bug: a KeyboardInterrupt copy landed here
            out.append(type(exc))

    def leader() -> None:
        try:
            load(1)
        except BaseException as exc:
            out.append(("leader", type(exc)))

    lead = threading.Thread(target=leader, name="leader", daemon=True)
    lead.start()
    assert inside.wait(5)
    threads = [threading.Thread(target=follower, name=f"w{i}", daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    # Let the followers block on the flight: poll until each is waiting on it.
    for _ in range(500):
        if _waiting_threads() >= 3:
            break
        threading.Event().wait(0.01)
    followers_waiting.set()
    for t in [lead, *threads]:
        t.join(5)
    assert ("leader", interrupt) in out
    assert sorted(x for x in out if x == 1) == [1, 1, 1]  # a follower took over the call
    assert calls[0] == "leader" and len(calls) == 2  # and the others shared its result


def _waiting_threads() -> int:
    from scalekit.caching import decorators

    return len(decorators._WAITING)


# -- a call that hangs ---------------------------------------------------------------


def test_async_a_hung_call_is_cancelled_when_its_last_caller_leaves() -> None:
    hung = True
    cancelled: list[int] = []

    @cached(LRUCache(10))
    async def load(k: int) -> int:
        if hung:
            try:
                await asyncio.Event().wait()  # a backend call without a timeout
            except asyncio.CancelledError:
                cancelled.append(k)
                raise
        return k

    async def main() -> int:
        nonlocal hung
        for _ in range(3):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(load(1), 0.01)
        hung = False  # the backend recovered
        return await asyncio.wait_for(load(1), 5)

    assert asyncio.run(main()) == 1
    assert cancelled == [1, 1, 1]  # each abandoned call was cancelled, none is left running


def test_async_cache_clear_forgets_a_call_in_progress() -> None:
    hung = True
    events: dict[str, asyncio.Event] = {}

    @cached(LRUCache(10))
    async def load(k: int) -> int:
        if hung:
            events["entered"].set()
            await events["gate"].wait()
        return k

    async def main() -> None:
        nonlocal hung
        events.update(gate=asyncio.Event(), entered=asyncio.Event())
        first = asyncio.create_task(load(1))
        await asyncio.wait_for(events["entered"].wait(), 5)
        hung = False
        load.cache_clear()
        assert await asyncio.wait_for(load(1), 5) == 1  # a new call, not the hung one
        assert not first.done()  # the caller still waiting keeps its own call
        events["gate"].set()
        assert await asyncio.wait_for(first, 5) == 1

    asyncio.run(main())


def test_async_a_call_started_before_cache_clear_does_not_store_its_stale_value() -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()
    calls: list[str] = []

    @cached(LRUCache(10))
    async def load(k: int) -> str:
        calls.append("call")
        if len(calls) == 1:
            entered.set()
            await gate.wait()
            return "old"
        return "new"

    async def main() -> None:
        first = asyncio.create_task(load(1))
        await asyncio.wait_for(entered.wait(), 5)
        load.cache_clear()
        assert await asyncio.wait_for(load(1), 5) == "new"
        gate.set()
        assert await asyncio.wait_for(first, 5) == "old"  # its own caller gets its value
        assert await load(1) == "new"  # but the cache keeps the fresh one
        assert calls == ["call", "call"]

    asyncio.run(main())


@pytest.mark.parametrize("lock", [None, threading.Lock()], ids=["unlocked", "locked"])
def test_cache_clear_forgets_a_thread_call_in_progress(lock: Any) -> None:
    inside = threading.Event()
    release = threading.Event()

    @cached(LRUCache(10), lock=lock)
    def load(k: int) -> str:
        if threading.current_thread().name == "hung":
            inside.set()
            release.wait(5)
            return "old"
        return "new"

    out: list[str] = []
    hung = threading.Thread(target=lambda: out.append(load(1)), name="hung", daemon=True)
    hung.start()
    assert inside.wait(5)
    load.cache_clear()
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(load(1)), daemon=True)
    t.start()
    t.join(5)
    assert result == ["new"]  # computed afresh instead of waiting for the hung call
    release.set()
    hung.join(5)
    assert out == ["old"]
    # The call started before the clear does not store its stale value over the fresh one.
    assert load(1) == "new"
    assert load.cache[(1,)] == "new"


def test_the_redis_tier_single_flight_keeps_a_leader_interrupt_in_its_thread() -> None:
    from scalekit.caching._single_flight import SingleFlight

    flights = SingleFlight()
    inside = threading.Event()
    release = threading.Event()

    def interrupted() -> Any:
        inside.set()
        release.wait(5)
        raise KeyboardInterrupt

    out: list[Any] = []

    def leader() -> None:
        try:
            flights.run("k", interrupted, 5.0, lambda: TimeoutError("waited"))
        except BaseException as exc:
            out.append(("leader", type(exc)))

    def follower() -> None:
        try:
            out.append(flights.run("k", lambda: "loaded", 5.0, lambda: TimeoutError("waited")))
        except BaseException as exc:
            out.append(type(exc))

    lead = threading.Thread(target=leader, daemon=True)
    lead.start()
    assert inside.wait(5)
    followers = [threading.Thread(target=follower, daemon=True) for _ in range(2)]
    for t in followers:
        t.start()
    for _ in range(500):  # until both wait for the leader's flight
        if sum(_waits_in_single_flight(t) for t in followers) == 2:
            break
        threading.Event().wait(0.01)
    release.set()
    for t in [lead, *followers]:
        t.join(5)
    assert sorted(map(str, out)) == sorted(
        map(str, [("leader", KeyboardInterrupt), "loaded", "loaded"])
    )


def _waits_in_single_flight(thread: threading.Thread) -> bool:
    return _waits_on_a_flight(thread, "_single_flight.py")


# -- cachedmethod: cache_clear() during a call ----------------------------------------


class _Loader:
    """A `cachedmethod` whose first call (a thread named "hung", or the first task) blocks."""

    def __init__(self, cache: Any = None) -> None:
        self.cache = LRUCache(10) if cache is None else cache
        self.inside = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []
        self.lock = threading.Lock()

    @cachedmethod(lambda self: self.cache, lock=lambda self: self.lock)
    def load(self, k: int) -> str:
        self.calls.append(threading.current_thread().name)
        if threading.current_thread().name == "hung":
            self.inside.set()
            self.release.wait(5)
            return "old"
        return "new"


def test_cachedmethod_cache_clear_forgets_a_thread_call_in_progress() -> None:
    obj = _Loader()
    out: list[str] = []
    hung = threading.Thread(target=lambda: out.append(obj.load(1)), name="hung", daemon=True)
    hung.start()
    assert obj.inside.wait(5)
    obj.load.cache_clear()
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(obj.load(1)), name="fresh", daemon=True)
    t.start()
    t.join(5)
    assert result == ["new"]  # computed afresh instead of waiting for the hung call
    obj.release.set()
    hung.join(5)
    assert out == ["old"]  # the call started before the clear returns its own value
    # ... but does not store it over the fresh one.
    assert obj.load(1) == "new"
    assert obj.cache[(1,)] == "new"
    assert obj.calls == ["hung", "fresh"]


def test_cachedmethod_cache_clear_through_one_instance_stops_the_stale_store_of_another() -> None:
    # Two instances share one cache: clearing it through either one must not let a
    # call of the other, started before the clear, store its value afterwards.
    shared: LRUCache[Any, str] = LRUCache(10)
    a, b = _Loader(shared), _Loader(shared)
    out: list[str] = []
    hung = threading.Thread(target=lambda: out.append(b.load(1)), name="hung", daemon=True)
    hung.start()
    assert b.inside.wait(5)
    a.load.cache_clear()
    assert a.load(1) == "new"
    b.release.set()
    hung.join(5)
    assert out == ["old"]
    assert shared[(1,)] == "new"
    assert b.load(1) == "new"


def test_async_cachedmethod_cache_clear_forgets_a_call_in_progress_and_its_stale_value() -> None:
    class Loader:
        def __init__(self) -> None:
            self.cache: LRUCache[Any, str] = LRUCache(10)
            self.gate = asyncio.Event()
            self.entered = asyncio.Event()
            self.calls = 0

        @cachedmethod(lambda self: self.cache)
        async def load(self, k: int) -> str:
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                await self.gate.wait()
                return "old"
            return "new"

    async def main() -> None:
        obj = Loader()
        first = asyncio.create_task(obj.load(1))
        await asyncio.wait_for(obj.entered.wait(), 5)
        obj.load.cache_clear()
        # A new call, not a wait for the one in progress (which would never end here).
        assert await asyncio.wait_for(obj.load(1), 5) == "new"
        assert not first.done()
        obj.gate.set()
        assert await asyncio.wait_for(first, 5) == "old"  # its own caller gets its value
        assert await obj.load(1) == "new"  # but the cache keeps the fresh one
        assert obj.cache[(1,)] == "new"
        assert obj.calls == 2

    asyncio.run(main())
