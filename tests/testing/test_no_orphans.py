"""A server started by a process that dies does not outlive it.

Test runs get killed: a timeout plugin's SIGKILL, a crashed xdist worker,
a second Ctrl-C, an OOM kill. Each test here starts a real server from a
child Python process (standing in for a pytest worker), ends the child
the way a run ends, and asserts the server is gone within `BOUND` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scalekit.testing import RedisServer, ServerStartError

ROOT = Path(__file__).resolve().parents[2]
# The kernel delivers the parent-death signal at once; the margin covers
# the child's exit and a loaded machine.
BOUND = 5.0

HOLDER = textwrap.dedent(
    """
    import sys, threading, time
    from scalekit.testing import PostgresServer, RedisServer

    mode = sys.argv[1]
    servers = []
    if mode == "thread":
        # Started from a thread that has finished by the time the process dies:
        # the server must live as long as the process, not the thread.
        t = threading.Thread(target=lambda: servers.append(RedisServer()) or servers[0].start())
        t.start()
        t.join()
        server = servers[0]
    elif mode == "postgres":
        server = PostgresServer()  # as root: run as the postgres user
        server.start()
    else:
        server = RedisServer()
        server.start()
    print(server.pid, flush=True)
    if mode == "exit":
        sys.exit(0)  # never closed: an interpreter exit must still stop it
    if mode == "interrupt":
        raise KeyboardInterrupt
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    """True while *pid* runs (a zombie, reaped by nobody yet, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone_within(pid: int, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _holder(mode: str) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip().isdigit(), f"the holder did not start a server: {line!r}"
    return child, int(line)


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process states from /proc"
)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_server_dies_with_the_process_that_started_it(sig: signal.Signals) -> None:
    child, server_pid = _holder("main")
    try:
        assert _alive(server_pid)
        child.send_signal(sig)
        child.wait(timeout=BOUND)
        assert _gone_within(server_pid, BOUND), f"redis-server {server_pid} outlived its parent"
    finally:
        child.kill()
        child.wait()
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_a_server_started_from_a_finished_thread_lives_until_the_process_dies() -> None:
    child, server_pid = _holder("thread")
    try:
        # The thread that spawned it has exited; the server must still be serving.
        time.sleep(0.2)  # long enough for a parent-death signal tied to the thread to land
        assert _alive(server_pid), "the server died with the thread that started it"
        child.kill()
        child.wait(timeout=BOUND)
        assert _gone_within(server_pid, BOUND), f"redis-server {server_pid} outlived its parent"
    finally:
        child.kill()
        child.wait()
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


@pytest.mark.parametrize("mode", ["exit", "interrupt"])
def test_a_server_never_closed_is_stopped_at_interpreter_exit(mode: str) -> None:
    child, server_pid = _holder(mode)
    try:
        child.wait(timeout=BOUND)
        assert _gone_within(server_pid, BOUND), f"redis-server {server_pid} outlived its parent"
    finally:
        child.kill()
        child.wait()
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_a_server_that_fails_to_start_leaves_no_process(tmp_path: Path) -> None:
    spawned: list[int] = []

    class NeverReady(RedisServer):
        """A server whose probe never succeeds: start() times out with it running."""

        def spawn(self) -> None:
            super().spawn()
            assert self.pid is not None
            spawned.append(self.pid)

        def is_ready(self) -> bool:
            return False

    server = NeverReady(workdir=tmp_path, startup_timeout=0.5)
    with pytest.raises(ServerStartError):
        server.start()
    assert len(spawned) == 1 and server.pid is None
    assert _gone_within(spawned[0], BOUND)


def test_a_failed_start_in_a_with_block_removes_the_working_directory() -> None:
    class NeverReady(RedisServer):
        def is_ready(self) -> bool:
            return False

    server = NeverReady(startup_timeout=0.3)
    assert server.workdir.is_dir()
    with pytest.raises(ServerStartError), server:
        pass
    assert not server.running and not server.workdir.exists()


def test_a_postgres_server_dies_with_the_process_that_started_it() -> None:
    """Run as root, the postmaster runs as another user: a credential change clears the
    parent-death signal, so it must be set after the change (about 5 s: initdb)."""
    child, server_pid = _holder("postgres")
    try:
        assert _alive(server_pid)
        child.kill()
        child.wait(timeout=BOUND)
        assert _gone_within(server_pid, BOUND), f"postgres {server_pid} outlived its parent"
    finally:
        child.kill()
        child.wait()
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


CLUSTER_HOLDER = textwrap.dedent(
    """
    import time
    from scalekit.testing import RedisClusterServers

    cluster = RedisClusterServers(3, replicas=1)
    cluster.start()
    print(" ".join(str(m.pid) for m in cluster.members), flush=True)
    time.sleep(600)
    """
)


def test_a_cluster_with_replicas_dies_with_the_process_that_started_it() -> None:
    """About 3 s: six redis-servers start, then their starter is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CLUSTER_HOLDER],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    pids = [int(p) for p in child.stdout.readline().split()]
    try:
        assert len(pids) == 6 and all(_alive(pid) for pid in pids)
        child.kill()
        child.wait(timeout=BOUND)
        deadline = time.monotonic() + BOUND
        for pid in pids:
            assert _gone_within(pid, max(0.0, deadline - time.monotonic())), (
                f"redis-server {pid} outlived its parent"
            )
    finally:
        child.kill()
        child.wait()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
