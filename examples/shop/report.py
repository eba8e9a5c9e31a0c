"""The simulation's report, its exit status and its latency plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from .audit import Audit, audit, oversold
from .simulation import Settings, Summary, hot_skus
from .storage import ShopStorage


def report(storage: ShopStorage, summary: Summary, settings: Settings) -> tuple[str, Audit]:
    """The report's text and the audit it shows."""
    lat = sorted(s for _, s in summary.latencies)

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0.0

    checked = audit(storage)
    stock = checked.skus
    lines = [
        f"scalekit shop: {settings.buyers} buyers in {settings.workers} process(es) for "
        f"{settings.duration:g}s, {settings.shards} SQLite shards"
        f"{' (+1 added during the load)' if settings.add_shard_at is not None else ''}, "
        f"{settings.backend} locks",
        f"catalog: {summary.catalog}",
        f"orders placed: {summary.placed}",
        "orders rejected: "
        + (", ".join(f"{k} {v}" for k, v in sorted(summary.rejected.items())) or "0"),
        f"checkout latency: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms "
        f"(mean {1000 * statistics.fmean(lat) if lat else 0:.1f} ms over {len(lat)} checkouts)",
        f"oversold: {oversold(storage)}",
        checked.summary(hot_skus(settings)),
        f"duplicate orders from retried checkouts: {summary.duplicate_orders}",
        f"stale stock writes fenced off: {summary.fence_rejections}",
        "stock left (hot SKUs): "
        + ", ".join(
            f"{sku} {stock[sku].left}/{stock[sku].initial} (sold {stock[sku].sold})"
            for sku in hot_skus(settings)
            if sku in stock
        ),
        f"product cache hit ratio: "
        f"{1 - summary.loads / summary.lookups if summary.lookups else 0:.1%} "
        f"({summary.lookups - summary.loads} hits, {summary.loads} loads from the database)",
        "orders per shard (all statuses): "
        + ", ".join(f"{name} {sum(c.values())}" for name, c in storage.order_counts().items()),
        f"payments charged: {storage.charge_count()}",
    ]
    lines += [f"recovery {line}" for line in summary.recovery]
    if summary.resharding:
        lines.append(f"resharding: {summary.resharding}")
    if summary.errors:
        lines.append(f"errors: {sum(summary.errors.values())}, by class and step:")
        for key, n in sorted(summary.errors.items(), key=lambda kv: -kv[1]):
            first = summary.examples.get(key)
            lines.append(f"  {key}: {n}" + (f" (first: {first})" if first else ""))
    else:
        lines.append("errors: 0")
    lines += [f"DIED: {line}" for line in summary.died]
    if not summary.placed:
        lines.append("NOTHING SOLD: no order was placed (see the errors and rejections above)")
    if tokens_went_back(summary):
        lines.append(
            f"TOKENS WENT BACK: {summary.stale_tokens} stock claims refused before reading "
            f"(the lock's token not above the stored fence) for {summary.placed} orders "
            "placed: the lock backend issues tokens below the ones it issued before (its data "
            "wiped or restored from an old copy). No unit was sold twice; to sell again, stop "
            "every process on the data directory and run on a new backend, or remove "
            "'fence_source' from the catalog's meta table (the next run resets the fences)"
        )
    if summary.left_reserved:
        lines.append(
            f"NOT SETTLED: {summary.left_reserved} orders left reserved (their stock held, or "
            "their row not on the shard their user is routed to); the next run's sweep retries"
        )
    if summary.interrupted:
        lines.append("INTERRUPTED: the load was stopped early (Ctrl-C); swept and audited")
    if summary.busy_seconds:
        shares = {k: v / summary.busy_seconds for k, v in summary.phase_seconds.items()}
        shares["other (Python, thread switches)"] = max(0.0, 1 - sum(shares.values()))
        lines.append(
            "where buyer time goes: "
            + ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))
        )
    for name, (calls, failures, ejections) in sorted(summary.gateways.items()):
        lines.append(f"gateway {name}: {calls} calls, {failures} failures, {ejections} ejections")
    return "\n".join(lines), checked


def tokens_went_back(summary: Summary) -> bool:
    """True if more stock claims were refused before reading than orders placed (10 at
    least): a lock's fresh token is above every stored fence unless the backend's
    tokens went back."""
    return summary.stale_tokens >= 10 and summary.stale_tokens > summary.placed


def exit_status(storage: ShopStorage, summary: Summary, checked: Audit) -> int:
    """The run's exit status.

    130 if it was interrupted (Ctrl-C); else 0 if the audit is exact,
    nothing was oversold, no worker or buyer died, at least one order was
    placed, the lock's tokens did not go back (`tokens_went_back`) and the
    final sweep settled every order; else 1.
    """
    if summary.interrupted:
        return 130
    healthy = (
        not summary.died
        and summary.placed > 0
        and not summary.left_reserved
        and not tokens_went_back(summary)
    )
    return 0 if checked.exact and not oversold(storage) and healthy else 1


def plot(summary: Summary, path: Path) -> None:
    """Checkout latency over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not summary.latencies:
        return
    start = min(at for at, _ in summary.latencies)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(
        [at - start for at, _ in summary.latencies],
        [1000 * s for _, s in summary.latencies],
        s=4,
        alpha=0.5,
    )
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("checkout latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("scalekit shop: checkout latency over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
