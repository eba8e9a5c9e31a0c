"""The shop benchmark's --quick mode runs, so the benchmark cannot rot."""

from __future__ import annotations

from pathlib import Path

from benchmarks.shop.__main__ import main
from scalekit.testing import RedisServer, ZooKeeperServer


def test_quick_run_reports_every_backend(
    tmp_path: Path, redis_server: RedisServer, zookeeper_server: ZooKeeperServer
) -> None:
    args = [
        "--quick",
        "--out",
        str(tmp_path),
        "--redis",
        redis_server.url,
        "--zookeeper",
        zookeeper_server.hosts,
    ]
    assert main(args) == 0
    text = (tmp_path / "shop-quick.txt").read_text()
    for backend in ("memory", "redis", "zookeeper"):
        assert f"\n{backend} " in text
    assert "slowest:" in text and "lock" in text
    assert (tmp_path / "shop-scaling-quick.png").stat().st_size > 10_000
