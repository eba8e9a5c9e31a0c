"""`RRCache` copies and the generator they draw victims from.

A deep copy and a pickle round trip own a generator in the source's state,
so source and copy evict alike on the same requests and neither moves the
other's draws; `copy.copy` shares `choice` (and so its generator) with the
source, as cachetools' does.
"""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest

from scalekit.caching import RRCache


def _drive(cache: RRCache[int, int], seed: int = 2) -> list[list[int]]:
    requests = random.Random(seed)
    seen = []
    for _ in range(400):
        key = requests.randrange(300)
        if cache.get(key) is None:
            cache[key] = key
            seen.append(sorted(cache))
    return seen


def _full(**kw: Any) -> RRCache[int, int]:
    cache: RRCache[int, int] = RRCache(20, **kw)
    for i in range(20):
        cache[i] = i
    return cache


CLONES: dict[str, Callable[[Any], Any]] = {
    "deepcopy": copy.deepcopy,
    "pickle": lambda cache: pickle.loads(pickle.dumps(cache)),
}


@pytest.mark.parametrize("clone", sorted(CLONES))
@pytest.mark.parametrize("how", ["rng", "choice", "default"])
def test_a_deep_copy_evicts_like_its_source_and_draws_on_its_own(clone: str, how: str) -> None:
    def build() -> RRCache[int, int]:
        if how == "rng":
            return _full(rng=random.Random(5))
        if how == "choice":
            return _full(choice=random.Random(5).choice)
        random.seed(5)
        return _full()

    source = build()
    copied = CLONES[clone](source)
    # Driving the copy first must not move the source's draws (nor the module's).
    state = random.getstate()
    copied_run = _drive(copied)
    assert random.getstate() == state
    source_run = _drive(source)
    assert source_run == copied_run == _drive(build())


def test_a_shallow_copy_shares_choice_and_its_generator_as_cachetools() -> None:
    rng = random.Random(5)
    source = _full(rng=rng)
    shallow = copy.copy(source)
    assert shallow.choice == source.choice and shallow.choice.__self__ is rng  # type: ignore[attr-defined]
    # One generator: the copy's eviction draws from the source's rng.
    before = rng.getstate()
    shallow[100] = 100
    assert rng.getstate() != before
    assert sorted(source) == list(range(20)) and 100 in shallow and len(shallow) == 20
