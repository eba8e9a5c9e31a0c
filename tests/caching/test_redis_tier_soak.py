"""The Redis tier under a seeded fault schedule, checked from its history.

Bounded for CI: four fixed seeds, about 40 s in total (two 6 s runs on one
server, one 8 s run on a 3-master Cluster, a 5 s run without faults, plus
start-up).
`python -m benchmarks.rediscache soak --seconds N` runs the same longer.
"""

from __future__ import annotations

import pytest

from benchmarks.rediscache.soak import run

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.mark.parametrize(
    ("seed", "seconds", "cluster"), [(11, 6.0, False), (12, 6.0, False), (13, 8.0, True)]
)
def test_no_read_is_staler_than_its_layer_allows(seed: int, seconds: float, cluster: bool) -> None:
    result = run(seed, seconds, cluster=cluster, max_staleness=0.5)
    print("\n" + result.summary())
    assert len(result.faults) >= 3, result.faults  # the schedule really ran
    assert result.writes >= 50 and min(result.reads.values()) >= 100, result.summary()
    assert result.violations == [], "\n".join(map(str, result.violations[:10]))
    assert result.hangs == [], "\n".join(result.hangs[:10])  # every call within call_timeout


def test_readers_sharing_one_instance_never_get_a_load_older_than_they_are() -> None:
    """Four threads share each reading instance, no faults: 5 s (plus start-up).

    Callers join loads already running in their process; a load whose read
    began before an acknowledged write must not be handed to a caller that
    began after it, in the Redis layer (bound 0 s) or the near layer.
    """
    result = run(21, 5.0, sharing=4, faults=False, max_staleness=0.5)
    print("\n" + result.summary())
    assert result.writes >= 50 and min(result.reads.values()) >= 100, result.summary()
    assert result.violations == [], "\n".join(map(str, result.violations[:10]))
