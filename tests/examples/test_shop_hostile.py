"""The shop against a hostile operator: a full disk, Ctrl-C, a worker frozen in a transaction.

Each test runs the real CLI or real worker processes and ends with the
conservation audit. About 30 s in all: each run is a few seconds of load.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.shop.runner import ShopRun
from examples.shop.simulation import Settings
from examples.shop.storage import ShopStorage
from scalekit.testing import RedisServer

from .test_shop import ROOT, _env, assert_conserved
from .test_shop_faults import _first_order, _has_orders


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.shop", *args],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def _report(stdout: str) -> dict[str, str]:
    """The report's lines by their first word(s) up to the colon."""
    return {line.split(":", 1)[0]: line for line in stdout.splitlines() if ":" in line}


def test_a_full_disk_mid_run_gives_a_report_an_exact_audit_and_exit_1(tmp_path: Path) -> None:
    """Files may not grow past 1.5 MB (RLIMIT_FSIZE), so SQLite's writes fail mid-run."""

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    child = _cli("--duration", "3", "--data", str(tmp_path), preexec_fn=small_disk)
    stdout, stderr = child.communicate(timeout=120)
    report = _report(stdout)
    assert child.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr, stderr[:2000]
    assert report["oversold"] == "oversold: 0"
    assert report["audit (initial = left + sold + reserved)"].split(";")[0].endswith("exact")
    # SQLite reports a write past the limit as an I/O error (or a full disk),
    # which the shop's database layer turns into a scalekit error naming the
    # operation that failed: never a raw sqlite3.OperationalError.
    assert {"  BackendUnavailableError (buyer)", "  BackendError (buyer)"} & set(report), stdout
    assert "  OperationalError (buyer)" not in report, stdout
    assert re.search(
        r"sqlite \S+: \S+ failed: (disk I/O error|database or disk is full)", stdout
    ), stdout
    assert report.get("NOT SETTLED", "").startswith("NOT SETTLED: "), stdout
    # The data stays consistent; with room again the next run's sweep settles it.
    assert_conserved(ShopStorage(tmp_path, 4), settled=False)
    again = _cli("--duration", "1", "--data", str(tmp_path))
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stdout + stderr
    assert_conserved(ShopStorage(tmp_path, 4))


