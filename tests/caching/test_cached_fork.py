"""`cached` and `cachedmethod` in a child forked while other threads are inside them.

A forked child has only the thread that forked. A call in progress in
another thread (its flight in the table, the table's lock perhaps held) never
finishes there, so the child must start with no flight in progress; a child
calling the function must get its result. Each child reports through a pipe
and the parent waits at most `_CHILD_TIMEOUT` seconds for it: a hang fails
the test instead of stalling the run. The module takes about half a second.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import scalekit.caching as sk

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")

_CHILD_TIMEOUT = 5.0  # a child's call takes microseconds; this only bounds a hang


def _in_child(call: Callable[[], Any]) -> str:
    """Fork; the child runs *call* and writes its repr back. Returns it, or "hung"."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock:
        # that is the case under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's teardown
        try:
            os.close(r)
            os.write(w, repr(call()).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = "hung"
    try:
        ready, _, _ = select.select([r], [], [], _CHILD_TIMEOUT)
        if ready:
            out = os.read(r, 4096).decode()
    finally:
        os.close(r)
        if out == "hung":
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return out


def test_a_child_forked_while_a_thread_computes_the_key_gets_its_own_result() -> None:
    inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    @sk.cached(sk.LRUCache(8))
    def load(x: int) -> int:
        calls.append(x)
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            release.wait(10)
        return x * 10

    leader = threading.Thread(target=load, args=(1,))
    leader.start()
    try:
        assert inside.wait(10)
        # The parent's flight for 1 is in progress; its leader does not exist in the child.
        assert _in_child(lambda: (load(1), load(2))) == "(10, 20)"
    finally:
        release.set()
        leader.join(10)
    assert load(1) == 10 and calls == [1]  # the parent is untouched by the child


def test_a_child_forked_while_a_method_is_computed_gets_its_own_result() -> None:
    inside, release = threading.Event(), threading.Event()

    class Prices:
        def __init__(self) -> None:
            self.cache: sk.LRUCache[Any, Any] = sk.LRUCache(8)

        @sk.cachedmethod(lambda self: self.cache)
        def price(self, sku: str) -> int:
            if threading.current_thread() is not threading.main_thread():
                inside.set()
                release.wait(10)
            return len(sku)

    shop = Prices()
    leader = threading.Thread(target=shop.price, args=("abc",))
    leader.start()
    try:
        assert inside.wait(10)
        assert _in_child(lambda: shop.price("abc")) == "3"
    finally:
        release.set()
        leader.join(10)


def test_forking_in_a_loop_while_threads_call_never_hangs_the_child() -> None:
    # No cache: every call goes through the single-flight table and its lock,
    # so each fork lands while the other threads hold one or are in a flight.
    stop = threading.Event()

    @sk.cached(None)
    def work(x: int) -> int:
        return sum(range(200)) + x

    def hammer(offset: int) -> None:
        while not stop.is_set():
            for x in range(4):
                work(x + offset)

    threads = [threading.Thread(target=hammer, args=(i % 2,)) for i in range(3)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    for t in threads:
        t.start()
    try:
        results = []
        while len(results) < 20 and "hung" not in results:  # one hang is enough to fail
            results.append(_in_child(lambda: [work(x) for x in range(5)]))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sys.setswitchinterval(old)
    expected = repr([sum(range(200)) + x for x in range(5)])
    assert results == [expected] * 20


@pytest.mark.parametrize("fresh", [False, True], ids=["SingleFlight", "FreshFlights"])
def test_a_child_forked_during_a_redis_tier_load_loads_the_key_itself(fresh: bool) -> None:
    # RedisCache's in-process single-flight (FreshFlights; SingleFlight is its plain form).
    from scalekit.caching._cache_aside import FreshFlights
    from scalekit.caching._single_flight import SingleFlight

    inside, release = threading.Event(), threading.Event()

    def slow() -> str:
        inside.set()
        release.wait(10)
        return "parent"

    def never() -> Exception:
        return TimeoutError("waited too long")

    if fresh:
        table = FreshFlights()

        def run(fn: Callable[[], str]) -> Any:
            return table.run("k", time.monotonic(), lambda read_at: fn(), 10.0, never)[0]
    else:
        plain = SingleFlight()

        def run(fn: Callable[[], str]) -> Any:
            return plain.run("k", fn, 10.0, never)

    leader = threading.Thread(target=run, args=(slow,))
    leader.start()
    try:
        assert inside.wait(10)
        # Unreset, the child would wait for the parent's leader until the 10 s timeout.
        assert _in_child(lambda: run(lambda: "child")) == "'child'"
    finally:
        release.set()
        leader.join(10)
