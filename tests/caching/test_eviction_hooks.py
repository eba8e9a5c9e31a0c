"""cachetools-style eviction hooks: a subclass overriding `popitem` or `__delitem__`.

Every class, compiled and pure, evicts through an overridden `popitem` or
`__delitem__` (cachetools' own "log evictions" recipe), and the hook sees
every eviction: the entries a write removed are exactly those the hook
reported. The policy keeps its choices: a hooked cache holds, after each
request, the same keys as an unhooked one fed the same requests.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from scalekit.caching import Cache, TinyLFUCache
from tests.caching.caching_factories import Factory


def _subclasses(base: type) -> dict[str, type]:
    class PopHook(base):  # type: ignore[valid-type,misc]
        def popitem(self) -> tuple[Any, Any]:
            key, value = super().popitem()
            self.seen.append(key)
            return key, value

    class DelHook(base):  # type: ignore[valid-type,misc]
        def __delitem__(self, key: Any) -> None:
            super().__delitem__(key)
            self.seen.append(key)

    return {"popitem": PopHook, "__delitem__": DelHook}


def _requests(n: int = 1200, seed: int = 1) -> list[int]:
    draws = random.Random(seed)
    return [int(400 * draws.random() ** 3) for _ in range(n)]


def _check(plain: Cache[Any, Any], hooked: Cache[Any, Any], sized: bool) -> None:
    hooked.seen = []  # type: ignore[attr-defined]
    for key in _requests():
        value = "v" * (1 + key % 7) if sized else key
        if plain.get(key) is None:
            plain[key] = value
        if hooked.get(key) is None:
            before = set(hooked)
            del hooked.seen[:]  # type: ignore[attr-defined]
            hooked[key] = value
            removed = (before | {key}) - set(hooked)
            # The hook saw exactly the entries this write removed.
            assert sorted(hooked.seen) == sorted(removed), key  # type: ignore[attr-defined]
        assert sorted(hooked) == sorted(plain)
    assert hooked.stats() == plain.stats()
    assert plain.stats().evictions > 300
    assert hooked.currsize == plain.currsize <= hooked.maxsize


@pytest.mark.parametrize("hook", ["popitem", "__delitem__"])
@pytest.mark.parametrize("sized", [False, True], ids=["unit", "getsizeof"])
def test_every_class_evicts_through_an_overridden_hook(
    make: Factory, hook: str, sized: bool
) -> None:
    kw: dict[str, Any] = {"getsizeof": len} if sized else {}
    maxsize = 150 if sized else 50
    plain = make(maxsize, **kw)
    hooked = make(maxsize, **kw)
    hooked.__class__ = _subclasses(type(hooked))[hook]
    _check(plain, hooked, sized)


@pytest.mark.parametrize("hook", ["popitem", "__delitem__"])
def test_tinylfu_subclass_defined_with_the_hook_evicts_through_it(hook: str) -> None:
    cls = _subclasses(TinyLFUCache)[hook]
    plain: TinyLFUCache[int, Any] = TinyLFUCache(50, rng=random.Random(3))
    _check(plain, cls(50, rng=random.Random(3)), sized=False)


def test_tinylfu_popitem_called_directly_removes_the_main_areas_victim() -> None:
    cache: TinyLFUCache[int, int] = TinyLFUCache(100, rng=random.Random(3))
    for key in range(100):
        cache[key] = key
    cache.get(50)  # from probation to protected
    # The window holds the newest key; probation the others, least recent first.
    assert [cache.popitem() for _ in range(3)] == [(0, 0), (1, 1), (2, 2)]
    assert cache.stats().evictions == 0  # removed on request, not evicted


def test_a_hooked_eviction_is_counted_once_and_leaves_no_state_behind() -> None:
    cls = _subclasses(TinyLFUCache)["popitem"]
    cache = cls(10, getsizeof=len)
    cache.seen = []
    for key in range(40):
        cache[key] = "ab"
    assert cache.stats().evictions == len(cache.seen) > 0
    assert cache.currsize == sum(len(cache.peek(k)) for k in cache) <= 10
    assert "_evicting" not in vars(cache)  # nothing pending between writes (nor in pickles)
