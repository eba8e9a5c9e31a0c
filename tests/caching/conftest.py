"""Fixtures of the caching family: each cache class for the conformance suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from caching_factories import FACTORIES, Factory

# The trace benchmarks live in the repository's `benchmarks` package.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(params=sorted(FACTORIES))
def policy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(policy: str) -> Factory:
    return FACTORIES[policy]
