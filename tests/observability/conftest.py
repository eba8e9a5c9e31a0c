"""Each test sees the event log's rate limit fresh, as a program does at start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scalekit.observability import core


@pytest.fixture(autouse=True)
def _fresh_event_rate_limit() -> Iterator[None]:
    core._storms.clear()
    yield
    core._storms.clear()
