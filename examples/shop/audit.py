"""The conservation audit, computed from the databases alone.

For every SKU: ``initial = left + sold + reserved``, where *left* is the
stock row, *sold* the units of paid orders (the user shards) and
*reserved* the units held for orders not yet paid (the catalog's
reservations). The audit also checks that the catalog's sold units are
exactly the paid orders' items, that held units belong to orders still
``reserved``, and that every charge in the ledger is a paid order.

The identity holds at every instant in the catalog, because each stock
change and its reservation row commit together. The cross-checks with the
orders hold once nothing is in flight (after a run and its recovery sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .storage import ShopStorage


@dataclass(frozen=True)
class SkuLine:
    initial: int
    left: int
    sold: int
    reserved: int

    def __str__(self) -> str:
        return f"{self.initial} = {self.left} + {self.sold} + {self.reserved}"


@dataclass
class Audit:
    """The audit's figures per SKU and every discrepancy found (none when exact)."""

    skus: dict[str, SkuLine] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    charges: int = 0
    paid_orders: int = 0

    @property
    def exact(self) -> bool:
        return not self.problems

    def summary(self, show: list[str]) -> str:
        """One line: the verdict, then initial = left + sold + reserved for the SKUs in *show*."""
        total = SkuLine(
            *(sum(getattr(line, f) for line in self.skus.values()) for f in SkuLine.__annotations__)
        )
        shown = ", ".join(f"{sku} {self.skus[sku]}" for sku in show if sku in self.skus)
        verdict = (
            "exact"
            if self.exact
            else f"FAILED ({len(self.problems)} problems: {'; '.join(self.problems[:5])})"
        )
        return (
            f"audit (initial = left + sold + reserved): {verdict}; all {len(self.skus)} SKUs "
            f"{total}; {shown}; {self.charges} charges for {self.paid_orders} paid orders"
        )


def audit(storage: ShopStorage) -> Audit:
    """Check conservation of stock and agreement of stock, orders and charges."""
    ledger = storage.catalog.audit()
    paid = storage.units("paid")
    in_flight = storage.units("reserved")
    result = Audit()
    for sku, row in sorted(ledger.items()):
        result.skus[sku] = SkuLine(row.initial, row.left, paid.get(sku, 0), row.held)
        if not row.exact:
            result.problems.append(
                f"{sku}: initial {row.initial} != left {row.left} + held {row.held} "
                f"+ sold {row.sold}"
            )
        if row.sold != paid.get(sku, 0):
            result.problems.append(
                f"{sku}: {row.sold} units sold in the stock ledger, "
                f"{paid.get(sku, 0)} in paid orders"
            )
        if row.held > in_flight.get(sku, 0):
            result.problems.append(
                f"{sku}: {row.held} units held, but reserved orders hold only "
                f"{in_flight.get(sku, 0)}"
            )
    for sku in sorted(set(paid) - set(ledger)):
        result.problems.append(f"{sku}: paid orders for an unknown SKU")
    counts = storage.order_counts()
    result.paid_orders = sum(c.get("paid", 0) for c in counts.values())
    result.charges = storage.charge_count()
    if result.charges != result.paid_orders:
        result.problems.append(
            f"{result.charges} charges in the ledger but {result.paid_orders} paid orders"
        )
    return result


def oversold(storage: ShopStorage) -> int:
    """Units sold beyond the initial stock, over every SKU (must be 0)."""
    sold = storage.sold()
    over = 0
    for sku, row in storage.catalog.audit().items():
        over += max(0, sold.get(sku, 0) - row.initial) + max(0, -row.left)
    return over
