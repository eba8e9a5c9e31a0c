"""What `cached` and `cachedmethod` promise beyond the common case.

Subclasses whose `__getitem__` (or `__missing__`) does its own work are read
through it, as cachetools reads them; a method is callable through its class;
every single-flight waiter raises its own exception; async re-entry through a
child task fails fast; bad decorator arguments are refused when decorating.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any

import cachetools
import pytest

import scalekit.caching as sk
from scalekit.exceptions import ArgumentTypeError, ReentrantCallError

from .test_cached import _parked_in_flight, _waits_on_a_flight

POLICIES: list[Any] = [
    sk.LRUCache,
    sk.FIFOCache,
    sk.LFUCache,
    sk.RRCache,
    sk.SIEVECache,
    sk.S3FIFOCache,
    sk.TinyLFUCache,
    sk.TTLCache,
    sk.TLRUCache,
]

PEERS: list[Any] = [
    (sk.LRUCache, cachetools.LRUCache),
    (sk.FIFOCache, cachetools.FIFOCache),
    (sk.LFUCache, cachetools.LFUCache),
]


def _make(cls: Any, maxsize: int) -> Any:
    if issubclass(cls, sk.TLRUCache):
        return cls(maxsize, lambda k, v, now: now + 60)
    if issubclass(cls, sk.TTLCache):
        return cls(maxsize, ttl=60)
    return cls(maxsize)


def _counting(base: Any) -> Any:
    """A subclass of *base* whose `__getitem__` counts the reads and transforms the value."""

    class Counting(base):  # type: ignore[misc,valid-type]
        reads = 0

        def __getitem__(self, key: Any) -> Any:
            type(self).reads += 1
            return ("seen", super().__getitem__(key))

    return Counting


# -- 1. reads go through a subclass's own __getitem__ ---------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_get_and_pop_read_through_an_overridden_getitem(policy: Any) -> None:
    cache = _make(_counting(policy), 4)
    cache["a"] = 1
    cls = type(cache)
    assert cache.get("a") == ("seen", 1) and cls.reads == 1
    assert cache.get("zz", "dflt") == "dflt" and cls.reads == 1  # absent: not read, as cachetools
    assert cache.pop("a") == ("seen", 1) and cls.reads == 2 and "a" not in cache
    assert cache.pop("a", None) is None and cls.reads == 2
    cache["b"] = 2
    assert cache.setdefault("b", 0) == ("seen", 2) and cls.reads == 3


@pytest.mark.parametrize(("ours", "theirs"), PEERS)
def test_reads_through_getitem_match_cachetools(ours: Any, theirs: Any) -> None:
    seen = []
    for base in (ours, theirs):
        cache = _counting(base)(4)
        cache["a"] = 1
        got = [cache.get("a"), cache.get("b"), cache.pop("a"), cache.pop("a", 0)]
        cache["c"] = 3
        got.append(cache.setdefault("c", 9))
        got.append(type(cache).reads)
        seen.append(got)
    assert seen[0] == seen[1]


@pytest.mark.parametrize("policy", POLICIES)
def test_pop_through_an_overridden_getitem_counts_no_hit(policy: Any) -> None:
    cache = _make(_counting(policy), 4)
    cache["a"] = 1
    cache.pop("a")
    assert cache.stats().hits == 0 and cache.stats().misses == 0


@pytest.mark.parametrize("policy", [sk.LRUCache, sk.FIFOCache, sk.LFUCache])
def test_unmodified_classes_keep_their_fast_reads(policy: Any) -> None:
    # The override is detected once per class: the library's own classes keep
    # the get they define, and only a subclass overriding __getitem__ is rerouted.
    sub = type("Plain", (policy,), {})
    assert sub.get is policy.get and sub.pop is policy.pop
    counting = _counting(policy)
    assert counting.get is not policy.get


def _square_through(decorate: Any, cache: Any) -> tuple[Any, ...]:
    calls: list[int] = []

    @decorate(cache)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    return square(3), square(3), square(3), calls, type(cache).reads


@pytest.mark.parametrize(("ours", "theirs"), [*PEERS, (sk.TTLCache, None)])
def test_cached_hits_read_through_an_overridden_getitem(ours: Any, theirs: Any) -> None:
    got = _square_through(sk.cached, _make(_counting(ours), 4))
    # The miss reads too: cachetools' `cached` looks up with `cache[key]`.
    assert got == (9, ("seen", 9), ("seen", 9), [3], 3)
    if theirs is not None:
        assert got == _square_through(cachetools.cached, _make(_counting(theirs), 4))


def _defaulting(base: Any) -> Any:
    class Defaulting(base):  # type: ignore[misc,valid-type]
        def __missing__(self, key: Any) -> Any:
            self[key] = "from missing"
            return "from missing"

    return Defaulting(4)


def _ident_through(decorate: Any, cache: Any) -> tuple[Any, ...]:
    calls: list[int] = []

    @decorate(cache)
    def ident(x: int) -> int:
        calls.append(x)
        return x

    return ident(1), ident(1), calls


def test_cached_calls_missing_on_a_miss_as_cachetools_does() -> None:
    ours = _ident_through(sk.cached, _defaulting(sk.LRUCache))
    assert ours == _ident_through(cachetools.cached, _defaulting(cachetools.LRUCache))
    assert ours == ("from missing", "from missing", [])


# -- 2. a cached method called through its class ------------------------------------


def test_cachedmethod_through_the_class() -> None:
    class Prices:
        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, int] = sk.LRUCache(10)
            self.calls = 0

        @sk.cachedmethod(lambda self: self.cache)
        def price(self, sku: str) -> int:
            self.calls += 1
            return len(sku)

    shop = Prices()
    assert Prices.price(shop, "abc") == 3 and shop.price("abc") == 3 and shop.calls == 1
    assert Prices.price(shop, sku="abcd") == 4 and shop.calls == 2
    other = Prices()
    assert Prices.price(other, "abc") == 3 and other.calls == 1  # its own cache
    assert Prices.price.__name__ == "price"  # type: ignore[attr-defined]


def test_async_cachedmethod_through_the_class() -> None:
    class Prices:
        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, int] = sk.LRUCache(10)

        @sk.cachedmethod(lambda self: self.cache)
        async def price(self, sku: str) -> int:
            return len(sku)

    shop = Prices()
    assert asyncio.run(Prices.price(shop, "ab")) == 2
    assert len(shop.cache) == 1


# -- 3. every waiter raises its own exception ----------------------------------------


class TwoArgs(Exception):
    """Cannot be rebuilt from `.args`: `__init__` takes two values, stores one."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class NewNeedsArgs(Exception):
    """Its `__new__` refuses the `.args` it ends up with."""

    def __new__(cls, code: int, detail: str) -> NewNeedsArgs:
        return super().__new__(cls, code, detail)

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


