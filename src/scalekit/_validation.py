"""Argument checks shared by every family.

Each check raises `ConfigurationError` with a
message that names the argument, shows the value and says what was
expected, and returns the value so a constructor can write
`self._maxsize = positive_int("maxsize", maxsize)`.
"""

from __future__ import annotations

import math
from typing import Any

from .exceptions import ConfigurationError


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """Return *value* if it is an `int` >= 1, else raise ConfigurationError."""
    if not _is_int(value) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """Return *value* if it is an `int` >= 0, else raise ConfigurationError."""
    if not _is_int(value) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    """Return *value* as a float if it is a finite real number > 0."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def non_negative_number(name: str, value: Any) -> float:
    """Return *value* as a float if it is a finite real number >= 0."""
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def fraction(name: str, value: Any, *, inclusive_low: bool = True) -> float:
    """Return *value* as a float if it lies in [0, 1] (or (0, 1])."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= 0 if inclusive_low else value > 0) and value <= 1
    if not ok:
        low = "[0, 1]" if inclusive_low else "(0, 1]"
        raise ConfigurationError(f"{name} must be a number in {low}, got {value!r}")
    return float(value)


def non_empty_str(name: str, value: Any) -> str:
    """Return *value* if it is a non-empty `str`."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    return value
