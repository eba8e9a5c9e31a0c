"""Argument checks shared by every family.

Each check sorts a bad argument into one of two errors whose message names
the argument, shows the value and says what was expected:

* a value of the wrong type (`None`, a `str` where a number belongs, a bool)
  raises `ArgumentTypeError`, which is also a `TypeError`;
* a value of the right type out of range (`-1`, NaN, infinity, `10**400`
  where a float is stored) raises `ConfigurationError`, also a `ValueError`.

Every check returns the value, so a constructor can write
`self._maxsize = positive_int("maxsize", maxsize)`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import ArgumentTypeError, ConfigurationError

#: The largest int a float-valued argument accepts: beyond it `float()` overflows.
_FLOAT_MAX = sys.float_info.max


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return type(value).__name__


def wrong_type(name: str, value: Any, expected: str) -> ArgumentTypeError:
    """Return the `ArgumentTypeError` for *name* given *value* instead of *expected*."""
    return ArgumentTypeError(f"{name} must be {expected}, got {value!r} ({_type_name(value)})")


def bad_value(name: str, value: Any, expected: str) -> ConfigurationError:
    """Return the `ConfigurationError` for *name* given *value* instead of *expected*."""
    return ConfigurationError(f"{name} must be {expected}, got {value!r}")


def _int(name: str, value: Any, low: int, expected: str) -> int:
    if not _is_int(value):
        raise wrong_type(name, value, expected)
    if value < low:
        raise bad_value(name, value, expected)
    return int(value)


def positive_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    """Return *value* if it is an `int` >= 1 (and <= *maximum* when given).

    Raises:
        ArgumentTypeError: for a non-int (a bool, a float, `None`, a `str`).
        ConfigurationError: for an int below 1 or above *maximum*.
    """
    expected = "a positive integer" if maximum is None else f"an integer in [1, {maximum}]"
    checked = _int(name, value, 1, expected)
    if maximum is not None and checked > maximum:
        raise bad_value(name, value, expected)
    return checked


def non_negative_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    """Return *value* if it is an `int` >= 0 (and <= *maximum* when given).

    Raises:
        ArgumentTypeError: for a non-int.
        ConfigurationError: for a negative int or one above *maximum*.
    """
    expected = "a non-negative integer" if maximum is None else f"an integer in [0, {maximum}]"
    checked = _int(name, value, 0, expected)
    if maximum is not None and checked > maximum:
        raise bad_value(name, value, expected)
    return checked


def finite_number(name: str, value: Any) -> float:
    """Return *value* as a float if it is a finite real number (not a bool).

    Raises:
        ArgumentTypeError: for a non-number.
        ConfigurationError: for NaN, an infinity or an int too large for a float.
    """
    expected = "a finite number"
    if not _is_real(value):
        raise wrong_type(name, value, expected)
    if isinstance(value, int) and abs(value) > _FLOAT_MAX:
        raise bad_value(name, value, expected)
    if not math.isfinite(value):
        raise bad_value(name, value, expected)
    return float(value)


def positive_number(name: str, value: Any) -> float:
    """Return *value* as a float if it is a finite real number > 0.

    Raises:
        ArgumentTypeError: for a non-number.
        ConfigurationError: for zero, a negative number, NaN, an infinity or
            an int too large for a float.
    """
    expected = "a positive finite number"
    if not _is_real(value):
        raise wrong_type(name, value, expected)
    if (isinstance(value, int) and value > _FLOAT_MAX) or not math.isfinite(value) or value <= 0:
        raise bad_value(name, value, expected)
    return float(value)


def non_negative_number(name: str, value: Any) -> float:
    """Return *value* as a float if it is a finite real number >= 0.

    Raises:
        ArgumentTypeError: for a non-number.
        ConfigurationError: for a negative number, NaN, an infinity or an int
            too large for a float.
    """
    expected = "a non-negative finite number"
    if not _is_real(value):
        raise wrong_type(name, value, expected)
    if (isinstance(value, int) and value > _FLOAT_MAX) or not math.isfinite(value) or value < 0:
        raise bad_value(name, value, expected)
    return float(value)


def fraction(name: str, value: Any, *, inclusive_low: bool = True) -> float:
    """Return *value* as a float if it lies in [0, 1] (or (0, 1]).

    Raises:
        ArgumentTypeError: for a non-number.
        ConfigurationError: for a number outside the interval or NaN.
    """
    expected = f"a number in {'[0, 1]' if inclusive_low else '(0, 1]'}"
    if not _is_real(value):
        raise wrong_type(name, value, expected)
    ok = (isinstance(value, float) and math.isfinite(value)) or (
        isinstance(value, int) and value in (0, 1)
    )
    ok = ok and (value >= 0 if inclusive_low else value > 0) and value <= 1
    if not ok:
        raise bad_value(name, value, expected)
    return float(value)


def non_empty_str(name: str, value: Any) -> str:
    """Return *value* if it is a non-empty `str`.

    Raises:
        ArgumentTypeError: for a non-str.
        ConfigurationError: for the empty string.
    """
    expected = "a non-empty string"
    if not isinstance(value, str):
        raise wrong_type(name, value, expected)
    if not value:
        raise bad_value(name, value, expected)
    return value


def flag(name: str, value: Any) -> bool:
    """Return *value* if it is a `bool`.

    A flag takes True or False only: `blocking="no"` is truthy, and taking it
    as True would do the opposite of what it says.

    Raises:
        ArgumentTypeError: for anything but a bool.
    """
    if not isinstance(value, bool):
        raise wrong_type(name, value, "True or False")
    return value


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return *value* if it is one of *choices*, else raise `ConfigurationError`."""
    options = tuple(choices)
    try:
        ok = value in options
    except TypeError:  # an unhashable value against a set-like choice
        ok = False
    if not ok:
        listed = ", ".join(repr(option) for option in options)
        raise bad_value(name, value, f"one of {listed}")
    return value


def a_callable(name: str, value: Any) -> Callable[..., Any]:
    """Return *value* if it is callable, else raise `ArgumentTypeError`."""
    if not callable(value):
        raise wrong_type(name, value, "callable")
    return value  # type: ignore[no-any-return]


def random_source(name: str, value: Any, method: str, call: str) -> None:
    """Raise `ArgumentTypeError` unless *value* is None or has a callable *method*.

    *call* is how the caller uses it (`"getrandbits(k)"`), for the message:
    a cache's first draw may come thousands of operations after construction.
    """
    if value is not None and not callable(getattr(value, method, None)):
        raise ArgumentTypeError(
            f"{name} must be a random.Random (an object with a callable {call} "
            f"method), got {_type_name(value)}: {value!r}"
        )


def iterable(name: str, value: Any, expected: str) -> list[Any]:
    """Return *value* as a list if it is a non-string iterable.

    Raises:
        ArgumentTypeError: for `None`, a `str`/`bytes` or a non-iterable.
    """
    if isinstance(value, (str, bytes)):
        raise wrong_type(name, value, expected)
    try:
        items = iter(value)
    except TypeError:
        raise wrong_type(name, value, expected) from None
    return list(items)


def tcp_port(name: str, value: Any, *, allow_zero: bool = False) -> int:
    """Return *value* if it is a TCP port: an `int` in 1 .. 65535 (0 too when *allow_zero*).

    Raises:
        ArgumentTypeError: for a non-int.
        ConfigurationError: for an int outside the range.
    """
    low = 0 if allow_zero else 1
    expected = f"a TCP port in {low}..65535"
    checked = _int(name, value, low, expected)
    if checked > 65535:
        raise bad_value(name, value, expected)
    return checked
