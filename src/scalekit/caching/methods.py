"""`cachedmethod`: memoize a method in a cache that each instance owns."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from ..exceptions import ArgumentTypeError, InvalidStateError
from .base import MISSING
from .decorators import (
    AsyncFlights,
    CacheInfo,
    Call,
    Counters,
    SyncFlights,
    WeakIdentityMap,
    check_callable,
    clear,
    counts_itself,
    discard,
    epoch_of,
    make_info,
    reader,
    recheck,
    store,
)
from .keys import methodkey

__all__ = ["BoundCachedMethod", "CachedMethod", "cachedmethod"]

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class BoundCachedMethod(Protocol[P, R_co]):
    """A method decorated with [cachedmethod][scalekit.caching.cachedmethod], bound to an instance.

    Called as the method is; its cache attributes are the instance's, so
    `obj.method.cache_info()`, `obj.method.cache_clear()` and
    `obj.method.cache_invalidate(...)` type-check.
    """

    @property
    def cache(self) -> MutableMapping[Any, Any] | None:
        """The instance's cache."""
        ...

    @property
    def cache_lock(self) -> AbstractContextManager[Any] | None:
        """The lock guarding the instance's cache, if any."""
        ...

    @property
    def cache_condition(self) -> AbstractContextManager[Any] | None:
        """The instance's condition, if one was given."""
        ...

    @property
    def __self__(self) -> Any:
        """The instance it is bound to."""
        ...

    @property
    def __func__(self) -> CachedMethod[Any, P, R_co]:
        """The `cachedmethod` descriptor in the class."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def cache_key(self, *args: Any, **kwargs: Any) -> Hashable:
        """The key a call with these arguments uses."""
        ...

    def cache_info(self) -> CacheInfo:
        """Hits, misses, maxsize and currsize of the instance's cache."""
        ...

    def cache_clear(self) -> None:
        """Empty the instance's cache, reset its statistics and forget the calls in progress."""
        ...

    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Remove the entry of a call with these arguments; stop its calls in progress storing.

        Returns:
            Whether the instance's cache held an entry for the key.
        """
        ...


def cachedmethod(
    cache: Callable[[Any], MutableMapping[Any, Any] | None],
    key: Callable[..., Hashable] = methodkey,
    lock: Callable[[Any], AbstractContextManager[Any] | None] | None = None,
    condition: Callable[[Any], AbstractContextManager[Any] | None] | None = None,
    info: bool = False,
) -> Callable[[Callable[Concatenate[S, P], R]], CachedMethod[S, P, R]]:
    """Memoize a method in a per-instance cache; call-compatible with `cachetools.cachedmethod`.

    *cache* is a function of the instance returning its cache (for example
    `lambda self: self._cache`), so each instance has its own entries and
    the key leaves `self` out (`methodkey`): no instance is kept alive by
    the decorator, unlike `cached` on a method, which keys on `self`.
    Single-flight, re-entry detection and asyncio support are those of
    [cached][scalekit.caching.cached]. `obj.method.cache_info()`,
    `obj.method.cache_clear()` and `obj.method.cache_invalidate(...)` work
    on that instance's cache.

    ```pycon
    >>> from scalekit.caching import LRUCache
    >>> class Prices:
    ...     def __init__(self):
    ...         self.cache = LRUCache(maxsize=100)
    ...     @cachedmethod(lambda self: self.cache)
    ...     def price(self, sku):
    ...         return len(sku) * 10
    >>> shop = Prices()
    >>> shop.price("abc"), shop.price("abc"), shop.price.cache_info().hits
    (30, 30, 1)

    ```

    Args:
        cache: returns the instance's cache (`None`: no caching, single-flight only).
        key: builds the key from `self` and the call's arguments (default `methodkey`).
        lock: returns the lock guarding the instance's cache, if threads share it.
        condition: as for `cached`: serves as the lock when *lock* is not given.
        info: count hits and misses per instance for `cache_info()` (without
            it, `cache_info()` reports a scalekit cache's own stats; an
            instance whose cache keeps none, such as a dict, is counted
            whatever *info* is). The counters are kept per instance by
            identity (equal instances count apart; no `__eq__` or
            `__hash__` of theirs is called), in a weak mapping: an instance
            that cannot be weakly referenced is not counted, so its
            `cache_info()` reports a scalekit cache's own stats, or raises
            `InvalidStateError` over a cache that keeps none.

    Returns:
        The decorator.

    Raises:
        ArgumentTypeError: when decorating, if *cache* or *key* is not
            callable, or *lock* or *condition* is neither `None` nor a
            function of the instance.
    """
    if not callable(cache):
        raise ArgumentTypeError(
            f"cache must be callable (a function of the instance), got {type(cache).__name__}: "
            f"{cache!r}; "
            "expected for example lambda self: self.cache"
        )
    check_callable("key", key, "a function of the instance and the call's arguments")
    for name, value in (("lock", lock), ("condition", condition)):
        if value is not None:
            check_callable(
                name, value, f"None or a function of the instance (lambda self: self.{name})"
            )
    if lock is None:
        lock = condition

    def decorator(method: Callable[Concatenate[S, P], R]) -> CachedMethod[S, P, R]:
        return CachedMethod(method, cache, key, lock, condition, info)

    return decorator


class CachedMethod(Generic[S, P, R]):
    """The descriptor `cachedmethod` puts in the class.

    `instance.method` binds it to the instance (a `BoundCachedMethod`);
    `Class.method(instance, ...)` calls it for that instance, as a plain
    method can be called through its class. `cachedmethod` must be the
    outermost decorator: a call that reaches the descriptor itself (from a
    decorator wrapping it, or `@classmethod` over it) raises `TypeError`, as
    in cachetools.
    """

    def __init__(
        self,
        method: Callable[Concatenate[S, P], R],
        cache: Callable[[Any], MutableMapping[Any, Any] | None],
        key: Callable[..., Hashable],
        lock: Callable[[Any], AbstractContextManager[Any] | None] | None,
        condition: Callable[[Any], AbstractContextManager[Any] | None] | None,
        info: bool,
    ) -> None:
        functools.update_wrapper(self, method)
        self._method: Callable[..., Any] = method
        self._cache = cache
        self._key = key
        self._lock = lock
        self._condition = condition
        self._info = info
        self._counters: WeakIdentityMap[Counters] = WeakIdentityMap()
        self._name = getattr(method, "__qualname__", repr(method))
        self._async = inspect.iscoroutinefunction(method)
        self._flights = AsyncFlights() if self._async else SyncFlights()
        self._attr: str | None = None
        self._unbound: _Unbound | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        if self._attr is None:
            self._attr = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> CachedMethod[S, P, R]: ...
    @overload
    def __get__(self, obj: S, objtype: type | None = None) -> BoundCachedMethod[P, R]: ...
    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            unbound = self._unbound
            if unbound is None:
                unbound = self._unbound = _Unbound(self)
            return unbound
        if isinstance(obj, type) and not self._found_in(type(obj)):
            # Before Python 3.13 `@classmethod` binds what it wraps to the class;
            # a metaclass's cachedmethod read on a class is found in the metaclass.
            self._misused()
        return _Bound(self, obj)

    def _found_in(self, cls: type) -> bool:
        for klass in cls.__mro__:
            names = vars(klass)
            if self._attr is not None:
                if names.get(self._attr) is self:
                    return True
            elif any(value is self for value in names.values()):
                return True
        return False

    def _misused(self) -> Any:
        raise ArgumentTypeError(
            f"cachedmethod {self._name} was called directly, not through an instance or its "
            "class: it must be the outermost decorator, and it cannot decorate a class "
            "method, a static method or a property"
        )

    if TYPE_CHECKING:

        def __call__(self, obj: S, /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    else:

        def __call__(self, /, *args, **kwargs):
            """Refuse a call that reaches the descriptor itself.

            `Class.method(obj, ...)` is served by the object `Class.method`
            gives; a call here comes from a decorator wrapping the
            descriptor or from `@classmethod` over it (Python 3.13+).

            Raises:
                ArgumentTypeError: always (a `TypeError`, as in cachetools).
            """
            return self._misused()

    def call_through_class(self, args: Any, kwargs: Any) -> Any:
        """`Class.method(obj, ...)`: the instance first, or by the first parameter's name."""
        if args:
            obj, args = args[0], args[1:]
        else:
            obj = self._pop_receiver(kwargs)
        if self._async:
            return self.acall(obj, args, kwargs)
        return self.call(obj, args, kwargs)

    def _pop_receiver(self, kwargs: dict[str, Any]) -> Any:
        """The instance passed by keyword to a call through the class."""
        try:
            first = next(iter(inspect.signature(self._method).parameters.values()))
        except (ValueError, TypeError, StopIteration):
            first = None
        if first is not None and first.kind is first.POSITIONAL_OR_KEYWORD and first.name in kwargs:
            return kwargs.pop(first.name)
        raise ArgumentTypeError(
            f"cachedmethod {self._name} called through its class without an instance: it needs"
            " the instance as its first argument, positionally or by the first parameter's name"
        )

    def __repr__(self) -> str:
        return f"<cachedmethod {self._method!r}>"

    def __reduce__(self) -> str:
        # Pickled and copied by reference, as the function it wraps would be:
        # `Class.method` is looked up again and gives this very descriptor.
        return self._name

    def counters(self, obj: Any, cache: Any) -> Counters | None:
        """*obj*'s counters: with `info=True`, or when *cache* keeps no statistics of its own."""
        if not self._info and counts_itself(cache):
            return None
        # By identity: equal instances count apart, and no __eq__ of theirs runs.
        return self._counters.get(obj, Counters)

    def lookup(self, obj: Any, args: Any, kwargs: Any) -> tuple[Any, Any, Any, Any]:
        """The instance's cache, its lock, the key and the cached value (or MISSING)."""
        cache = self._cache(obj)
        lock = None if self._lock is None else self._lock(obj)
        k = self._key(obj, *args, **kwargs)
        value = MISSING
        read = reader(cache)
        if read is not None:
            if lock is None:
                value = read(k, MISSING)
            else:
                with lock:
                    value = read(k, MISSING)
        counters = self.counters(obj, cache)
        if counters is not None:
            if value is MISSING:
                counters.misses += 1
            else:
                counters.hits += 1
        return cache, lock, k, value

    def call(self, obj: Any, args: Any, kwargs: Any) -> Any:
        cache, lock, k, value = self.lookup(obj, args, kwargs)
        if value is not MISSING:
            return value
        peek = recheck(cache, reader(cache))
        # Flights are per instance: two instances never wait for each other.
        flights: SyncFlights = self._flights  # type: ignore[assignment]

        epoch = None if cache is None else epoch_of(cache)
        call = Call(cache)

        def compute() -> Any:
            generation = flights.generation
            clears = 0 if epoch is None else epoch.clears
            found = MISSING
            if peek is not None:
                if lock is None:
                    found = peek(k, MISSING)
                else:
                    with lock:
                        found = peek(k, MISSING)
            if found is not MISSING:
                return found
            result = self._method(obj, *args, **kwargs)
            if cache is not None:
                store(cache, k, result, lock, flights, generation, epoch, clears, call)
            return result

        return flights.run((id(obj), k), compute, self._name, call)

    async def acall(self, obj: Any, args: Any, kwargs: Any) -> Any:
        cache, lock, k, value = self.lookup(obj, args, kwargs)
        if value is not MISSING:
            return value

        flights: AsyncFlights = self._flights  # type: ignore[assignment]
        generation = flights.generation  # before the call's task starts
        epoch = None if cache is None else epoch_of(cache)
        clears = 0 if epoch is None else epoch.clears
        call = Call(cache)

        async def compute() -> Any:
            result = await self._method(obj, *args, **kwargs)
            if cache is not None:
                store(cache, k, result, lock, flights, generation, epoch, clears, call)
            return result

        return await flights.run((id(obj), k), compute, self._name, call)

    def invalidate(self, obj: Any, args: Any, kwargs: Any) -> bool:
        """`obj.method.cache_invalidate(*args, **kwargs)`.

        Instances may share one cache (`lambda self: shared`): the calls in
        progress of the key, of every instance whose call stores in *obj*'s
        cache, are stopped storing, before the entry is removed.
        """
        cache = self._cache(obj)
        lock = None if self._lock is None else self._lock(obj)
        k = self._key(obj, *args, **kwargs)

        def match(flight_key: Any, call: Call | None) -> bool:
            return call is not None and call.cache is cache and flight_key[1] == k

        self._flights.invalidate_matching(match)
        return discard(cache, k, lock)