def test_ctrl_c_stops_the_run_promptly_with_a_sweep_a_report_and_exit_130(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    child = _cli(
        "--redis",
        redis_server.url,
        "--workers",
        "2",
        "--buyers",
        "8",
        "--duration",
        "40",
        "--data",
        str(tmp_path),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _has_orders(tmp_path / "catalog.sqlite3"):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group
        interrupted = time.monotonic()
        stdout, stderr = child.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 130, stdout + stderr
    # Buyers end their current step (a lock wait is at most lock_timeout, 5 s), then the sweep.
    assert took < 5.0 + 5.0, took
    assert "Traceback" not in stderr, stderr[:2000]
    report = _report(stdout)
    assert report["INTERRUPTED"].startswith("INTERRUPTED: the load was stopped early")
    assert report["audit (initial = left + sold + reserved)"].split(";")[0].endswith("exact")
    assert "DIED" not in report, stdout
    assert_conserved(ShopStorage(tmp_path, 4))


# Put first on a worker's PYTHONPATH, this holds every spawned worker at
# interpreter start-up (before it imports the shop) until the test releases
# it, so a Ctrl-C lands there for sure: the shop is not changed for it.
_HOLD_WORKER_STARTUP = """
import os, sys, time
from pathlib import Path

if "--multiprocessing-fork" in sys.argv:
    here = Path(__file__).parent
    (here / f"starting-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not (here / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""


def test_ctrl_c_while_the_workers_start_is_the_same_prompt_stop_sweep_report_and_exit_130(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """SIGINT to the group while both workers are still starting, held before their imports."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOLD_WORKER_STARTUP)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    data = tmp_path / "data"
    child = subprocess.Popen(
        [
            sys.executable,
            *("-m", "examples.shop", "--redis", redis_server.url, "--workers", "2"),
            *("--buyers", "8", "--duration", "40", "--data", str(data)),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(hook.glob("starting-*"))) < 2:  # both workers held in start-up
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C at a terminal: the whole group
        interrupted = time.monotonic()
        (hook / "release").touch()
        stdout, stderr = child.communicate(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        (hook / "release").touch()
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[:2000]
    assert child.returncode == 130, stdout + stderr
    # The workers finish starting (an import, a connection), then stop at once.
    assert took < 10.0, took
    report = _report(stdout)
    assert report["INTERRUPTED"].startswith("INTERRUPTED: the load was stopped early")
    assert report["audit (initial = left + sold + reserved)"].split(";")[0].endswith("exact")
    assert "DIED" not in report, stdout
    assert_conserved(ShopStorage(data, 4))


def _wal_writer(database: Path) -> int | None:
    """The pid holding *database*'s WAL write lock, read from Linux's ``/proc/locks``.

    In WAL mode a writer holds an exclusive POSIX lock on byte 120 of the
    ``-shm`` file from ``BEGIN IMMEDIATE`` until its ``COMMIT``/``ROLLBACK``.
    """
    try:
        st = (database.parent / f"{database.name}-shm").stat()
    except FileNotFoundError:
        return None
    file = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 fe:00:5678 120 120" ("->" marks a waiter)
        if fields[1:4] == ["POSIX", "ADVISORY", "WRITE"] and fields[5:8] == [file, "120", "120"]:
            return int(fields[4])
    return None


def _stopped(pid: int) -> bool:
    """True once *pid* is stopped (state T in ``/proc/PID/stat``): SIGSTOP has landed."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] in "Tt"


def test_a_worker_frozen_inside_a_catalog_transaction_kills_no_other_buyer(
    tmp_path: Path, fresh_redis_server_aof: RedisServer
) -> None:
    """SIGSTOP a worker while it holds the catalog's write lock, past the busy timeout (1 s here).

    The test watches the lock (``/proc/locks``, Linux) until a worker holds
    it, stops that worker and checks it still holds it once stopped: frozen
    inside a write transaction, by observation. The other workers'
    statements fail with "database is locked"; their buyers count it and
    retry with a bounded back-off, and none dies. A worker starting
    meanwhile opens the shop, which only reads the catalog. About 8 s.
    """
    settings = Settings(
        buyers=9,
        workers=3,
        duration=6.0,
        hot_stock=100_000,
        busy_timeout=1.0,
        redis=fresh_redis_server_aof.url,
    )
    catalog = tmp_path / "catalog.sqlite3"
    shop_run = ShopRun(settings, tmp_path)
    shop_run.start()
    try:
        _first_order(shop_run)
        workers = {w.pid for w in shop_run.workers}
        victim = None
        deadline = time.monotonic() + settings.duration  # while the load runs
        while victim is None:
            assert time.monotonic() < deadline, "no worker took the catalog's write lock"
            holder = _wal_writer(catalog)
            if holder not in workers:
                time.sleep(0.001)
                continue
            os.kill(holder, signal.SIGSTOP)
            while not _stopped(holder):
                time.sleep(0.001)
            if _wal_writer(catalog) == holder:  # a stopped process cannot let go of it
                victim = holder
            else:  # it committed before the signal landed
                os.kill(holder, signal.SIGCONT)
        probe = sqlite3.connect(catalog, timeout=0.2, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                probe.execute("BEGIN IMMEDIATE")
        finally:
            probe.close()
        frozen_at = time.monotonic()
        # A worker starting now opens the shop as a worker does, within its busy timeout.
        opened = ShopStorage(tmp_path, settings.shards, settings.busy_timeout)
        assert opened.catalog.shop_id == shop_run.storage.catalog.shop_id  # type: ignore[union-attr]
        assert _wal_writer(catalog) == victim  # still frozen inside its transaction
        # The freeze itself: past the others' 1 s busy timeout.
        time.sleep(max(0.0, frozen_at + 2.5 - time.monotonic()))
    finally:
        for w in shop_run.workers:
            os.kill(w.pid, signal.SIGCONT)
    storage, summary = shop_run.wait()
    assert summary.died == []
    assert summary.errors["BackendUnavailableError (buyer)"] > 0, summary.errors  # locked
    assert summary.placed > 0
    assert_conserved(storage)


def test_a_cluster_master_killed_and_left_down_gives_a_report_and_no_traceback(
    tmp_path: Path,
) -> None:
    """4 workers on a 3-master Cluster; one master is killed 1 s in and stays down (~20 s).

    The other masters answer CLUSTERDOWN ("The cluster is down"): an outage
    buyers count, and the sweep leaves what it cannot settle for the next run.
    """
    from scalekit.testing import RedisClusterServers

    with RedisClusterServers(appendonly=True) as cluster:
        child = _cli(
            *("--redis-cluster", cluster.nodes[0].url, "--workers", "4", "--buyers", "8"),
            *("--duration", "5", "--hot-stock", "100000", "--data", str(tmp_path)),
        )
        try:
            deadline = time.monotonic() + 60
            while not _has_orders(tmp_path / "catalog.sqlite3"):
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(1.0)  # a second of load, then the fault
            cluster.nodes[1].kill()
            stdout, stderr = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    report = _report(stdout)
    assert "Traceback" not in stderr, stderr[:3000]
    assert report["audit (initial = left + sold + reserved)"].split(";")[0].endswith("exact")
    assert report["oversold"] == "oversold: 0"
    assert "DIED" not in report, stdout
    assert any(k.startswith("  BackendUnavailableError (") for k in report), stdout
    assert child.returncode == (1 if "NOT SETTLED" in report else 0), stdout
    assert_conserved(ShopStorage(tmp_path, 4), settled="NOT SETTLED" not in report)


def test_a_product_key_the_cache_cannot_decode_does_not_kill_the_buyers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Foreign bytes under a hot product's cache key (another tool, another serializer)
    are a miss the cache replaces: every buyer lives and the run exits 0. About 4 s."""
    import redis

    from .test_shop import _shop_cli

    common = ["--redis", redis_server.url, "--duration", "1", "--buyers", "4"]
    first = _shop_cli(*common, "--data", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    shop_id = ShopStorage(tmp_path, 4).catalog.shop_id
    client = redis.Redis.from_url(redis_server.url)
    for n, raw in enumerate((b"hello", b"v0123:notanumber:{}", b"v" + b"0" * 32 + b":0:{bad")):
        client.set(f"shop:{shop_id}:product:{{hot-{n}}}", raw, px=60_000)
    second = _shop_cli(*common, "--data", str(tmp_path))
    client.close()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "DIED" not in second.stdout and "errors: 0" in second.stdout.splitlines()
    assert_conserved(ShopStorage(tmp_path, 4))
