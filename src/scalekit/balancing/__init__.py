"""Client-side load balancing: strategies, health and outlier ejection.

Every strategy implements the protocol of `Balancer`: `pick()`,
`release(ep, latency=, ok=)`, `request()`, and `add` / `remove` /
`reweight` at run time. Pass a `HealthPolicy` as `health=` to any
of them for outlier ejection, slow start and a panic threshold, and drive
active checks with `ActiveHealthChecker`.
"""

from .._lazy import public_dir
from .active_checks import ActiveHealthChecker
from .base import Balancer, parse_endpoints
from .consistent_hash import ConsistentHashBalancer, endpoint_name
from .health import HealthPolicy, OutlierDetection, SlowStart
from .least_request import LeastRequest
from .peak_ewma import PeakEWMA
from .random_balancer import RandomBalancer
from .round_robin import RoundRobin
from .smooth_weighted_round_robin import SmoothWeightedRoundRobin
from .weighted_round_robin import WeightedRoundRobin

__all__ = [
    "ActiveHealthChecker",
    "Balancer",
    "ConsistentHashBalancer",
    "HealthPolicy",
    "LeastRequest",
    "OutlierDetection",
    "PeakEWMA",
    "RandomBalancer",
    "RoundRobin",
    "SlowStart",
    "SmoothWeightedRoundRobin",
    "WeightedRoundRobin",
    "endpoint_name",
    "parse_endpoints",
]

__dir__ = public_dir(__name__, globals())
