"""The conservation audit, computed from the databases alone.

For every SKU: ``initial = left + sold + reserved``, where *left* is the
stock row, *sold* the units of paid orders (the user shards) and
*reserved* the units held for orders not yet paid (the catalog's
reservations). The audit also checks that the catalog's sold units are
exactly the paid orders' items, that held units belong to orders still
``reserved``, that every charge in the ledger is a paid order, and that
every user lives on the shard its placement routes it to (while another
process uses the data directory: whenever no shard is being added).

The identity holds at every instant in the catalog, because each stock
change and its reservation row commit together. The cross-checks with the
orders hold once nothing is in flight (after a run and its recovery sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import datadir, resharding
from .catalog import payment_key
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
    concurrent: bool = False  # another process used the data directory meanwhile
    charged_reserved: int = 0  # charged orders still reserved (the next sweep completes them)

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
            + (
                f"; {self.charged_reserved} charged orders not yet marked paid (the next "
                "sweep completes them)"
                if self.charged_reserved
                else ""
            )
            + (
                "; another process was using the data directory: orders in flight checked "
                "between their states before and after"
                if self.concurrent
                else ""
            )
        )


def audit(storage: ShopStorage) -> Audit:
    """Check conservation of stock and agreement of stock, orders and charges.

    Alone on the data directory, every check is exact. While another
    process uses it (`datadir.others_present`: a second run, an admin
    tool), its orders may move between the catalog's read and the shards':
    orders are then read before and after the catalog, the catalog's sold
    units and charges must lie between the two, and every held unit must
    belong to an order that exists after, was not paid before and has that
    many units of the SKU (`Audit.concurrent`). The placement check runs too unless a
    shard is being added (a recorded migration not complete, before or
    after the scan). The conservation identity is exact either way (one
    catalog transaction).
    """
    if datadir.others_present(storage.directory):
        return _concurrent_audit(storage)
    ledger = storage.catalog.audit()
    paid = storage.units("paid")
    in_flight = storage.units("reserved")
    result = Audit()
    # Orders charged but still reserved (their sale or status could not be
    # written: a disk full, a backend down at the sweep): the next sweep
    # completes them; until then they count as charged, not paid.
    charged = _charged_but_reserved(storage)
    result.charged_reserved = len(charged)
    pending = _sold_units(storage, charged)
    for sku, row in sorted(ledger.items()):
        result.skus[sku] = SkuLine(row.initial, row.left, paid.get(sku, 0), row.held)
        expected = paid.get(sku, 0) + pending.get(sku, 0)
        if row.sold != expected:
            result.problems.append(
                f"{sku}: {row.sold} units sold in the stock ledger, "
                f"{paid.get(sku, 0)} in paid orders"
                + (f" and {pending.get(sku, 0)} in charged unsettled ones" if charged else "")
            )
        if not row.exact:
            result.problems.append(
                f"{sku}: initial {row.initial} != left {row.left} + held {row.held} "
                f"+ sold {row.sold}"
            )
        if row.held > in_flight.get(sku, 0):
            result.problems.append(
                f"{sku}: {row.held} units held, but reserved orders hold only "
                f"{in_flight.get(sku, 0)}"
            )
    for sku in sorted(set(paid) - set(ledger)):
        result.problems.append(f"{sku}: paid orders for an unknown SKU")
    _report_misplaced(result, _misplaced(storage))
    counts = storage.order_counts()
    result.paid_orders = sum(c.get("paid", 0) for c in counts.values())
    result.charges = storage.charge_count()
    if result.charges != result.paid_orders + len(charged):
        result.problems.append(
            f"{result.charges} charges in the ledger but {result.paid_orders} paid orders"
            + (f" and {len(charged)} charged unsettled ones" if charged else "")
        )
    return result


def _report_misplaced(result: Audit, misplaced: list[str]) -> None:
    if misplaced:
        result.problems.append(
            f"{len(misplaced)} users on a shard their placement does not route them to "
            f"(e.g. {misplaced[0]}): their cart, orders and history are out of the shop's reach"
        )


def _misplaced(storage: ShopStorage) -> list[str]:
    """Users whose row is on a shard the placement (or a move under way) does not give them.

    While a shard is being added (`resharding.py`) a user may be on its old
    or its new shard; otherwise only on the one the placement routes it to.
    """
    migration = storage.migration
    phase = None if migration is None else migration.refresh().phase
    found: list[str] = []
    for name, db in storage.shards.items():
        for (user,) in db.connection().execute("SELECT user_id FROM users"):
            if migration is None:
                allowed = {storage.router.route(user)}
            elif phase == "complete":
                allowed = {migration.new.route(user)}
            elif phase in ("forward", "reverse"):
                allowed = {migration.old.route(user), migration.new.route(user)}
            else:
                allowed = {migration.old.route(user)}
            if name not in allowed:
                found.append(str(user))
    return found


def _charged_but_reserved(storage: ShopStorage) -> list[str]:
    """Ids of orders still ``reserved`` whose payment is in the ledger."""
    return [
        order.order_id
        for order in storage.reserved_orders(float("inf"))
        if storage.catalog.charged_by(payment_key(order.order_id)) is not None
    ]


def _sold_units(storage: ShopStorage, order_ids: list[str]) -> dict[str, int]:
    """sku -> units the catalog has sold for *order_ids*."""
    units: dict[str, int] = {}
    conn = storage.catalog.db.connection()
    for order_id in order_ids:
        for sku, qty in conn.execute(
            "SELECT sku, qty FROM reservations WHERE order_id = ? AND state = 'sold'", (order_id,)
        ):
            units[sku] = units.get(sku, 0) + int(qty)
    return units


def oversold(storage: ShopStorage) -> int:
    """Units sold beyond the initial stock, over every SKU (must be 0)."""
    sold = storage.sold()
    over = 0
    for sku, row in storage.catalog.audit().items():
        over += max(0, sold.get(sku, 0) - row.initial) + max(0, -row.left)
    return over


def _concurrent_audit(storage: ShopStorage) -> Audit:
    """The audit while other processes' orders move (see `audit`).

    Orders only leave ``reserved`` (for ``paid`` after the catalog sold
    their units and recorded the charge, or ``released`` after their units
    went back), so with *before* read first and *after* last: paid units
    before <= sold <= paid + reserved units after, and likewise for charges.
    """
    result = Audit(concurrent=True)
    phase = resharding.recorded_phase(storage.directory, len(storage.shard_names))
    # Users (and their orders) move only while a recorded migration runs.
    misplaced = _misplaced(storage) if phase in (None, "complete") else []
    paid_before = storage.units("paid")
    counts_before = storage.order_counts()
    states_before = storage.order_states()
    ledger = storage.catalog.audit()
    holds = storage.catalog.holds()
    result.charges = storage.charge_count()
    paid_after, reserved_after = storage.units("paid"), storage.units("reserved")
    counts_after = storage.order_counts()
    states_after = storage.order_states()
    settled = phase in (None, "complete") and phase == resharding.recorded_phase(
        storage.directory, len(storage.shard_names)
    )
    if settled:  # no user moved during the scans: placement is as exact as alone
        _report_misplaced(result, misplaced)
    # A hold is written after its order (``reserved``) and becomes sold units
    # before the order is ``paid``, once every item is held (so no new hold can
    # follow): the order exists after, was not paid before, and holds no more
    # than its items. (A hold for an order released meanwhile is legitimate
    # for a moment: its checkout, still taking, gives it back.)
    for order_id, per_sku in sorted(holds.items()):
        before, after = states_before.get(order_id), states_after.get(order_id)
        for sku, qty in sorted(per_sku.items()):
            if after is None and settled:
                why = "which no shard holds"
            elif before is not None and before[0] == "paid":
                why = "which was already paid"
            elif after is not None and qty > after[1].get(sku, 0):
                why = f"which has only {after[1].get(sku, 0)}"
            else:
                continue
            result.problems.append(f"{sku}: {qty} units held for order {order_id}, {why}")
    for sku, row in sorted(ledger.items()):
        result.skus[sku] = SkuLine(row.initial, row.left, row.sold, row.held)
        if not row.exact:
            result.problems.append(
                f"{sku}: initial {row.initial} != left {row.left} + held {row.held} "
                f"+ sold {row.sold}"
            )
        low, high = paid_before.get(sku, 0), paid_after.get(sku, 0) + reserved_after.get(sku, 0)
        if not low <= row.sold <= high:
            result.problems.append(
                f"{sku}: {row.sold} units sold in the stock ledger, outside the {low}..{high} "
                "in paid orders (then paid or reserved) around it"
            )
    paid_low = sum(c.get("paid", 0) for c in counts_before.values())
    result.paid_orders = sum(c.get("paid", 0) for c in counts_after.values())
    high = result.paid_orders + sum(c.get("reserved", 0) for c in counts_after.values())
    if not paid_low <= result.charges <= high:
        result.problems.append(
            f"{result.charges} charges in the ledger, outside the {paid_low}..{high} paid "
            "(then paid or reserved) orders around it"
        )
    return result