class Formats(Exception):
    """Rebuilt from `.args` it formats them again: `Formats("code 503")` says "code code 503"."""

    def __init__(self, code: Any) -> None:
        super().__init__(f"code {code}")
        self.code = code


class RefusesCopy(Exception):
    def __copy__(self) -> RefusesCopy:
        raise TypeError("no copies")

    def __reduce__(self) -> Any:
        raise TypeError("no pickling")


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: TwoArgs(503, "down"),
        lambda: NewNeedsArgs(503, "down"),
        lambda: Formats(503),
        lambda: RefusesCopy("down"),
    ],
)
def test_each_waiter_gets_its_own_copy_of_an_exception_that_args_cannot_rebuild(
    make_error: Any,
) -> None:
    release = threading.Event()
    entered = threading.Event()

    @sk.cached(sk.LRUCache(10))
    def flaky(x: int) -> int:
        entered.set()
        assert release.wait(10)
        raise make_error()

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flaky(7)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    for _ in range(5000):
        if _parked_in_flight(threads) == 5:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 6 and len({id(e) for e in errors}) == 6
    (original,) = [e for e in errors if e.__cause__ is None]
    for error in errors:
        assert type(error) is type(original) and str(error) == str(original)
        assert error.args == original.args
        assert getattr(error, "code", None) == getattr(original, "code", None)
        assert error is original or error.__cause__ is original
        frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
        assert frames.count("call") == 1, frames


def test_async_waiters_get_their_own_copy_of_an_exception_that_args_cannot_rebuild() -> None:
    @sk.cached(sk.LRUCache(10))
    async def flaky(x: int) -> int:
        await asyncio.sleep(0)
        raise TwoArgs(503, "down")

    async def main() -> list[BaseException]:
        return await asyncio.gather(*(flaky(1) for _ in range(4)), return_exceptions=True)

    errors = asyncio.run(main())
    assert len({id(e) for e in errors}) == 4
    (original,) = [e for e in errors if e.__cause__ is None]
    assert all(type(e) is TwoArgs and e.code == 503 for e in errors)  # type: ignore[union-attr]
    assert all(e is original or e.__cause__ is original for e in errors)


