"""The contract every lock backend keeps, run on real servers for each of them."""

from __future__ import annotations

import threading
import time

import pytest

from scalekit.exceptions import (
    ArgumentTypeError,
    ConfigurationError,
    LockError,
    LockLostError,
    LockNotOwnedError,
    LockTimeoutError,
)
from scalekit.locking import Lease

from .conftest import BOUND_MARGIN, LockFactory, unique


def test_acquire_returns_a_lease_with_a_positive_token(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    lease = lock.acquire()
    assert isinstance(lease, Lease)
    assert lease.token > 0
    assert not lease.lost.is_set()
    lease.release()
    assert lease.released


def test_tokens_strictly_increase_across_lock_objects(make_lock: LockFactory) -> None:
    name = unique()
    tokens = []
    for _ in range(5):
        for lock in (make_lock(name), make_lock(name)):
            with lock as lease:
                tokens.append(lease.token)
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == len(tokens)


def test_a_held_lock_is_not_granted_to_another(make_lock: LockFactory) -> None:
    name = unique()
    first, second = make_lock(name), make_lock(name)
    assert not second.locked()
    lease = first.acquire()
    assert lease is not None
    assert second.locked()
    assert second.acquire(blocking=False) is None
    lease.release()
    assert not second.locked()
    again = second.acquire(blocking=False)
    assert again is not None and again.token > lease.token
    again.release()


def test_timeout_raises_lock_timeout_error_in_bounded_time(make_lock: LockFactory) -> None:
    name = unique()
    holder = make_lock(name).acquire()
    other = make_lock(name)
    started = time.monotonic()
    with pytest.raises(LockTimeoutError) as info, other.acquire(timeout=0.3):
        pytest.fail("the body must not run without the lock")
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed <= 0.3 + BOUND_MARGIN
    assert info.value.name == other.name
    assert isinstance(info.value, TimeoutError)
    assert holder is not None
    holder.release()
    # The timed-out waiter left no trace: the lock is free for a non-blocking try.
    late = other.acquire(blocking=False)
    assert late is not None
    late.release()


def test_a_waiter_is_woken_by_release(make_lock: LockFactory) -> None:
    name = unique()
    holder = make_lock(name, ttl=30.0).acquire()
    assert holder is not None
    got: list[Lease] = []
    waiter = threading.Thread(target=lambda: got.append(make_lock(name, ttl=30.0).acquire()))
    waiter.start()
    time.sleep(0.2)
    assert not got
    released_at = time.monotonic()
    holder.release()
    waiter.join(5)
    woke_after = time.monotonic() - released_at
    assert got and got[0].token > holder.token
    assert woke_after < 0.5
    got[0].release()


def test_release_twice_raises_not_owned(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    lease = lock.acquire()
    assert lease is not None
    lease.release()
    with pytest.raises(LockNotOwnedError):
        lease.release()
    with pytest.raises(LockNotOwnedError):
        lock.release()


def test_release_from_a_thread_that_holds_nothing_raises_not_owned(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    lease = lock.acquire()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            lock.release()
        except LockError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], LockNotOwnedError)
    assert lease is not None
    lease.release()


def test_with_lock_releases_on_exception(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    with pytest.raises(RuntimeError), lock:
        raise RuntimeError("boom")
    lease = lock.acquire(blocking=False)
    assert lease is not None
    lease.release()


def test_reentrant_lock_counts_per_owner(make_lock: LockFactory) -> None:
    name = unique()
    lock = make_lock(name, reentrant=True)
    outer = lock.acquire()
    inner = lock.acquire(timeout=1)
    assert inner is outer
    assert make_lock(name).acquire(blocking=False) is None
    lock.release()
    assert make_lock(name).acquire(blocking=False) is None  # still held once
    lock.release()
    free = make_lock(name).acquire(blocking=False)
    assert free is not None
    free.release()


def test_non_reentrant_lock_does_not_grant_itself_twice(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    lease = lock.acquire()
    assert lock.acquire(blocking=False) is None
    assert lease is not None
    lease.release()


@pytest.mark.parametrize(("bad", "error"), [("", ConfigurationError), (None, ArgumentTypeError)])
def test_an_empty_or_missing_name_is_refused(
    make_lock: LockFactory, bad: object, error: type[Exception]
) -> None:
    """An empty name is a bad value; None is a wrong type (scalekit.exceptions' rule)."""
    with pytest.raises(error, match="must be a non-empty string"):
        make_lock(bad)


def test_negative_timeout_is_a_configuration_error(make_lock: LockFactory) -> None:
    lock = make_lock(unique())
    with pytest.raises(ConfigurationError, match=r"timeout must be a non-negative .* got -1"):
        lock.acquire(timeout=-1)
    with pytest.raises(ConfigurationError, match="timeout must be None when blocking is False"):
        lock.acquire(blocking=False, timeout=1)


@pytest.mark.parametrize("ttl", [0, -1.5, float("nan")])
def test_non_positive_ttl_is_a_configuration_error(make_ttl_lock: LockFactory, ttl: float) -> None:
    with pytest.raises(ConfigurationError, match=r"ttl must be a positive finite number"):
        make_ttl_lock(unique(), ttl=ttl)


def test_expired_lease_is_lost_and_release_says_so(make_ttl_lock: LockFactory) -> None:
    name = unique()
    seen: list[Lease] = []
    lock = make_ttl_lock(name, ttl=0.3, on_lost=seen.append)
    lease = lock.acquire()
    assert lease is not None
    assert lease.lost.wait(3)
    deadline = time.monotonic() + 3
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [lease]
    successor = make_ttl_lock(name, ttl=5.0).acquire(timeout=3)
    assert successor is not None and successor.token > lease.token
    with pytest.raises(LockLostError):
        lease.release()
    successor.release()


def test_auto_renew_keeps_the_lease_past_its_ttl(make_ttl_lock: LockFactory) -> None:
    name = unique()
    lease = make_ttl_lock(name, ttl=0.4, auto_renew=True).acquire()
    assert lease is not None
    assert not lease.lost.wait(1.2)
    assert make_ttl_lock(name).acquire(blocking=False) is None
    lease.release()


def test_extend_pushes_the_deadline(make_ttl_lock: LockFactory) -> None:
    lock = make_ttl_lock(unique(), ttl=0.5)
    lease = lock.acquire()
    assert lease is not None
    before = lease.deadline
    time.sleep(0.05)
    lease.extend(2.0)
    assert lease.deadline is not None and before is not None and lease.deadline > before + 1
    assert not lease.lost.wait(0.6)
    lease.release()
