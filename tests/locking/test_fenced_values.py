"""Every fenced store accepts the same values and tokens (about 3 s with PostgreSQL).

Values are integers of the signed 64-bit range (a `BIGINT`, what Redis's
INCRBY and SQLite's INTEGER keep exactly), tokens positive integers below
2**63. Anything else is refused with a `ConfigurationError` naming the
argument before anything is written, on Redis, a Redis Cluster, SQLite and
PostgreSQL alike, so code moved from one store to another behaves the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from scalekit.exceptions import ConfigurationError

from .test_fenced_store import as_int, lease, store  # noqa: F401  (the fixture)

LIMIT = 2**63


@pytest.mark.parametrize("value", [-(2**63), -1, 0, 2**63 - 1])
def test_every_store_keeps_a_64_bit_integer_exactly(store: Any, value: int) -> None:  # noqa: F811
    store.write("k", value, lease(1))
    assert as_int(store.read("k", lease(2))) == value


@pytest.mark.parametrize("value", [1.5, "hello", b"x", True, None, 2**63, -(2**63) - 1])
def test_every_store_refuses_other_values_before_writing(store: Any, value: Any) -> None:  # noqa: F811
    store.write("k", 7, lease(1))
    with pytest.raises(ConfigurationError, match=r"value must be an integer .* got"):
        store.write("k", value, lease(2))
    assert as_int(store.get("k")) == 7 and store.fence("k") == 1  # nothing changed


@pytest.mark.parametrize("token", [LIMIT, LIMIT + 1, 2**80])
def test_every_store_refuses_a_token_past_the_64_bit_range(store: Any, token: int) -> None:  # noqa: F811
    store.write("k", 7, lease(1))
    with pytest.raises(ConfigurationError, match=r"token must be .* below 2\*\*63"):
        store.write("k", 8, lease(token))
    with pytest.raises(ConfigurationError, match=r"token must be .* below 2\*\*63"):
        store.read("k", token)
    assert store.fence("k") == 1
    store.read("k", lease(LIMIT - 1))  # the largest token is accepted everywhere
    assert store.fence("k") == LIMIT - 1


@pytest.mark.parametrize(("start", "amount"), [(2**63 - 1, 1), (2**63 - 5, 10), (-(2**63), -1)])
def test_every_store_refuses_an_increment_past_the_64_bit_range(
    store: Any,  # noqa: F811
    start: int,
    amount: int,
) -> None:
    """SQLite would turn the sum into a float, PostgreSQL and Redis raise their own errors."""
    store.write("big", start, lease(5))
    with pytest.raises(ConfigurationError, match=r"incr of 'big' .* would leave the signed 64-bit"):
        store.incr("big", amount, lease(6))
    assert as_int(store.get("big")) == start  # nothing changed, the fence included
    assert store.fence("big") == 5
    assert store.incr("big", -amount, lease(5)) == start - amount  # the holder goes on


def test_every_store_refuses_an_op_id_reused_for_another_change(store: Any) -> None:  # noqa: F811
    store.write("k", 10, lease(5), op="checkout")
    store.write("k", 10, lease(5), op="checkout")  # a replay: accepted, applied once
    with pytest.raises(ConfigurationError, match=r"op 'checkout' .* another change"):
        store.write("k", 99, lease(5), op="checkout")
    assert as_int(store.get("k")) == 10
    assert store.incr("c", 1, lease(5), op="same") == 1
    assert store.incr("c", 1, lease(5), op="same") == 1  # the replay
    with pytest.raises(ConfigurationError, match=r"op 'same' .* another change"):
        store.incr("c", 100, lease(5), op="same")
    assert as_int(store.get("c")) == 1
