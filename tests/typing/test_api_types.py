"""The public API's types catch a user's mistakes: `mypy --strict` on tests/typing/api_types.py.

Runs mypy in-process with the project's mypy cache: about 2 s warm, 10 s cold.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from scalekit.observability import METRICS
from scalekit.observability.catalog import CounterName, GaugeName, HistogramName
from scalekit.sharding.time_router import INTERVALS, Interval

mypy_api = pytest.importorskip("mypy.api")

HERE = Path(__file__).parent


def test_a_user_program_type_checks_and_every_expected_error_is_reported() -> None:
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--no-error-summary", str(HERE / "api_types.py")]
    )
    assert status == 0, stdout + stderr


@pytest.mark.parametrize(
    ("names", "kind"),
    [(CounterName, "counter"), (GaugeName, "gauge"), (HistogramName, "histogram")],
)
def test_the_metric_name_literals_are_the_catalog(names: object, kind: str) -> None:
    assert typing.get_args(names) == tuple(n for n, s in METRICS.items() if s.kind == kind)


def test_the_interval_literal_is_the_accepted_intervals() -> None:
    assert typing.get_args(Interval) == INTERVALS
