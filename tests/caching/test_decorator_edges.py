"""`cached` behaviours the broad suites reached without checking (each found by a surviving mutant).

`scripts/mutation` runs mutmut over the pure cache modules; a mutant that
changed one of these behaviours and still passed every test is what each
test here now fails on. Tasks and threads are bounded by timeouts.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import re
import sys
import threading
from typing import Any

import cachetools
import pytest

from scalekit.caching import (
    CacheInfo,
    FIFOCache,
    LRUCache,
    ReentrantCallError,
    cached,
    cachedmethod,
    hashkey,
)
from scalekit.caching import func as func_decorators
from scalekit.exceptions import ArgumentTypeError, InvalidStateError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"cache": 42},
            "cache must be a mutable mapping (a cache or a dict, with [] and []=) or None, "
            "got int: 42; expected for example LRUCache(maxsize=128)",
        ),
        (
            {"cache": {}, "key": 5},
            "key must be callable, got int: 5; "
            "expected a function of the call's arguments, such as hashkey",
        ),
        (
            {"cache": {}, "lock": 5},
            "lock must be None or a context manager, got int: 5; "
            "expected for example threading.Lock()",
        ),
        (
            {"cache": {}, "condition": 5},
            "condition must be None or a context manager, got int: 5; "
            "expected for example threading.Lock() or threading.Condition()",
        ),
    ],
    ids=["cache", "key", "lock", "condition"],
)
def test_bad_decorator_arguments_are_named_with_their_value(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArgumentTypeError) as raised:
        cached(**kwargs)
    assert str(raised.value) == message


def test_a_bad_info_flag_is_named() -> None:
    with pytest.raises(ArgumentTypeError, match=r"^info must be True or False, got 'yes' \(str\)"):
        cached({}, info="yes")  # type: ignore[arg-type]


class _OnlyItems:
    """A mapping with only `[]` and `[]=`: no statistics of its own."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def __getitem__(self, k: Any) -> Any:
        return self.data[k]

    def __setitem__(self, k: Any, v: Any) -> None:
        self.data[k] = v

    def __len__(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        self.data.clear()


@pytest.mark.parametrize(
    "make",
    [dict, lambda: cachetools.LRUCache(5), lambda: cachetools.TTLCache(5, ttl=60), _OnlyItems],
    ids=["dict", "cachetools-lru", "cachetools-ttl", "only-items"],
)
def test_cache_info_counts_in_the_wrapper_when_the_cache_keeps_no_statistics(make: Any) -> None:
    # Zeros after real hits and misses would read as a 0 % hit ratio.
    f = cached(make())(lambda x: x)
    f(1), f(1), f(2)
    assert f.cache_info()[:2] == (1, 2)
    f.cache_clear()
    assert f.cache_info()[:2] == (0, 0)
    f(1), f(1)
    assert f.cache_info()[:2] == (1, 1)


def test_cache_info_of_cached_none_counts_every_call_as_a_miss() -> None:
    none = cached(None)(lambda x: x)
    none(1), none(1)
    assert none.cache_info() == CacheInfo(0, 2, None, 0)


def test_cache_info_over_a_mapping_reports_its_maxsize_and_currsize() -> None:
    plain: dict[Any, Any] = {}
    f = cached(plain)(lambda x: x)
    f(1), f(1), f(2)
    assert f.cache_info() == CacheInfo(1, 2, None, 2)
    weighted = cachetools.LRUCache(maxsize=100, getsizeof=len)
    g = cached(weighted)(lambda s: s * 3)
    g("ab")
    assert g.cache_info() == CacheInfo(0, 1, 100, 6)  # its currsize, not its len


def test_async_cache_info_counts_in_the_wrapper_over_a_dict() -> None:
    @cached({})
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        await f(1), await f(1), await f(2)

    asyncio.run(main())
    assert f.cache_info() == CacheInfo(1, 2, None, 2)


def test_cachedmethod_cache_info_counts_per_instance_when_the_cache_keeps_no_statistics() -> None:
    class Shop:
        def __init__(self) -> None:
            self.cache: dict[Any, Any] = {}

        @cachedmethod(lambda self: self.cache)
        def price(self, sku: str) -> int:
            return len(sku)

    a, b = Shop(), Shop()
    a.price("x"), a.price("x"), b.price("y")
    assert a.price.cache_info() == CacheInfo(1, 1, None, 1)
    assert b.price.cache_info() == CacheInfo(0, 1, None, 1)
    a.price.cache_clear()
    assert a.price.cache_info() == CacheInfo(0, 0, None, 0)


def test_cachedmethod_cache_info_refuses_to_guess_for_an_instance_it_cannot_count() -> None:
    class Slots:  # no __weakref__: no per-instance counters can be kept for it
        __slots__ = ("cache",)

        def __init__(self) -> None:
            self.cache: dict[Any, Any] = {}

        @cachedmethod(lambda self: self.cache)
        def price(self, sku: str) -> int:
            return len(sku)

    s = Slots()
    s.price("x"), s.price("x")
    with pytest.raises(InvalidStateError, match=r"cannot count .*Slots.*__weakref__.*dict"):
        s.price.cache_info()


def test_the_wrapper_exposes_its_key_function_and_names_a_partial() -> None:
    f = cached(LRUCache(4))(lambda x, y=0: x + y)
    assert f.cache_key(1, y=2) == hashkey(1, y=2)
    p = cached(LRUCache(4))(functools.partial(int, base=2))
    assert p.__qualname__ == "partial"


def test_a_fifo_cache_under_cached_keeps_insertion_order_on_hits() -> None:
    f = cached(FIFOCache(2))(lambda x: x)
    f(1), f(2), f(1)  # a hit on 1 does not make it newer
    f(3)
    assert sorted(f.cache) == [(2,), (3,)]


def test_reentry_errors_name_the_function_and_the_kind_of_wait() -> None:
    @cached(LRUCache(4), lock=threading.RLock())
    def spin(x: int) -> int:
        return spin(x)

    with pytest.raises(ReentrantCallError, match=r"spin called itself with the same key \(1,\)"):
        spin(1)

    @cached(LRUCache(4))
    async def aspin(x: int) -> int:
        return await aspin(x)

    with pytest.raises(ReentrantCallError, match=r"aspin called itself with the same key \(1,\)"):
        asyncio.run(aspin(1))


def test_an_async_cycle_through_two_tasks_says_it_would_never_end() -> None:
    entered = {"a": asyncio.Event, "b": asyncio.Event}
    events: dict[str, asyncio.Event] = {}

    @cached(LRUCache(4))
    async def f(k: str) -> Any:
        events[k].set()
        await events["b" if k == "a" else "a"].wait()
        return await f("b" if k == "a" else "a")

    async def main() -> list[Any]:
        events.update({k: maker() for k, maker in entered.items()})
        return await asyncio.wait_for(asyncio.gather(f("a"), f("b"), return_exceptions=True), 5)

    results = asyncio.run(main())
    assert all(isinstance(r, ReentrantCallError) for r in results), results
    message = str(next(r for r in results if "waiting would never end" in str(r)))
    assert re.search(
        r"f asked for key \('[ab]',\), whose call in progress is waiting for this caller", message
    )


def test_async_lock_and_info_are_used() -> None:
    class HeldLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()
            self.held = False

        def __enter__(self) -> None:
            self._lock.acquire()
            self.held = True

        def __exit__(self, *exc: object) -> None:
            self.held = False
            self._lock.release()

    lock = HeldLock()

    class Checked(LRUCache[Any, Any]):
        def __setitem__(self, key: Any, value: Any) -> None:
            assert lock.held, "cached wrote the cache without its lock"
            super().__setitem__(key, value)

    @cached(Checked(4), lock=lock, info=True)
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        assert await f(1) == 1 and await f(1) == 1

    asyncio.run(main())
    assert f.cache_info() == CacheInfo(1, 1, 4, 1)


def _loop_errors(main: Any) -> list[dict[str, Any]]:
    """Run *main* and collect what its loop reported to its exception handler."""
    errors: list[dict[str, Any]] = []

    async def runner() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        await main()
        gc.collect()  # a task never retrieved reports it when it is freed
        await asyncio.sleep(0)

    asyncio.run(runner())
    return errors


def test_async_calls_leave_nothing_to_the_loop_exception_handler() -> None:
    @cached(LRUCache(4))
    async def ok(x: int) -> int:
        return x

    @cached(LRUCache(4))
    async def hangs_then_fails(x: int) -> int:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("failed while cancelled")

    async def main() -> None:
        assert await ok(1) == 1
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(hangs_then_fails(1), 0.01)
        for _ in range(3):
            await asyncio.sleep(0)

    assert _loop_errors(main) == []


def test_async_no_task_is_left_after_the_calls() -> None:
    @cached(LRUCache(4))
    async def f(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main() -> None:
        assert await asyncio.gather(*(f(1) for _ in range(5)), f(2)) == [1] * 5 + [2]
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="needs Task.cancelling(): on 3.10 only the last caller leaving starts the callers over",
)
def test_async_callers_start_over_when_the_call_is_cancelled_by_something_else() -> None:
    attempts: list[int] = []

    @cached(LRUCache(4))
    async def f(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the call's own task, not any caller, is cancelled
            await asyncio.sleep(0)
        return x * 10

    async def main() -> list[int]:
        return await asyncio.wait_for(asyncio.gather(f(1), f(1)), 5)

    assert asyncio.run(main()) == [10, 10]
    assert attempts == [1, 1]


def test_async_cache_clear_twice_still_forgets_the_call_started_between() -> None:
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
        load.cache_clear()  # a first clear, before the call
        first = asyncio.create_task(load(1))
        await asyncio.wait_for(entered.wait(), 5)
        load.cache_clear()  # the second one, during it
        assert await asyncio.wait_for(load(1), 5) == "new"
        gate.set()
        assert await asyncio.wait_for(first, 5) == "old"
        assert load.cache[(1,)] == "new"

    asyncio.run(main())


def test_cache_clear_twice_still_forgets_the_thread_call_started_between() -> None:
    inside = threading.Event()
    release = threading.Event()

    @cached(LRUCache(10))
    def load(k: int) -> str:
        if threading.current_thread().name == "hung":
            inside.set()
            release.wait(5)
            return "old"
        return "new"

    load.cache_clear()
    out: list[str] = []
    hung = threading.Thread(target=lambda: out.append(load(1)), name="hung", daemon=True)
    hung.start()
    assert inside.wait(5)
    load.cache_clear()
    assert load(1) == "new"
    release.set()
    hung.join(5)
    assert out == ["old"] and load.cache[(1,)] == "new"


def test_sync_cachedmethod_flights_are_per_instance_and_per_key() -> None:
    from scalekit.caching import cachedmethod

    both_inside = threading.Barrier(3, timeout=5)

    class Service:
        def __init__(self, tag: str) -> None:
            self.tag = tag
            self.cache: LRUCache[Any, str] = LRUCache(8)

        @cachedmethod(lambda self: self.cache)
        def load(self, x: int) -> str:
            both_inside.wait()  # three calls in progress at once: none waits for another
            return f"{self.tag}:{x}"

    a, b = Service("a"), Service("b")
    out: dict[str, str] = {}
    calls = {"a1": (a, 1), "a2": (a, 2), "b1": (b, 1)}
    threads = [
        threading.Thread(target=lambda n=n, o=o, x=x: out.__setitem__(n, o.load(x)), daemon=True)
        for n, (o, x) in calls.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert out == {"a1": "a:1", "a2": "a:2", "b1": "b:1"}


def test_cachedmethod_names_a_bad_key() -> None:
    from scalekit.caching import cachedmethod

    with pytest.raises(ArgumentTypeError) as raised:
        cachedmethod(lambda self: {}, key=5)  # type: ignore[arg-type]
    assert str(raised.value) == (
        "key must be callable, got int: 5; "
        "expected a function of the instance and the call's arguments"
    )


def test_functools_style_decorators_hold_a_reentrant_lock() -> None:
    from scalekit.caching import lru_cache

    f = lru_cache(maxsize=4)(lambda x: x)
    lock = f.cache_lock
    assert lock is not None
    with lock, lock:  # reentrant: a key whose __eq__ calls the function does not deadlock
        assert f(1) == 1


@pytest.mark.parametrize("typed", [1, 0, None, "yes", [], 2.5])
@pytest.mark.parametrize(
    "name",
    [
        "lru_cache",
        "fifo_cache",
        "lfu_cache",
        "rr_cache",
        "ttl_cache",
        "sieve_cache",
        "s3fifo_cache",
        "tinylfu_cache",
    ],
)
def test_functools_style_decorators_take_typed_by_its_truth_value_as_functools(
    name: str, typed: Any
) -> None:
    # functools.lru_cache and cachetools.func accept any typed, keyed by its truth
    # value, and report it in cache_parameters() as it was given.
    f = getattr(func_decorators, name)(maxsize=3, typed=typed)(lambda x: x)
    reference = functools.lru_cache(maxsize=3, typed=typed)(lambda x: x)
    assert f.cache_parameters() == reference.cache_parameters() == {"maxsize": 3, "typed": typed}
    f(1), f(1.0)
    assert f.cache_info()[:2] == ((0, 2) if typed else (1, 1))
