"""How cached values become bytes: JSON by default, msgpack if installed, pickle by name only.

A shared Redis is read by every process that can reach it, so the default
serializer must never execute code while decoding: JSON and msgpack only
build plain data. Both check every write: a value that would not come back
exactly (same types all the way down) is refused with a `ConfigurationError`
naming the part that would change, so nothing unreadable or silently
altered ever reaches Redis. `PickleSerializer` can rebuild arbitrary objects
and therefore runs whatever a writer put there; it is used only when a
caller asks for it by name (`serializer="pickle"`) or passes an instance.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..exceptions import ArgumentTypeError, ConfigurationError, MissingDependencyError

__all__ = [
    "JSONSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "resolve_serializer",
]


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back; `name` identifies the format."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """Encode *value*; raise `TypeError` or `ValueError` if it cannot be."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by `dumps`."""
        ...


MAX_DEPTH = 100
"""Containers nested deeper than this are refused by the JSON and msgpack serializers."""

_SCALARS = (type(None), bool, int, float, str)


def _describe(value: Any) -> str:
    return f"{value!r:.80} ({type(value).__name__})"


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def _surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _explain(
    value: Any, name: str, plain: tuple[type, ...], path: str = "value", depth: int = 0
) -> str:
    """Why serializer *name* cannot store *value* (types *plain* allowed), naming the part."""
    if isinstance(value, (dict, list, tuple)):
        if depth >= MAX_DEPTH:
            return f"it is nested deeper than {MAX_DEPTH} levels (at {_short(path)})"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(value, dict):
                if not isinstance(key, plain):
                    return f"the key {_describe(key)} at {_short(path)} has no {name} form"
                if isinstance(key, str) and _surrogate(key):
                    return f"the key {key!r} at {_short(path)} holds a lone surrogate"
            found = _explain(item, name, plain, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return ""
    if isinstance(value, str) and _surrogate(value):
        return f"{_short(path)} holds a lone surrogate (not encodable as UTF-8): {value!r:.80}"
    if not isinstance(value, plain):
        return f"{_short(path)} is of type {type(value).__name__}, which has no {name} form"
    return ""


def _refusal(
    serializer: str, value: Any, plain: tuple[type, ...], exc: BaseException
) -> ConfigurationError:
    why = _explain(value, serializer, plain) or str(exc)
    return ConfigurationError(
        f"serializer {serializer!r} cannot store this value: {why}; "
        "convert it to plain data first or use serializer='pickle'"
    )


def _difference(before: Any, after: Any, path: str, depth: int = 0) -> str | None:
    """Where *after* (a decoded copy) differs from *before*, in words; None if nowhere."""
    if depth >= MAX_DEPTH and isinstance(before, (dict, list, tuple)):
        return f"it is nested deeper than {MAX_DEPTH} levels (at {_short(path)})"
    if type(before) is not type(after):
        return f"at {path}: {_describe(before)} would come back as {_describe(after)}"
    if isinstance(before, dict):
        if len(before) != len(after):
            return (
                f"at {path}: keys {list(before)!r} would come back as {list(after)!r} "
                "(distinct keys merged)"
            )
        for (k1, v1), (k2, v2) in zip(before.items(), after.items(), strict=True):
            if isinstance(k1, float) and math.isnan(k1):
                return (
                    f"at {_short(path)}: a NaN map key is refused "
                    "(NaN != NaN, so the key could never be looked up)"
                )
            if type(k1) is not type(k2) or k1 != k2:
                return f"at {path}: key {_describe(k1)} would come back as {_describe(k2)}"
            found = _difference(v1, v2, f"{path}[{k1!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(before, (list, tuple)):
        if len(before) != len(after):
            return f"at {path}: {len(before)} items would come back as {len(after)}"
        for i, (x, y) in enumerate(zip(before, after, strict=True)):
            found = _difference(x, y, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(before, float) and math.isnan(before) and math.isnan(after):
        return None
    if before != after or repr(before) != repr(after):
        return f"at {path}: {_describe(before)} would come back as {_describe(after)}"
    return None


def _find(
    value: Any, bad: Callable[[Any], bool], path: str = "value", depth: int = 0
) -> str | None:
    """The path of the first part of *value* for which *bad* is true, looking at most
    `MAX_DEPTH` levels deep (a value that contains itself has no end)."""
    if bad(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    if depth >= MAX_DEPTH:
        return None
    for key, item in items:
        found = _find(item, bad, f"{path}[{key!r}]", depth + 1)
        if found:
            return found
    return None


def _verified(serializer: Serializer, value: Any, data: bytes) -> bytes:
    """*data*, once it is known to decode to exactly *value*; else ConfigurationError."""
    try:
        back = serializer.loads(data)
    except Exception as exc:  # written but unreadable: refuse it now
        raise ConfigurationError(
            f"serializer {serializer.name!r} cannot read back this value ({exc}); "
            f"got {value!r:.200}"
        ) from exc
    found = _difference(value, back, "value")
    if found:
        raise ConfigurationError(
            f"serializer {serializer.name!r} cannot store this value exactly: {found}; "
            "convert it to plain data first or use serializer='pickle'"
        )
    return data


_JSON_PLAIN = (*_SCALARS, list, tuple, dict)
_MSGPACK_PLAIN = (*_SCALARS, bytes, list, tuple, dict)


class JSONSerializer:
    """Compact UTF-8 JSON (the default): plain data only, safe to decode.

    Stores `None`, `bool`, `int`, finite `float`, `str`, `list` and `dict`
    with `str` keys, nested at most `MAX_DEPTH` (100) levels. Anything JSON
    would change on the way back (a tuple becoming a list, an `int` key
    becoming a `str`, `{1: 'a', '1': 'b'}` merging, `NaN` or `Infinity`), a
    `set`, `bytes` or any other type, a lone surrogate and a value that
    contains itself are refused when written, with a `ConfigurationError`
    naming the part.

    Thread-safe (stateless). Runtime complexity: O(size of the value), twice
    (the encoded form is decoded once to check it).
    """

    name = "json"

    def dumps(self, value: Any) -> bytes:
        """Encode *value* as compact JSON.

        Raises:
            ConfigurationError: *value* would not come back exactly, has a part
                with no JSON form (a `set`, `bytes`, an object), a lone surrogate,
                or containers nested deeper than `MAX_DEPTH` (100); the message
                names the part.
        """
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            data = text.encode()
        except ValueError as exc:  # UnicodeEncodeError included
            where = _find(value, lambda v: isinstance(v, float) and not math.isfinite(v))
            if where is None:
                raise _refusal("json", value, _JSON_PLAIN, exc) from exc
            raise ConfigurationError(
                f"serializer 'json' cannot store nan or inf (JSON has neither), found at {where}"
            ) from exc
        except (TypeError, RecursionError) as exc:
            raise _refusal("json", value, _JSON_PLAIN, exc) from exc
        return _verified(self, value, data)

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        return json.loads(data)


class MsgpackSerializer:
    """MessagePack via the optional `msgpack` package: smaller and faster than JSON.

    Stores what JSON does plus `bytes`, non-finite floats and `int`, `float`,
    `bool` or `None` map keys; integers must fit in 64 bits
    (`-2**63` to `2**64 - 1`), nested at most `MAX_DEPTH` (100) levels.
    Anything else that would not come back exactly (a tuple becoming a list)
    is refused when written.

    Raises:
        MissingDependencyError: If `msgpack` is not installed (`extra` is
            `"msgpack"`).

    Thread-safe (stateless). Runtime complexity: O(size of the value), twice
    (the encoded form is decoded once to check it).
    """

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack  # type: ignore[import-untyped, unused-ignore]
        except ImportError as exc:
            raise MissingDependencyError(
                "serializer 'msgpack' needs the msgpack package, which is not installed; "
                "install it with \"pip install 'scalekit-primitives[msgpack]'\" "
                "or use serializer='json'",
                name="msgpack",
                extra="msgpack",
            ) from exc
        self._packb = msgpack.packb
        self._unpackb = msgpack.unpackb

    def dumps(self, value: Any) -> bytes:
        """Encode *value* as MessagePack.

        Raises:
            ConfigurationError: *value* would not come back exactly, has a part
                with no MessagePack form (a `set`, an object), a lone surrogate,
                a NaN map key, an integer outside 64 bits, or containers nested
                deeper than `MAX_DEPTH` (100); the message names the part.
        """
        try:
            data: bytes = self._packb(value, use_bin_type=True)
        except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError included
            raise _refusal("msgpack", value, _MSGPACK_PLAIN, exc) from exc
        except OverflowError as exc:
            found: list[int] = []

            def too_big(v: Any) -> bool:
                if isinstance(v, int) and not -(2**63) <= v < 2**64:
                    found.append(v)
                    return True
                return False

            where = _find(value, too_big)
            raise ConfigurationError(
                f"serializer 'msgpack' cannot store the integer {found[0] if found else '?'} "
                f"at {where}: it does not fit in 64 bits (-2**63 to 2**64 - 1)"
            ) from exc
        return _verified(self, value, data)

    def loads(self, data: bytes) -> Any:
        """Decode MessagePack bytes (`raw=False`: strings come back as `str`)."""
        return self._unpackb(data, raw=False, strict_map_key=False)


class PickleSerializer:
    """Pickle: any Python object, but decoding runs code chosen by the writer.

    Use it only on a Redis that no untrusted party can write to. Never a
    default: it is chosen only by `serializer="pickle"` or an instance.
    Each value is unpickled once when written, so one that pickles but
    cannot be unpickled (an exception class whose `__init__` takes other
    arguments than `args`) is refused then; equality is not checked (an
    arbitrary object may not define it).

    Thread-safe (stateless). Runtime complexity: O(size of the value), twice.
    """

    name = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self._protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Pickle *value*.

        Raises:
            ConfigurationError: *value* cannot be pickled: nested deeper than
                pickle's recursion allows (about `sys.getrecursionlimit()`
                levels), a part pickle refuses (a lambda, a lock, a local
                class), or a value whose pickle fails to unpickle; the message
                says which.
        """
        try:
            data = pickle.dumps(value, protocol=self._protocol)
        except RecursionError as exc:
            raise ConfigurationError(
                "serializer 'pickle' cannot store this value: it is nested deeper than "
                f"pickle can recurse (Python's recursion limit is {sys.getrecursionlimit()}); "
                "flatten it first"
            ) from exc
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ConfigurationError(
                f"serializer 'pickle' cannot store this value: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            pickle.loads(data)
        except Exception as exc:  # pickled but unreadable (an `__init__` taking other args)
            raise ConfigurationError(
                f"serializer 'pickle' cannot read back this value "
                f"({type(exc).__name__}: {exc}); got {value!r:.200}"
            ) from exc
        return data

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
            `dumps`/`loads`/`name`.
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
    raise ArgumentTypeError(
        "serializer must be a name ('json', 'msgpack', 'pickle') or an object with "
        f"name, dumps() and loads(), got {serializer!r}"
    )
