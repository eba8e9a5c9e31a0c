"""Serializers: JSON by default, msgpack optional, pickle only when named."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scalekit.caching.serializers import (
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    resolve_serializer,
)
from scalekit.exceptions import ArgumentTypeError, ConfigurationError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def test_json_known_answer() -> None:
    data = JSONSerializer().dumps({"id": 42, "name": "Wasserkocher", "tags": ["ä", None]})
    assert data == '{"id":42,"name":"Wasserkocher","tags":["ä",null]}'.encode()
    assert JSONSerializer().loads(data) == {"id": 42, "name": "Wasserkocher", "tags": ["ä", None]}


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_json_and_msgpack_round_trip(value: Any) -> None:
    for serializer in (JSONSerializer(), MsgpackSerializer()):
        assert serializer.loads(serializer.dumps(value)) == value


def test_msgpack_known_answer() -> None:
    assert MsgpackSerializer().dumps({"a": 1}) == b"\x81\xa1a\x01"


def test_resolve_by_name_and_default_is_not_pickle() -> None:
    assert isinstance(resolve_serializer("json"), JSONSerializer)
    assert isinstance(resolve_serializer("msgpack"), MsgpackSerializer)
    assert isinstance(resolve_serializer("pickle"), PickleSerializer)
    custom = PickleSerializer(protocol=2)
    assert resolve_serializer(custom) is custom
    with pytest.raises(ValueError):  # JSON refuses a pickle payload instead of running it
        JSONSerializer().loads(pickle.dumps({1, 2}))


def test_bad_serializer_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"serializer must be one of .* got 'Pickle'"):
        resolve_serializer("Pickle")
    with pytest.raises(ArgumentTypeError, match="got 3"):  # neither a name nor a Serializer
        resolve_serializer(3)  # type: ignore[arg-type]


def test_pickle_round_trips_python_objects() -> None:
    s = PickleSerializer()
    assert s.loads(s.dumps({1, 2, (3, "x")})) == {1, 2, (3, "x")}


# -- round-trip exactly, or refuse at write time ------------------------------------
def same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (1 is not 1.0, a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            any(same(ka, kb) and same(va, vb) for kb, vb in b.items()) for ka, va in a.items()
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a != a:
        return b != b
    return bool(a == b) and repr(a) == repr(b)


hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=4)
)
hostile_keys = st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.text(max_size=3)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(hostile_keys, inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(hostile_values)
def test_every_value_round_trips_exactly_or_is_refused_at_write_time(value: Any) -> None:
    for serializer in (JSONSerializer(), MsgpackSerializer()):
        try:
            data = serializer.dumps(value)
        except ConfigurationError:
            continue  # refused at write time: nothing unreadable reaches Redis
        assert same(serializer.loads(data), value), (serializer.name, value)


def test_msgpack_int_map_keys_round_trip_and_big_ints_are_refused() -> None:
    s = MsgpackSerializer()
    assert s.loads(s.dumps({7: "alice"})) == {7: "alice"}
    with pytest.raises(
        ConfigurationError, match=r"integer 18446744073709551616 at value\['n'\]\[0\].*64 bits"
    ):
        s.dumps({"n": [2**64]})
    assert s.loads(s.dumps(2**64 - 1)) == 2**64 - 1


def test_json_refuses_merged_keys_and_non_finite_floats() -> None:
    s = JSONSerializer()
    with pytest.raises(
        ConfigurationError,
        match=r"keys \[1, '1'\] would come back as \['1'\] \(distinct keys merged\)",
    ):
        s.dumps({1: "a", "1": "b"})
    with pytest.raises(ConfigurationError, match=r"key 7 \(int\) would come back as '7'"):
        s.dumps({7: "alice"})
    with pytest.raises(ConfigurationError, match=r"nan.*value\['price'\]"):
        s.dumps({"price": float("nan")})
    with pytest.raises(ConfigurationError, match="inf"):
        s.dumps([float("inf")])
    with pytest.raises(ConfigurationError, match="tuple"):
        s.dumps((1, 2))


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("make", [JSONSerializer, MsgpackSerializer])
def test_every_refusal_is_a_configuration_error_naming_the_part(make: Any) -> None:
    """A set, bytes in JSON, a lone surrogate, a key that cannot round-trip and nesting past
    the documented depth are all refused with a ConfigurationError (a ValueError)."""
    serializer = make()
    cases: list[tuple[Any, str]] = [
        ({"tags": {1, 2}}, r"value\['tags'\].*set"),
        ({"name": "\ud800"}, r"value\['name'\].*surrogate"),
        ({"\udc80": 1}, r"key.*surrogate"),
        ({"a": [1, object()]}, r"value\['a'\]\[1\].*object"),
        (_nested(100_000), "nested deeper than 100 levels"),
        (_nested(101), "nested deeper than 100 levels"),
    ]
    if serializer.name == "json":
        cases.append(({"blob": b"x"}, r"value\['blob'\].*bytes"))
    else:
        cases.append(({float("nan"): 1}, "NaN map key"))
    for value, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            serializer.dumps(value)
    deepest = _nested(100)  # the documented depth is accepted
    assert serializer.loads(serializer.dumps(deepest)) == deepest


@pytest.mark.parametrize("make", [JSONSerializer, MsgpackSerializer])
def test_a_value_that_contains_itself_is_refused_naming_the_depth(make: Any) -> None:
    cyclic_list: list[Any] = []
    cyclic_list.append(cyclic_list)
    cyclic_dict: dict[str, Any] = {"price": 1.0}
    cyclic_dict["self"] = cyclic_dict
    for value in (cyclic_list, cyclic_dict, [1.5, {"a": cyclic_list}]):
        with pytest.raises(ConfigurationError, match="nested deeper than 100 levels"):
            make().dumps(value)
