"""Fixtures of the caching family: each cache class for the conformance suite."""

from __future__ import annotations

import pytest

from tests.caching.caching_factories import FACTORIES, Factory


@pytest.fixture(params=sorted(FACTORIES))
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(policy: str) -> Factory:
    return FACTORIES[policy]
