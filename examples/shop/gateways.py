"""Simulated payment gateways behind a scalekit balancer.

Each `SimulatedGateway` is one instance of a payment provider with
its own latency and failure rate. The provider's ledger is shared (the
``charges`` table), keyed by an idempotency key, the way real providers
take an ``Idempotency-Key`` header: a retried charge, on the same or on
another instance, charges once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scalekit import NoAvailableEndpointError

from .storage import ShopStorage


class GatewayError(Exception):
    """A gateway instance failed the call; it may or may not have charged."""


@dataclass
class SimulatedGateway:
    """One gateway instance: ``latency`` seconds per call, failing with ``failure_rate``.

    ``lost_reply_rate`` charges and then fails anyway, as a timeout after
    the provider did its work does: only the idempotency key keeps the retry
    from charging twice.
    """

    name: str
    latency: float = 0.002
    failure_rate: float = 0.0
    lost_reply_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    calls: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def charge(
        self,
        storage: ShopStorage,
        key: str,
        amount_cents: int,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Charge once per *key*; return True if this call made the charge.

        Raises GatewayError for a simulated failure, or if the payment intent
        *key* was voided (the shop gave the order up).
        """
        with self._lock:
            self.calls += 1
            roll = self.rng.random()
        sleep(self.latency)
        if roll < self.failure_rate:
            with self._lock:
                self.failures += 1
            raise GatewayError(f"{self.name}: declined by the gateway (simulated failure)")
        outcome = storage.record_charge(key, self.name, amount_cents, time.time())
        if outcome == "voided":
            raise GatewayError(f"{self.name}: payment {key} was voided")
        charged = outcome == "charged"
        if roll < self.failure_rate + self.lost_reply_rate:
            with self._lock:
                self.failures += 1
            raise GatewayError(f"{self.name}: reply lost after charging (simulated timeout)")
        return charged


class PaymentService:
    """Charges through the gateway a scalekit balancer picks, retrying on another.

    The balancer sees every call's latency and outcome, so a gateway that
    starts failing is ejected by its outlier detection and traffic moves to
    the others.
    """

    def __init__(
        self,
        storage: ShopStorage,
        gateways: list[SimulatedGateway],
        balancer: object,
        *,
        attempts: int = 3,
    ) -> None:
        self.storage = storage
        self.gateways = {g.name: g for g in gateways}
        self.balancer = balancer
        self.attempts = attempts

    def charge(self, key: str, amount_cents: int) -> str:
        """Charge *amount_cents* under idempotency *key*; return the gateway that answered.

        Raises `GatewayError` when every attempt failed.
        """
        last: Exception | None = None
        for _ in range(self.attempts):
            try:
                with self.balancer.request() as name:  # type: ignore[attr-defined]
                    self.gateways[name].charge(self.storage, key, amount_cents)
                return str(name)
            except (GatewayError, NoAvailableEndpointError) as exc:
                last = exc
        # Every reply was lost or refused; the provider may still have charged
        # (a lost reply). Its ledger, keyed by the idempotency key, says.
        charged_by = self.storage.charged_by(key)
        if charged_by is not None:
            return charged_by
        raise GatewayError(f"payment {key} failed on {self.attempts} attempts: {last}")
