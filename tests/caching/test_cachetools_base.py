"""The cachetools-named surface that is not a policy: the base `Cache` and the import.

`scalekit.caching.Cache` is concrete, as `cachetools.Cache` is: it stores
entries in insertion order and evicts the first one, and a subclass that only
adds `__missing__` works. Importing `scalekit.caching` never fails because of
whatever module is importable as `cachetools`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import scalekit.caching as sk

SRC = str(Path(sk.__file__).resolve().parents[2])


def test_base_cache_is_instantiable_and_evicts_in_insertion_order() -> None:
    cache: sk.Cache[int, int] = sk.Cache(maxsize=2)
    cache[1] = 1
    cache[2] = 2
    cache[1] = 10  # an update keeps the key's place, as in a dict
    cache[3] = 3
    assert dict(cache) == {2: 2, 3: 3}
    assert cache.popitem() == (2, 2)
    assert cache.currsize == 1 and cache.maxsize == 2
    with pytest.raises(KeyError):
        sk.Cache(maxsize=1).popitem()


def test_base_cache_with_getsizeof_evicts_until_the_value_fits() -> None:
    cache: sk.Cache[str, str] = sk.Cache(maxsize=3, getsizeof=len)
    cache["a"] = "x"
    cache["b"] = "yy"
    cache["c"] = "zz"
    assert dict(cache) == {"c": "zz"} and cache.currsize == 2
    with pytest.raises(ValueError, match="value too large"):
        cache["d"] = "long"


def test_subclass_overriding_only_missing_works() -> None:
    class DefaultCache(sk.Cache[Any, Any]):
        def __missing__(self, key: Any) -> Any:
            self[key] = key
            return key

    cache = DefaultCache(maxsize=2)
    assert cache[1] == 1 and cache[2] == 2 and cache[3] == 3
    assert list(cache) == [2, 3]
    assert cache.get(4) is None and 4 not in cache


def _import_with(
    tmp_path: Path, cachetools_source: str, code: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cachetools.py").write_text(cachetools_source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), SRC])}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_import_survives_a_cachetools_stand_in_that_reexports_scalekit(tmp_path: Path) -> None:
    run = _import_with(
        tmp_path,
        "from scalekit.caching import *\n",
        "import cachetools; print(cachetools.LRUCache.__module__)",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith("scalekit.caching")


def test_import_survives_a_cachetools_module_without_cache(tmp_path: Path) -> None:
    run = _import_with(tmp_path, "# a stub\n", "import scalekit.caching; print('ok')")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_cached_over_a_partial_is_copied_by_reference() -> None:
    import copy
    import functools

    func = sk.cached(sk.LRUCache(maxsize=2))(functools.partial(int, base=2))
    assert copy.copy(func) is func
    assert copy.deepcopy(func) is func
    assert func("101") == 5 and func("101") == 5
    assert func.cache.stats().hits == 1


class Doubler:
    """A class with a cached method, at module level so that pickle finds it."""

    def __init__(self) -> None:
        self.cache: dict[Any, Any] = {}

    @sk.cachedmethod(lambda self: self.cache)
    def get(self, value: int) -> int:
        return value * 2


def test_cachedmethod_through_its_class_pickles_and_copies_to_itself() -> None:
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(Doubler.get)) is Doubler.get
    assert copy.copy(Doubler.get) is Doubler.get
    assert copy.deepcopy(Doubler.get) is Doubler.get


def test_cachedmethod_through_its_class_takes_the_instance_by_keyword_too() -> None:
    doubler = Doubler()
    assert Doubler.get(doubler, 2) == 4
    assert Doubler.get(self=doubler, value=3) == 6
    assert doubler.cache == {sk.methodkey(doubler, 2): 4, sk.methodkey(doubler, value=3): 6}
    with pytest.raises(TypeError, match="without an instance"):
        Doubler.get(value=3)


def test_cachedmethod_autospec_accepts_positional_and_keyword_calls() -> None:
    from unittest import mock

    spec = mock.create_autospec(Doubler, instance=True)
    spec.get.return_value = 42
    assert spec.get(1) == 42
    spec.get.assert_called_with(1)
    assert spec.get(value=1) == 42
    spec.get.assert_called_with(value=1)


def test_bound_cachedmethod_names_and_repr_are_the_methods() -> None:
    doubler = Doubler()
    method = Doubler.get.__wrapped__
    assert doubler.get.__name__ == "get" and doubler.get.__qualname__ == "Doubler.get"
    assert doubler.get.__doc__ == method.__doc__
    assert repr(doubler.get) == f"<cachedmethod {method!r} of {object.__repr__(doubler)}>"
    assert repr(Doubler.get) == f"<cachedmethod {method!r}>"


def test_bound_cachedmethod_passes_a_keyword_named_self() -> None:
    class Keyword:
        def __init__(self) -> None:
            self.cache: dict[Any, Any] = {}

        @sk.cachedmethod(lambda obj: obj.cache)
        def get_self(this, *, self: int) -> int:
            return self

    obj = Keyword()
    assert obj.get_self(self=1) == 1 and obj.get_self(self=1) == 1
    assert Keyword.get_self(obj, self=2) == 2
    assert len(obj.cache) == 2


@pytest.mark.parametrize("cache", [None, sk.Cache(2)], ids=["None", "Cache"])
def test_cachedmethod_refuses_a_cache_that_is_not_callable(cache: Any) -> None:
    with pytest.raises(TypeError, match=r"cache must be callable \(a function of the instance\)"):
        sk.cachedmethod(cache)