class _Unbound:
    """What `Class.method` gives: called with the instance first, as a plain function is.

    One per descriptor, so `Class.method is Class.method`; it pickles and
    copies by reference, and is not a function, so that
    `unittest.mock.create_autospec(Class, instance=True)` leaves the instance
    out of the attribute's signature.
    """

    def __init__(self, descriptor: CachedMethod[Any, ..., Any]) -> None:
        functools.update_wrapper(self, descriptor._method)
        self._descriptor = descriptor

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        """Call the method for the instance given first, or by the first parameter's name.

        Raises:
            ArgumentTypeError: if no instance is given (a `TypeError`, as
                Python's own missing-argument error is).
        """
        return self._descriptor.call_through_class(args, kwargs)

    def __repr__(self) -> str:
        return repr(self._descriptor)

    def __reduce__(self) -> str:
        return self._descriptor.__reduce__()


class _Bound:
    """A cached method bound to an instance: call it, or ask for its cache's info.

    As a plain bound method, two of them are equal (and hash alike) when they
    bind the same descriptor to the same instance, by identity, so
    `callbacks.remove(obj.method)` finds the `obj.method` added earlier;
    `__self__` and `__func__` (the descriptor) let `weakref.WeakMethod` hold one.
    """

    __slots__ = ("_descriptor", "_obj")

    def __init__(self, descriptor: CachedMethod[Any, ..., Any], obj: Any) -> None:
        self._descriptor = descriptor
        self._obj = obj

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Bound):
            return NotImplemented
        return self._descriptor is other._descriptor and self._obj is other._obj

    def __hash__(self) -> int:
        return hash((id(self._descriptor), id(self._obj)))

    @property
    def __self__(self) -> Any:
        """The instance it is bound to."""
        return self._obj

    @property
    def __func__(self) -> CachedMethod[Any, ..., Any]:
        """The `cachedmethod` descriptor in the class."""
        return self._descriptor

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:
        d = self._descriptor
        if d._async:
            return d.acall(self._obj, args, kwargs)
        return d.call(self._obj, args, kwargs)

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        return self._descriptor._method

    @property
    def __name__(self) -> str:
        return getattr(self._descriptor._method, "__name__", "method")

    def __getattr__(self, name: str) -> Any:
        # An instance has no __qualname__ of its own (a class body cannot
        # define it as a property): the method's, as a bound method gives.
        if name == "__qualname__":
            return getattr(self._descriptor._method, "__qualname__", self.__name__)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return getattr(self._descriptor._method, "__doc__", None)

    @property
    def cache(self) -> MutableMapping[Any, Any] | None:
        """The instance's cache."""
        return self._descriptor._cache(self._obj)

    @property
    def cache_lock(self) -> AbstractContextManager[Any] | None:
        """The lock guarding the instance's cache, if any."""
        lock = self._descriptor._lock
        return None if lock is None else lock(self._obj)

    @property
    def cache_condition(self) -> AbstractContextManager[Any] | None:
        """The instance's condition, if one was given."""
        condition = self._descriptor._condition
        return None if condition is None else condition(self._obj)

    def cache_key(self, *args: Any, **kwargs: Any) -> Hashable:
        """The key a call with these arguments uses."""
        return self._descriptor._key(self._obj, *args, **kwargs)

    def cache_info(self) -> CacheInfo:
        """Hits, misses, maxsize and currsize of the instance's cache.

        Raises:
            InvalidStateError: the instance cannot be weakly referenced (so no
                counters are kept for it) and its cache keeps no statistics
                of its own (a `dict`, a cachetools cache): zeros would read
                as "never hit".
        """
        cache = self.cache
        counters = self._descriptor.counters(self._obj, cache)
        if counters is None and not counts_itself(cache):
            raise InvalidStateError(
                f"cache_info() of {self._descriptor._name} cannot count the calls on a "
                f"{type(self._obj).__qualname__}: the instance cannot be weakly referenced "
                "(add '__weakref__' to its class's __slots__) and its cache, a "
                f"{type(cache).__qualname__}, keeps no statistics of its own (a scalekit "
                "cache does)"
            )
        return make_info(cache, counters)

    def cache_clear(self) -> None:
        """Empty the instance's cache, reset its statistics and forget the calls in progress.

        The calls of this method in progress (of every instance: a cache may be
        shared by several) are forgotten, as `cached`'s `cache_clear()` forgets
        its own: the next caller of a key runs the method afresh, and a call
        started before the clear stores nothing when it ends.
        """
        d = self._descriptor
        cache = self.cache
        clear(cache, self.cache_lock, d.counters(self._obj, cache), d._flights)

    def cache_invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Remove the entry of a call with these arguments; stop its calls in progress storing.

        A call of the key in progress (of this instance, or of another one
        whose cache is the same object) returns its value to the callers it
        has but does not store it, and a caller arriving after this starts a
        new call instead of waiting for it.

        Returns:
            Whether the instance's cache held an entry for the key.
        """
        return self._descriptor.invalidate(self._obj, args, kwargs)

    def __repr__(self) -> str:
        return f"<cachedmethod {self._descriptor._method!r} of {object.__repr__(self._obj)}>"
