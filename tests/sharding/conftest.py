"""Fixtures of the sharding tests: two real Redis servers to move keys between."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scalekit.testing import RedisServer


@pytest.fixture
def redis_pair(fresh_redis_server: RedisServer) -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two standalone redis-servers of this test's own (the fixture's and a second one)."""
    second = RedisServer()  # fresh_redis_server already proved the binary is there
    second.start()
    try:
        yield fresh_redis_server, second
    finally:
        second.close()
