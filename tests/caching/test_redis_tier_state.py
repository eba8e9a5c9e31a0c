"""Hypothesis state machines: RedisCache and NearCache against a dict model, on real servers."""

# ruff: noqa: F811 - pytest fixtures imported from tests.caching._redis_helpers are redefined as arguments

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from scalekit.caching import LRUCache
from scalekit.caching.near_cache import NearCache
from scalekit.caching.redis_cache import RedisCache
from tests.caching._redis_helpers import (  # noqa: F401 - fixtures
    client,
    make_client,
    spec,
    unique_namespace,
    wait_until,
)

pytestmark = pytest.mark.redis

keys = st.sampled_from(["a", "b", "goods:1", "goods:2", "x}y", "{tag}z"])
values = st.none() | st.integers(-5, 5) | st.text(max_size=3) | st.lists(st.integers(), max_size=2)
SETTINGS = settings(max_examples=12, stateful_step_count=25, deadline=None)


def test_redis_cache_matches_a_dict(client: Any) -> None:
    """Two RedisCache instances on one namespace behave as one dict in front of a 'database'."""

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            ns = unique_namespace()
            self.caches = [
                RedisCache(client, namespace=ns, ttl=60),
                RedisCache(client, namespace=ns, ttl=60, negative_ttl=60),
            ]
            self.cached: dict[str, Any] = {}  # key -> value, or NOT_FOUND
            self.db: dict[str, Any] = {}

        @rule(i=st.integers(0, 1), key=keys, value=values)
        def set(self, i: int, key: str, value: Any) -> None:
            self.caches[i].set(key, value)
            self.cached[key] = value

        @rule(i=st.integers(0, 1), items=st.dictionaries(keys, values, max_size=4))
        def set_many(self, i: int, items: dict[str, Any]) -> None:
            self.caches[i].set_many(items)
            self.cached.update(items)

        @rule(i=st.integers(0, 1), key=keys)
        def delete(self, i: int, key: str) -> None:
            had = key in self.cached
            assert self.caches[i].delete(key) == had
            self.cached.pop(key, None)

        @rule(i=st.integers(0, 1), key=keys)
        def invalidate(self, i: int, key: str) -> None:
            self.caches[i].invalidate(key)
            self.cached.pop(key, None)

        @rule(key=keys, value=values)
        def update_db(self, key: str, value: Any) -> None:
            self.db[key] = value  # without invalidating: the cache keeps the old value

        @rule(i=st.integers(0, 1), key=keys)
        def get(self, i: int, key: str) -> None:
            expected = self.cached.get(key, "MISS")
            assert self.caches[i].get(key, "MISS") == (
                "MISS" if expected is NOT_FOUND else expected
            )

        @rule(i=st.integers(0, 1), wanted=st.lists(keys, max_size=5))
        def get_many(self, i: int, wanted: list[str]) -> None:
            expected = {
                k: self.cached[k]
                for k in wanted
                if k in self.cached and self.cached[k] is not NOT_FOUND
            }
            assert self.caches[i].get_many(wanted) == expected

        @rule(i=st.integers(0, 1), key=keys)
        def get_or_load(self, i: int, key: str) -> None:
            got = self.caches[i].get_or_load(key, lambda: self.db.get(key))
            if key in self.cached:
                expected = self.cached[key]
                assert got == (None if expected is NOT_FOUND else expected)
                return
            assert got == self.db.get(key)
            if got is not None:
                self.cached[key] = got
            elif i == 1:  # only the second instance caches "not found"
                self.cached[key] = NOT_FOUND

        @invariant()
        def no_leases_left(self) -> None:
            for key in ("a", "goods:1"):
                assert client.exists(self.caches[0]._name(key) + ":lease") == 0

    run_state_machine_as_test(Machine, settings=SETTINGS)


NOT_FOUND = object()


def test_near_caches_match_a_dict(spec: Any) -> None:
    """Three NearCaches (three 'processes'): once every invalidation has been delivered,
    each one reads exactly what the model says, whether from its local layer or Redis."""
    clients = [make_client(spec) for _ in range(3)]

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            ns = unique_namespace()
            self.near = [
                NearCache(LRUCache(3), RedisCache(c, namespace=ns, ttl=60), max_staleness=0.1)
                for c in clients
            ]
            self.model: dict[str, Any] = {}

        def teardown(self) -> None:
            for n in self.near:
                n.close()

        def sync(self) -> None:
            for n in self.near:
                assert n.sync(timeout=5)

        @rule(i=st.integers(0, 2), key=keys, value=values)
        def set(self, i: int, key: str, value: Any) -> None:
            self.near[i].set(key, value)
            self.model[key] = value
            self.sync()

        @rule(i=st.integers(0, 2), key=keys)
        def delete(self, i: int, key: str) -> None:
            self.near[i].delete(key)
            self.model.pop(key, None)
            self.sync()

        @rule(i=st.integers(0, 2), key=keys)
        def get(self, i: int, key: str) -> None:
            assert self.near[i].get(key, "MISS") == self.model.get(key, "MISS")

        @rule(i=st.integers(0, 2), key=keys, value=st.integers())
        def get_or_load(self, i: int, key: str, value: int) -> None:
            got = self.near[i].get_or_load(key, lambda: value)
            assert got == self.model.setdefault(key, value)

        @invariant()
        def local_layers_hold_only_current_values(self) -> None:
            for n in self.near:
                with n._lock:
                    local = {k: v for k, (v, _) in list(n._local.items())}
                for k, v in local.items():
                    assert k in self.model and self.model[k] == v

    try:
        run_state_machine_as_test(Machine, settings=SETTINGS)
    finally:
        for c in clients:
            c.close()
