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
from scalekit.exceptions import ConfigurationError

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
    with pytest.raises(ConfigurationError, match="got 3"):
        resolve_serializer(3)  # type: ignore[arg-type]


def test_pickle_round_trips_python_objects() -> None:
    s = PickleSerializer()
    assert s.loads(s.dumps({1, 2, (3, "x")})) == {1, 2, (3, "x")}
