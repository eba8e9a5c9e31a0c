"""fork() while other threads log, route and collect: the child's first event never hangs."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from scalekit.locking import MemoryLock
from scalekit.observability import MemoryRecorder, Telemetry, log_event, watch_locks, watch_router
from scalekit.sharding import HashRouter

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")

CHILD_BOUND = 3.0  # seconds a child's lock, log, route and collect may take: far above ~1 ms


def _child_work(hub: Telemetry, router: HashRouter) -> int:
    lock = MemoryLock("f:1")
    lock.release(lock.acquire())
    log_event("scalekit.balancer.panic", balancer="child", active=False)
    router.route("user-1")
    routes = sum(s.value for s in hub.collect() if s.metric == "scalekit_router_routes")
    return 0 if routes >= 1 else 3


def _fork_and_wait(hub: Telemetry, router: HashRouter) -> int:
    """Fork; the child does its work and exits. Returns its exit code, or -1 if it hung."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 4
        try:
            code = _child_work(hub, router)
        finally:
            os._exit(code)
    deadline = time.monotonic() + CHILD_BOUND
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)  # polling a child process: there is no event to wait on
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -1


def _setup() -> tuple[Telemetry, HashRouter]:
    hub = Telemetry()
    hub.subscribe(MemoryRecorder())
    watch_locks("f", telemetry=hub)
    router = HashRouter(["s0", "s1"])
    watch_router(router, "users", telemetry=hub)
    return hub, router


def test_every_observability_lock_held_at_fork_time_is_free_in_the_child() -> None:
    import scalekit.observability._emit as emit
    import scalekit.observability.core as core

    hub, router = _setup()
    router.route("warm")
    held = [core._storm_lock, emit._state_lock, hub._lock, *emit._fork_locks()]
    for lock in held:  # as if other threads were inside each at fork time
        lock.acquire()
    try:
        code = _fork_and_wait(hub, router)
    finally:
        for lock in held:
            lock.release()
    assert code == 0


def test_children_forked_while_a_thread_logs_and_routes_never_hang() -> None:
    hub, router = _setup()
    logger = logging.getLogger("scalekit")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    # Only scalekit's own path: a stream handler's buffer held by the logging thread
    # at fork time hangs any child that writes to it, whatever library logs.
    logger.propagate = False
    stop = threading.Event()

    def busy() -> None:
        n = 0
        while not stop.is_set():
            log_event("scalekit.balancer.panic", balancer="x", active=True)
            router.route(f"k{n}")
            n += 1

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        codes = [_fork_and_wait(hub, router) for _ in range(30)]
    finally:
        stop.set()
        thread.join()
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    assert codes == [0] * 30


def test_a_child_scrapes_a_registry_whose_lock_a_parents_scrape_held_at_fork() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from scalekit.observability import PrometheusCollector

    hub, _router = _setup()
    registry = CollectorRegistry()
    collector = PrometheusCollector(hub).register(registry)
    registry._lock.acquire()  # as if a scrape thread were inside registry.collect()
    try:
        pid = os.fork()
        if pid == 0:  # the child
            code = 4
            try:
                text = generate_latest(registry).decode()
                code = 0 if 'scalekit_lock_acquisitions_total{lock="f"}' in text else 3
            finally:
                os._exit(code)
    finally:
        registry._lock.release()
    deadline = time.monotonic() + CHILD_BOUND
    code = -1
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.005)  # polling a child process: there is no event to wait on
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    collector.close()
    assert code == 0
