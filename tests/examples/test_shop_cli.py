"""The shop's command line: odd input is refused before the run, naming the option and value.

Each case is one CLI call that argparse refuses (exit 2, no traceback, no
report); about 0.5 s each.
"""

from __future__ import annotations

import pytest

from scalekit.testing import RedisServer

from .test_shop import _shop_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--redis", "foo"], "argument --redis: expected a URL redis://HOST:PORT/DB"),
        (["--redis", ""], "argument --redis: expected a URL redis://HOST:PORT/DB"),
        (["--redis", "redis://127.0.0.1:6379/x"], "argument --redis: expected a database"),
        (["--redis-cluster", ""], "argument --redis-cluster: expected a URL"),
        (
            ["--redis-cluster", "redis://127.0.0.1:7000/3"],
            "argument --redis-cluster: a Redis Cluster has only database 0",
        ),
        (["--zookeeper", ""], "argument --zookeeper: expected HOST:PORT[,HOST:PORT...]"),
        (
            ["--zookeeper", "not a host list::"],
            "argument --zookeeper: expected HOST:PORT[,HOST:PORT...]",
        ),
        (["--duration", "nan"], "argument --duration: expected a finite number of seconds"),
        (["--duration", "-1"], "--duration must be > 0, got -1"),
        (
            ["--hot-stock", "9223372036854775808"],
            "argument --hot-stock: expected a whole number 1..2**62, got 9223372036854775808",
        ),
        (["--buyers", "0"], "argument --buyers: expected a whole number 1..2**62, got 0"),
        (["--shards", "two"], "argument --shards: expected a whole number >= 1, got 'two'"),
        (["--data", "/dev/null"], "--data '/dev/null': expected a directory, and it is a file"),
        (["--data", "/proc/self"], "--data '/proc/self': expected a writable directory"),
    ],
)
def test_odd_input_exits_2_naming_the_option_the_value_and_what_was_expected(
    args: list[str], message: str
) -> None:
    out = _shop_cli(*args, timeout=30)
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""


def test_a_database_number_redis_refuses_exits_2_naming_the_url(redis_server: RedisServer) -> None:
    url = f"redis://{redis_server.host}:{redis_server.port}/99"
    out = _shop_cli("--redis", url, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"--redis {url}: Redis refused it:" in out.stderr, out.stderr
    assert "DB index is out of range" in out.stderr
    assert "Traceback" not in out.stderr
