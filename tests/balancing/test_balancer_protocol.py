"""The contract every strategy keeps: input checks, in-flight counts, request(), threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from scalekit.balancing import Balancer, parse_endpoints
from scalekit.exceptions import ArgumentTypeError, ConfigurationError, NoAvailableEndpointError
from scalekit.testing import FakeClock

Factory = Callable[..., Balancer]


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ([], "endpoints must not be empty"),
        ({}, "endpoints must not be empty"),
        (["a", "b", "a"], "endpoints must be unique, got 'a' twice"),
        ({"a": 0}, "weight must be a positive integer, got 0 for endpoint 'a'"),
        ({"a": -3}, "weight must be a positive integer, got -3 for endpoint 'a'"),
        ({"a": 1.5}, "weight must be a positive integer, got 1.5 for endpoint 'a'"),
        ({"a": True}, "weight must be a positive integer, got True for endpoint 'a'"),
        ("abc", "got the string 'abc'"),
        ([["x"]], "endpoint must be a hashable id other than None"),
        ([None], "endpoint must be a hashable id other than None"),
        ({None: 2}, "endpoint must be a hashable id other than None"),
        (5, "endpoints must be an iterable"),
    ],
)
def test_bad_endpoints_are_rejected(make: Factory, endpoints: object, message: str) -> None:
    wrong_type = (
        (
            isinstance(endpoints, dict)
            and any(not isinstance(w, int) or isinstance(w, bool) for w in endpoints.values())
        )
        or "hashable id" in message
        or not isinstance(endpoints, (list, dict))
    )
    error = ArgumentTypeError if wrong_type else ConfigurationError
    with pytest.raises(error, match=message.replace("(", r"\(")) as info:
        make(endpoints)
    assert isinstance(info.value, TypeError if wrong_type else ValueError)


def test_adding_an_endpoint_of_a_wrong_type_changes_nothing(make: Factory) -> None:
    """`pick()` never returns None: None is no endpoint id, nor is an unhashable value."""
    lb = make(["a", "b"])
    for bad in (None, ["x"], {"h": 1}):
        with pytest.raises(ArgumentTypeError, match="endpoint must be a hashable id"):
            lb.add(bad)
        assert lb.endpoints == {"a": 1, "b": 1}
    assert lb.pick("k") in ("a", "b")


def test_parse_endpoints_keeps_order_and_weights() -> None:
    assert parse_endpoints(["b", "a"]) == {"b": 1, "a": 1}
    assert list(parse_endpoints({"z": 2, "y": 7}).items()) == [("z", 2), ("y", 7)]


def test_pick_counts_in_flight_and_release_ends_it(make: Factory) -> None:
    lb = make(["a", "b", "c"])
    picked = [lb.pick() for _ in range(30)]
    assert set(picked) <= {"a", "b", "c"}
    assert lb.in_flight() == 30
    for ep in picked:
        assert lb.in_flight(ep) >= 1
        lb.release(ep, latency=0.01)
    assert lb.in_flight() == 0
    assert all(lb.in_flight(ep) == 0 for ep in "abc")


def test_release_without_anything_in_flight_is_an_error(make: Factory) -> None:
    lb = make(["a", "b"])
    with pytest.raises(ValueError, match="'a': it has nothing in flight"):
        lb.release("a")
    with pytest.raises(ValueError, match="unknown endpoint 'zz'"):
        lb.release("zz")
    ep = lb.pick()
    lb.release(ep)
    with pytest.raises(ValueError, match="nothing in flight"):
        lb.release(ep)


def test_a_release_with_a_bad_latency_or_ok_changes_nothing(make: Factory) -> None:
    """Bad input on release is refused before anything is counted: the request stays held."""
    lb = make(["a"])
    lb.pick()
    bad_values: list[tuple[object, type[Exception], str]] = [
        (-1.0, ConfigurationError, "latency must be a non-negative finite"),
        (float("nan"), ConfigurationError, "latency must be a non-negative finite"),
        (float("inf"), ConfigurationError, "latency must be a non-negative finite"),
        (10**400, ConfigurationError, "latency must be a non-negative finite"),
        ("0.1", ArgumentTypeError, "latency must be"),
        (True, ArgumentTypeError, "latency must be"),
    ]
    for bad, error, message in bad_values:
        with pytest.raises(error, match=message):
            lb.release("a", latency=bad)  # type: ignore[arg-type]
        assert lb.in_flight("a") == 1  # nothing was released
    for bad_ok in (None, "no", 0):
        with pytest.raises(ArgumentTypeError, match="ok must be"):
            lb.release("a", latency=0.01, ok=bad_ok)  # type: ignore[arg-type]
        assert lb.in_flight("a") == 1
    lb.release("a", latency=0)  # an int is fine, and the held request ends once
    assert lb.in_flight("a") == 0
    with pytest.raises(ConfigurationError, match="nothing in flight"):
        lb.release("a")


def test_request_is_timed_with_the_balancer_clock(make: Factory) -> None:
    clock = FakeClock(100.0)
    seen: list[tuple[object, float | None, bool]] = []
    lb = make(["a", "b"], clock=clock)
    original = lb.release

    def spy(ep: object, *, latency: float | None = None, ok: bool = True) -> None:
        seen.append((ep, latency, ok))
        original(ep, latency=latency, ok=ok)

    lb.release = spy  # type: ignore[method-assign]
    with lb.request() as ep:
        assert lb.in_flight(ep) == 1
        clock.advance(0.25)
    with pytest.raises(KeyError), lb.request() as ep2:
        clock.advance(1.5)
        raise KeyError("boom")
    assert seen == [(ep, 0.25, True), (ep2, 1.5, False)]
    assert lb.in_flight() == 0


def test_add_remove_reweight(make: Factory) -> None:
    lb = make({"a": 1, "b": 2})
    lb.add("c", 3)
    assert lb.endpoints == {"a": 1, "b": 2, "c": 3}
    assert "c" in lb and len(lb) == 3
    lb.reweight("a", 4)
    assert lb.endpoints["a"] == 4
    lb.remove("b")
    assert lb.endpoints == {"a": 4, "c": 3}
    assert {lb.pick() for _ in range(50)} <= {"a", "c"}
    with pytest.raises(ConfigurationError, match="endpoint 'a' is already in the balancer"):
        lb.add("a")
    with pytest.raises(ConfigurationError, match="weight must be a positive integer, got 0"):
        lb.add("d", 0)
    with pytest.raises(ArgumentTypeError, match=r"got 2\.0 for endpoint 'a'"):
        lb.reweight("a", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot remove unknown endpoint 'b'"):
        lb.remove("b")
    with pytest.raises(ValueError, match="cannot reweight unknown endpoint 'q'"):
        lb.reweight("q", 1)


def test_removed_endpoint_can_still_be_released(make: Factory) -> None:
    lb = make(["a", "b"])
    picks = [lb.pick() for _ in range(4)]
    gone = picks[0]
    lb.remove(gone)
    assert lb.in_flight(gone) == picks.count(gone)
    for ep in picks:
        lb.release(ep, latency=0.001)
    assert lb.in_flight() == 0
    with pytest.raises(ValueError, match="unknown endpoint"):
        lb.release(gone)


def test_empty_balancer_says_why(make: Factory) -> None:
    lb = make(["a"])
    lb.remove("a")
    with pytest.raises(NoAvailableEndpointError, match="the balancer has no endpoints"):
        lb.pick()
    lb.add("b")
    assert lb.pick() == "b"


def test_every_endpoint_gets_traffic(make: Factory) -> None:
    lb = make({"a": 1, "b": 1, "c": 1, "d": 1})
    seen = set()
    for _ in range(200):
        with lb.request() as ep:
            seen.add(ep)
    assert seen == {"a", "b", "c", "d"}


def test_eight_threads_pick_and_release(make: Factory) -> None:
    endpoints = {f"e{i}": 1 + i % 3 for i in range(10)}
    lb = make(endpoints)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []
    counts: list[int] = []

    def worker(seed: int) -> None:
        try:
            barrier.wait()
            held: list[object] = []
            done = 0
            for i in range(2000):
                held.append(lb.pick())
                if len(held) > (seed + i) % 5:
                    lb.release(held.pop(0), latency=0.001 * (1 + i % 7), ok=i % 11 != 0)
                    done += 1
            for ep in held:
                lb.release(ep, latency=0.002)
                done += 1
            counts.append(done)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counts == [2000] * 8
    assert lb.in_flight() == 0
    assert all(lb.in_flight(ep) == 0 for ep in endpoints)


def test_key_is_accepted_and_ignored_by_keyless_strategies(make: Factory) -> None:
    lb = make(["a", "b"])
    with lb.request(key="order-17") as ep:
        assert ep in {"a", "b"}


def test_balancer_is_abstract() -> None:
    with pytest.raises(TypeError):
        Balancer(["a"])  # type: ignore[abstract]


def test_bad_clock_and_rng(make: Factory) -> None:
    with pytest.raises(ArgumentTypeError, match="clock must be callable"):
        make(["a"], clock=3)
    with pytest.raises(ArgumentTypeError, match=r"rng must be a random\.Random"):
        make(["a"], rng=42)