# -- 5. any mutable mapping, cache_condition, cachedmethod's types --------------------


class Minimal(MutableMapping[Any, Any]):
    """A mapping with only the abstract methods: `get` is not looked up."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.reads = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    get = None  # type: ignore[assignment]


class OnlyItems:
    """Not even a MutableMapping: what cachetools' `cached` needs, `[]` and `[]=`."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def clear(self) -> None:
        self.data.clear()

    def __len__(self) -> int:
        return len(self.data)


@pytest.mark.parametrize("make", [Minimal, OnlyItems])
@pytest.mark.parametrize("lock", [None, threading.Lock()])
def test_cached_needs_only_getitem_and_setitem(make: Any, lock: Any) -> None:
    cache = make()
    calls: list[int] = []

    @sk.cached(cache, lock=lock)
    def ident(x: int) -> int:
        calls.append(x)
        return x

    assert ident(1) == 1 and ident(1) == 1 and ident(2) == 2 and calls == [1, 2]
    assert len(cache) == 2


def test_async_cached_needs_only_getitem_and_setitem() -> None:
    cache = OnlyItems()
    calls: list[int] = []

    @sk.cached(cache)
    async def ident(x: int) -> int:
        calls.append(x)
        return x

    async def main() -> None:
        assert await ident(1) == 1 and await ident(1) == 1

    asyncio.run(main())
    assert calls == [1]


def test_wrappers_carry_cache_condition_as_cachetools() -> None:
    cond = threading.Condition()

    @sk.cached(sk.LRUCache(4), condition=cond)
    def f(x: int) -> int:
        return x

    @sk.cached(sk.LRUCache(4))
    def g(x: int) -> int:
        return x

    assert f.cache_condition is cond and f.cache_lock is cond
    assert g.cache_condition is None

    class Holder:
        cond = threading.Condition()

        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, int] = sk.LRUCache(4)

        @sk.cachedmethod(lambda self: self.cache, condition=lambda self: self.cond)
        def m(self, x: int) -> int:
            return x

    h = Holder()
    assert h.m.cache_condition is Holder.cond and h.m(1) == 1


# -- 6. async re-entry through a child task -------------------------------------------


def test_async_reentry_through_a_child_task_raises() -> None:
    @sk.cached(sk.LRUCache(10))
    async def load(x: int) -> int:
        child = asyncio.create_task(load(x))
        return await child

    async def main() -> None:
        with pytest.raises(ReentrantCallError, match=r"\(1,\)"):
            await asyncio.wait_for(load(1), timeout=5)

    asyncio.run(main())


def test_async_cycle_through_two_functions_and_a_child_task_raises() -> None:
    @sk.cached(sk.LRUCache(10))
    async def outer(x: int) -> int:
        return await asyncio.create_task(inner(x))

    @sk.cached(sk.LRUCache(10))
    async def inner(x: int) -> int:
        return await asyncio.ensure_future(outer(x))

    async def main() -> None:
        with pytest.raises(ReentrantCallError):
            await asyncio.wait_for(outer(1), timeout=5)

    asyncio.run(main())


def test_async_child_task_on_another_key_and_concurrent_callers_still_share() -> None:
    calls: list[int] = []

    @sk.cached(sk.LRUCache(10))
    async def load(x: int) -> int:
        calls.append(x)
        if x > 0:
            return await asyncio.create_task(load(x - 1)) + 1
        await asyncio.sleep(0)
        return 0

    async def main() -> list[int]:
        return await asyncio.gather(load(2), load(2), load(1))

    assert asyncio.run(main()) == [2, 2, 1]
    assert sorted(calls) == [0, 1, 2]


def test_async_cachedmethod_reentry_through_a_child_task_raises() -> None:
    class Loader:
        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, int] = sk.LRUCache(4)

        @sk.cachedmethod(lambda self: self.cache)
        async def load(self, x: int) -> int:
            return await asyncio.create_task(self.load(x))

    async def main() -> None:
        with pytest.raises(ReentrantCallError):
            await asyncio.wait_for(Loader().load(1), timeout=5)

    asyncio.run(main())


# -- 7. bad arguments are refused when decorating -------------------------------------


