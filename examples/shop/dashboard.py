"""Draw the shop's Grafana dashboard from a Prometheus server, as a PNG.

`python -m examples.shop.dashboard --prometheus http://127.0.0.1:9090 --out shop.png`
runs every panel's query of `grafana-dashboard.json` through Prometheus'
`query_range` API over the last `--minutes` and draws each panel as
Grafana would (one line per series, the panel's unit on the y axis). It is
how docs/img/shop-dashboard.png was made; it also checks that every query
the dashboard holds is valid PromQL against a live server.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).with_name("grafana-dashboard.json")
_UNITS = {"percentunit": "ratio", "s": "seconds", "reqps": "per second", "short": ""}


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[Any]:
    """Prometheus' `query_range` result: a list of series with `metric` and `values`."""
    expr = expr.replace("$__rate_interval", "15s")
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=10) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise ValueError(f"Prometheus refused {expr!r}: {body}")
    return list(body["data"]["result"])


def _legend(fmt: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        fmt = fmt.replace("{{" + key + "}}", value)
    return fmt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.shop.dashboard",
        description="Draw the shop's Grafana dashboard from a Prometheus server as a PNG.",
    )
    parser.add_argument("--prometheus", required=True, help="base URL of a Prometheus server")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--minutes", type=float, default=2.0, help="the time range to draw")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    end = time.time()
    start = end - args.minutes * 60
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    fig = plt.figure(figsize=(14, 4.2 * rows))
    grid = fig.add_gridspec(rows, 24, hspace=0.45, wspace=6, left=0.06, right=0.98, top=0.93)
    for panel in panels:
        pos = panel["gridPos"]
        gap = 1 if pos["w"] < 24 else 0  # Grafana's gutter between side-by-side panels
        left = pos["x"] + (gap if pos["x"] else 0)
        ax = fig.add_subplot(
            grid[pos["y"] // 8, left : pos["x"] + pos["w"] - (gap if not pos["x"] else 0)]
        )
        for target in panel["targets"]:
            for series in query_range(args.prometheus, target["expr"], start, end, 1.0):
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if points:
                    xs, ys = zip(*points, strict=True)
                    label = _legend(target.get("legendFormat", ""), series["metric"])
                    ax.plot(xs, ys, label=label)
        ax.set_title(panel["title"])
        ax.set_xlabel("seconds")
        ax.set_ylabel(_UNITS.get(panel["fieldConfig"]["defaults"]["unit"], ""))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"{dashboard['title']} (from Prometheus, the dashboard's own queries)")
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
