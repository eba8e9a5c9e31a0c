"""The shop's command line: odd input is refused before the run, naming the option and value.

Each case is one CLI call that argparse refuses (exit 2, no traceback, no
report); about 0.5 s each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scalekit.testing import RedisServer

from .test_shop import _env, _shop_cli


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
        (["--shards", "100000"], "argument --shards: expected a whole number 1..64, got 100000"),
        (
            ["--redis", "redis://127.0.0.1:6379/0?socket_timeout=abc"],
            "argument --redis: expected a URL redis-py accepts, got "
            "'redis://127.0.0.1:6379/0?socket_timeout=abc': Invalid value for 'socket_timeout'",
        ),
        (
            ["--redis-cluster", "redis://127.0.0.1:7000/0?health_check_interval=soon"],
            "argument --redis-cluster: expected a URL redis-py accepts, got "
            "'redis://127.0.0.1:7000/0?health_check_interval=soon': Invalid value for "
            "'health_check_interval'",
        ),
        (
            ["--plot", "/nonexistent/dir/x.png"],
            "--plot '/nonexistent/dir/x.png': expected a PNG path in an existing directory, "
            "and '/nonexistent/dir' does not exist",
        ),
        (
            ["--plot", "/dev/null/x.png"],
            "--plot '/dev/null/x.png': expected a PNG path in an existing directory, "
            "and '/dev/null' is not a directory",
        ),
        (["--plot", "/tmp"], "--plot '/tmp': expected a PNG file path, and it is a directory"),
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


def test_an_empty_data_path_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.shop", "--data", "", "--duration", "0.3"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "argument --data: expected a directory path, got ''" in out.stderr, out.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written into the current directory
