"""Issue 18's scaling figure: Avg.Gap and cost against the forget-set size, from the committed
``benchmarks/results/frontier-forget-size/summary.csv`` (the grid of benchmarks/frontier-forget-size.yaml).

    python benchmarks/frontier_plots.py            # writes docs/assets/frontier-forget-size.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(out: Path = ROOT / "docs" / "assets" / "frontier-forget-size.png") -> Path:
    s = pd.read_csv(ROOT / "benchmarks" / "results" / "frontier-forget-size" / "summary.csv")
    s = s[s.method != "none"]
    s["size"] = s.forget.str.removeprefix("random-").astype(float) * 100
    fig, (gap, cost) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, rows in s.groupby("method"):
        rows = rows.sort_values("size")
        style = {"lw": 2.5, "color": "black"} if method == "heldout-distill" else {"lw": 1.2}
        g = rows[rows.metric == "avg_gap"]
        gap.plot(g["size"], g["mean"], marker="o", label=method, **style)
        if method != "oracle":
            c = rows[rows.metric == "cost_ratio"]
            cost.plot(c["size"], 100 * c["mean"], marker="o", label=method, **style)
    gap.set(xscale="log", xlabel="forget set (% of the 10k training images)", ylabel="Avg.Gap (oracle B: floor)")
    cost.axhline(5, ls="--", color="grey", lw=1)
    cost.set(xscale="log", yscale="log", xlabel="forget set (% of the 10k training images)", ylabel="% of retraining")
    for ax in (gap, cost):
        ax.set_xticks([1, 5, 10, 25], ["1", "5", "10", "25"])
        ax.grid(alpha=0.3)
    gap.legend(fontsize=7, ncol=2)
    fig.suptitle("Fashion-MNIST, overfit CNN, random forgetting, seed 0", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


if __name__ == "__main__":
    print(main(*(Path(a) for a in sys.argv[1:])))