class EnterOnly:
    """Half a context manager: `__enter__` without `__exit__`."""

    def __enter__(self) -> None:
        return None


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"cache": 42}, ("cache", "42")),
        ({"cache": sk.LRUCache(2), "key": 5}, ("key", "5")),
        ({"cache": sk.LRUCache(2), "lock": 5}, ("lock", "5")),
        ({"cache": sk.LRUCache(2), "condition": "c"}, ("condition", "'c'", "Condition()")),
        ({"cache": "abc"}, ("cache", "str", "[]=")),  # reads, cannot be written
        ({"cache": None, "lock": EnterOnly()}, ("lock", "EnterOnly", "context manager")),
    ],
)
def test_cached_refuses_bad_arguments_when_decorating(kwargs: Any, names: Any) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        sk.cached(**kwargs)
    message = str(caught.value)
    assert all(name in message for name in names) and "expected" in message
    assert isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"cache": 42}, ("cache", "42")),
        ({"cache": sk.LRUCache(2)}, ("cache", "LRUCache")),
        ({"cache": lambda s: s.c, "key": 5}, ("key", "5")),
        ({"cache": lambda s: s.c, "lock": 5}, ("lock", "5")),
        ({"cache": lambda s: s.c, "condition": threading.Lock()}, ("condition", "lock")),
    ],
)
def test_cachedmethod_refuses_bad_arguments_when_decorating(kwargs: Any, names: Any) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        sk.cachedmethod(**kwargs)
    message = str(caught.value)
    assert all(name in message for name in names) and "expected" in message


def test_good_arguments_are_accepted() -> None:
    sk.cached(None)
    sk.cached({}, key=sk.hashkey, lock=threading.RLock(), condition=threading.Condition())
    sk.cachedmethod(lambda s: None, lock=lambda s: None, condition=lambda s: None)


# -- 8. ReentrantCallError lives in scalekit.exceptions -------------------------------


def test_reentrant_call_error_is_one_class_under_both_paths() -> None:
    import scalekit.caching.decorators as decorators
    import scalekit.exceptions as exceptions

    assert decorators.ReentrantCallError is exceptions.ReentrantCallError
    assert sk.ReentrantCallError is exceptions.ReentrantCallError
    assert "ReentrantCallError" in exceptions.__all__
    assert issubclass(exceptions.ReentrantCallError, (exceptions.ScaleKitError, RecursionError))


