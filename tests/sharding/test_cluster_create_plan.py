"""cluster_slot_ranges() against the plan of a real `redis-cli --cluster create`.

redis-cli prints its slot plan before asking to apply it; one empty
cluster-enabled server named N times is enough for it to plan N masters, and
answering "no" applies nothing. About 3 s.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from scalekit.sharding import cluster_slot_ranges
from scalekit.testing import RedisServer, find_free_port

pytestmark = pytest.mark.redis
PLAN = re.compile(r"Master\[(\d+)\] -> Slots (\d+) - (\d+)")


@pytest.fixture(scope="module")
def cluster_node() -> Iterator[RedisServer]:
    server = RedisServer(
        find_free_port(also_free=(10000,)),  # the cluster bus listens on port + 10000
        extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "n.conf"],
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


def redis_cli_plan(server: RedisServer, masters: int) -> list[tuple[int, int]]:
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli is part of the test environment"
    node = f"{server.host}:{server.port}"
    result = subprocess.run(
        [cli, "--cluster", "create", *([node] * masters), "--cluster-replicas", "0"],
        input="no\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    plan = [(int(a), int(b)) for i, a, b in PLAN.findall(result.stdout)]
    assert len(plan) == masters, result.stdout[-2000:] + result.stderr[-2000:]
    return plan


@pytest.mark.parametrize("masters", [3, 77, 78, 100, 999, 1000, 1768, 2000])
def test_slot_ranges_equal_redis_clis_plan(cluster_node: RedisServer, masters: int) -> None:
    assert cluster_slot_ranges(masters) == redis_cli_plan(cluster_node, masters)
