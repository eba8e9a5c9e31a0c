"""How cached values become bytes: JSON by default, msgpack if installed, pickle by name only.

A shared Redis is read by every process that can reach it, so the default
serializer must never execute code while decoding: JSON and msgpack only
build plain data. :class:`PickleSerializer` can rebuild arbitrary objects
and therefore runs whatever a writer put there; it is used only when a
caller asks for it by name (``serializer="pickle"``) or passes an instance.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..exceptions import ConfigurationError

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "resolve_serializer",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back; ``name`` identifies the format."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """Encode *value*; raise ``TypeError`` or ``ValueError`` if it cannot be."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`."""
        ...


class JSONSerializer:
    """Compact UTF-8 JSON (the default): plain data only, safe to decode.

    Tuples come back as lists and dict keys as strings, as with ``json``.
    Thread-safe (stateless). Runtime complexity: O(size of the value).
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        """Encode *value* as compact JSON; raise ``TypeError`` for non-JSON types."""
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        return json.loads(data)


class MsgpackSerializer:
    """MessagePack via the optional ``msgpack`` package: smaller and faster than JSON.

    Raises:
        ConfigurationError: if ``msgpack`` is not installed.

    Thread-safe (stateless). Runtime complexity: O(size of the value).
    """

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise ConfigurationError(
                "serializer 'msgpack' needs the msgpack package, which is not installed; "
                "install it with \"pip install 'scalekit-primitives[msgpack]'\" "
                "or use serializer='json'"
            ) from exc
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def dumps(self, value: Any) -> bytes:
        """Encode *value* as MessagePack."""
        data: bytes = self._packb(value, use_bin_type=True)
        return data

    def loads(self, data: bytes) -> Any:
        """Decode MessagePack bytes (``raw=False``: strings come back as ``str``)."""
        return self._unpackb(data, raw=False)


class PickleSerializer:
    """Pickle: any Python object, but decoding runs code chosen by the writer.

    Use it only on a Redis that no untrusted party can write to. Never a
    default: it is chosen only by ``serializer="pickle"`` or an instance.
    Thread-safe (stateless). Runtime complexity: O(size of the value).
    """

    name = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self._protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle *value*."""
        return pickle.dumps(value, protocol=self._protocol)

    def loads(self, data: bytes) -> Any:
        """Unpickle *data* (runs code the writer chose: trusted Redis only)."""
        return pickle.loads(data)


_BY_NAME: dict[str, Callable[[], Serializer]] = {
    "json": JSONSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}


def resolve_serializer(serializer: str | Serializer) -> Serializer:
    """Return the serializer named by *serializer*, or *serializer* itself.

    Raises:
        ConfigurationError: an unknown name, or an object without
            ``dumps``/``loads``/``name``.
    """
    if isinstance(serializer, str):
        factory = _BY_NAME.get(serializer)
        if factory is None:
            raise ConfigurationError(
                f"serializer must be one of {sorted(_BY_NAME)} or a Serializer object, "
                f"got {serializer!r}"
            )
        made: Serializer = factory()
        return made
    if isinstance(serializer, Serializer):
        return serializer
    raise ConfigurationError(
        "serializer must be a name ('json', 'msgpack', 'pickle') or an object with "
        f"name, dumps() and loads(), got {serializer!r}"
    )
