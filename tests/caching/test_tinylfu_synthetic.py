"""TinyLFU on three small rows of the synthetic benchmark (docs/caching.md, "Synthetic workloads").

`python -m benchmarks.caching synthetic` replays seeded synthetic kinds
that no trace folder holds; these rows are held to the figures the docs
give, so a change of policy that moves them is seen (3-7 s in all, compiled;
the pure build takes about three times as long).
"""

from __future__ import annotations

import random

from benchmarks.caching.replay import SEEDS, replay
from benchmarks.caching.synthetic import OTHERS, generate
from scalekit.caching import TinyLFUCache

_GENERATOR_SEED = 20261125  # the benchmark's default --seed


def test_one_hit_wonders_among_a_hot_set_stay_out_and_tinylfu_is_within_a_point() -> None:
    # hot+scan @20: Zipf(0.9) over 2,000 keys with a never-seen key after half
    # the requests. The docs: TinyLFU's worst seed 20.76, S3-FIFO 21.20.
    # Seeds 1 and 5 of the five give the best and the worst figure.
    keys = generate("hot+scan", _GENERATOR_SEED)
    s3fifo = replay(OTHERS["S3-FIFO"](20), keys)
    best, worst = (replay(TinyLFUCache(20, rng=random.Random(s)), keys) for s in (1, 5))
    assert round(s3fifo, 2) == 21.20
    assert (round(best, 2), round(worst, 2)) == (21.18, 20.76)
    assert worst >= s3fifo - 1.0


def test_keys_requested_twice_order_the_window_as_a_fifo_and_tinylfu_is_within_a_point() -> None:
    # twice-gap500 @100: every key twice, the second time 1-500 requests
    # later. FIFO is best (11.10): a hit never recurs, so LRU's move to the
    # front is wasted (10.39). The shadow FIFO beats the shadow LRU and the
    # window keeps FIFO order: 10.49 on every seed (the docs' figure).
    keys = generate("twice-gap500", _GENERATOR_SEED)
    fifo = replay(OTHERS["FIFO"](100), keys)
    tiny = replay(TinyLFUCache(100, rng=random.Random(SEEDS[0])), keys)
    assert round(fifo, 2) == 11.10
    assert round(tiny, 2) == 10.49
    assert tiny >= fifo - 1.0


def test_keys_requested_twice_close_together_cost_tinylfu_its_documented_shortfall() -> None:
    # twice-gap50 @20: every key twice, the second time 1-50 requests later.
    # FIFO is best (24.56), LRU 20.41. TinyLFU's window turns FIFO and it
    # gets 22.33 on every seed, the documented miss of the one-point target:
    # its one main-area entry keeps a key whose two requests are over.
    keys = generate("twice-gap50", _GENERATOR_SEED)
    assert round(replay(OTHERS["FIFO"](20), keys), 2) == 24.56
    assert round(replay(TinyLFUCache(20, rng=random.Random(SEEDS[0])), keys), 2) == 22.33