def test_the_redis_tier_single_flight_gives_each_follower_its_own_exception() -> None:
    from scalekit.caching._single_flight import SingleFlight

    flight = SingleFlight()
    release = threading.Event()
    entered = threading.Event()

    driver = ConnectionError("connection refused")

    def load() -> Any:
        entered.set()
        assert release.wait(10)
        raise TwoArgs(503, "down") from driver

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flight.run("k", load, float("inf"), lambda: TimeoutError("waited"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    for _ in range(5000):
        if _parked_in_single_flight(threads) == 3:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    assert len({id(e) for e in errors}) == 4
    (original,) = [e for e in errors if e.__context__ is None]
    assert all(type(e) is TwoArgs and e.args == original.args for e in errors)
    # The driver's exception stays each one's cause, the leader's is the context.
    assert all(e.__cause__ is driver for e in errors)
    assert all(e is original or e.__context__ is original for e in errors)


def _parked_in_single_flight(threads: list[threading.Thread]) -> int:
    """How many of *threads* wait in `SingleFlight.run` for a leader (not leading it)."""
    return sum(_waits_on_a_flight(t, "_single_flight.py") for t in threads)


def test_cache_info_by_default_reports_the_cache_own_statistics() -> None:
    # Without info=True the wrapper counts nothing itself: lookups made
    # directly on the cache show in cache_info() too.
    cache: sk.LRUCache[Any, int] = sk.LRUCache(4)

    @sk.cached(cache)
    def ident(x: int) -> int:
        return x

    ident(1), ident(1)
    cache.get("absent"), cache.get(sk.hashkey(1))
    info = ident.cache_info()
    assert (info.hits, info.misses) == (2, 2)


@pytest.mark.parametrize("policy", POLICIES)
def test_an_absent_key_through_get_is_a_miss_the_policy_sees(policy: Any) -> None:
    # A subclass overriding __getitem__ changes how present keys read, not
    # what a miss does: the same miss count and, for TinyLFU, the same
    # lookups replayed through its shadow LRU (a small cache samples every key).
    plain, counting = _make(policy, 4), _make(_counting(policy), 4)
    for cache in (plain, counting):
        cache["a"] = 1
        for _ in range(3):
            cache.get("b")
    assert counting.stats().misses == plain.stats().misses == 3
    if isinstance(plain, sk.TinyLFUCache):
        assert counting._sampled == plain._sampled == 3


@pytest.mark.parametrize(
    "policy", [p for p in POLICIES if p is not sk.TinyLFUCache], ids=lambda p: p.__name__
)
def test_eviction_goes_through_an_overridden_delitem(policy: Any) -> None:
    # cachetools evicts with popitem(), which deletes through `del self[key]`:
    # a subclass hooking __delitem__ sees every eviction.
    deleted: list[Any] = []

    class Observed(policy):  # type: ignore[misc,valid-type]
        def __delitem__(self, key: Any) -> None:
            deleted.append(key)
            super().__delitem__(key)

    cache = _make(Observed, 3)
    for i in range(10):
        cache[i] = i
    assert len(deleted) == 7 and len(cache) == 3
    assert set(deleted).isdisjoint(set(cache))


def test_an_lru_subclass_with_its_own_get_still_refreshes_recency_under_cached() -> None:
    # cachetools' `cached` reads with `[]`, never `get`: a subclass's own get
    # changes nothing, and a hit still makes the entry the most recent.
    class Logged(sk.LRUCache[Any, Any]):
        def get(self, key: Any, default: Any = None) -> Any:
            return super().get(key, default)

    @sk.cached(Logged(2))
    def ident(x: int) -> int:
        return x

    ident(1), ident(2), ident(1), ident(3)  # the hit on 1 makes 2 the victim
    assert sk.hashkey(1) in ident.cache and sk.hashkey(2) not in ident.cache


def test_a_waiter_copy_keeps_the_context_the_original_was_raised_in() -> None:
    release = threading.Event()
    entered = threading.Event()

    @sk.cached(sk.LRUCache(10))
    def flaky(x: int) -> int:
        entered.set()
        assert release.wait(10)
        try:
            raise KeyError("while loading")
        except KeyError:
            raise TwoArgs(503, "down")  # noqa: B904 (the implicit context is the point)

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flaky(1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    for _ in range(5000):
        if _parked_in_flight(threads) == 2:
            break
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join(10)
    (original,) = [e for e in errors if e.__cause__ is None]
    assert isinstance(original.__context__, KeyError)
    assert all(e.__context__ is original.__context__ for e in errors)


def test_cachedmethod_defaults_condition_as_lock_info_off_and_none_cache() -> None:
    class Holder:
        cond = threading.Condition()

        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, int] = sk.LRUCache(4)
            self.calls = 0

        @sk.cachedmethod(lambda self: self.cache, condition=lambda self: self.cond)
        def m(self, x: int) -> int:
            return x

        @sk.cachedmethod(lambda self: None)
        def uncached(self, x: int) -> int:
            self.calls += 1
            return x

    h = Holder()
    # As cachetools: without a lock, the condition is the lock.
    assert h.m.cache_lock is Holder.cond
    # Without info=True, cache_info() reports the instance cache's own statistics.
    h.m(1), h.m(1)
    h.cache.get("absent")
    assert (h.m.cache_info().hits, h.m.cache_info().misses) == (1, 2)
    # A cache function returning None: nothing is cached, every call runs.
    assert h.uncached(3) == 3 and h.uncached(3) == 3 and h.calls == 2


def test_cachedmethod_that_is_not_the_outermost_decorator_is_refused_on_the_call() -> None:
    def passthrough(method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return wrapper

    class Meta(type):
        @sk.cachedmethod(lambda cls: cls.registry)
        def lookup(cls, name: str) -> str:
            return name.upper()

    class Priced(metaclass=Meta):
        registry: dict[Any, Any] = {}

        @classmethod
        @sk.cachedmethod(lambda cls: {})
        def for_class(cls, x: int) -> int:
            return x

        @passthrough
        @sk.cachedmethod(lambda self: {})
        def inner(self, x: int) -> int:
            return x

    calls = (lambda: Priced.for_class(1), lambda: Priced().for_class(1), lambda: Priced().inner(1))
    for call in calls:
        with pytest.raises(ArgumentTypeError, match=r"outermost decorator.*class method"):
            call()
    # A metaclass's cachedmethod read on a class binds to the class, as a method does.
    assert (Priced.lookup("a"), Priced.lookup("a"), Priced.registry) == ("A", "A", {("a",): "A"})
