"""The examples in the balancing docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "scalekit.balancing.base",
    "scalekit.balancing.round_robin",
    "scalekit.balancing.smooth_weighted_round_robin",
    "scalekit.balancing.weighted_round_robin",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
