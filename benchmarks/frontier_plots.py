"""Issue 18's scaling figures: Avg.Gap and cost against the forget-set size and against the CNN's
width, from the committed ``benchmarks/results/frontier-forget-size/summary.csv`` and
``benchmarks/results/frontier-width/summary.csv`` (the grids of the YAML files of the same names).

    python benchmarks/frontier_plots.py     # writes docs/assets/frontier-forget-size.png and -width.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS, ASSETS = ROOT / "benchmarks" / "results", ROOT / "docs" / "assets"


def _plot(s: pd.DataFrame, xlabel: str, ticks: list[float], title: str, out: Path) -> Path:
    """Two panels (Avg.Gap, % of retraining) of every method but ``none`` against column ``x``."""
    s = s[s.method != "none"]
    fig, (gap, cost) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, rows in s.groupby("method"):
        rows = rows.sort_values("x")
        style = {"lw": 2.5, "color": "black"} if method == "heldout-distill" else {"lw": 1.2}
        g = rows[rows.metric == "avg_gap"]
        gap.plot(g["x"], g["mean"], marker="o", label=method, **style)
        if method != "oracle":
            c = rows[rows.metric == "cost_ratio"]
            cost.plot(c["x"], 100 * c["mean"], marker="o", label=method, **style)
    gap.set(xscale="log", xlabel=xlabel, ylabel="Avg.Gap (oracle B: floor)")
    cost.axhline(5, ls="--", color="grey", lw=1)
    cost.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="% of retraining")
    cost.set_yticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
    for ax in (gap, cost):
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    gap.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def forget_size(out: Path = ASSETS / "frontier-forget-size.png") -> Path:
    s = pd.read_csv(RESULTS / "frontier-forget-size" / "summary.csv")
    s["x"] = s.forget.str.removeprefix("random-").astype(float) * 100
    xlabel = "forget set (% of the 10k training images)"
    return _plot(s, xlabel, [1, 5, 10, 25], "Fashion-MNIST, overfit CNN, random forgetting, seed 0", out)


def width(out: Path = ASSETS / "frontier-width.png") -> Path:
    s = pd.read_csv(RESULTS / "frontier-width" / "summary.csv")
    s["x"] = s.dataset.str.extract(r"width x(\d+)", expand=False).astype(float)
    xlabel = "CNN width (x1: conv 16-32, fc 64)"
    return _plot(s, xlabel, [1, 2, 4], "Fashion-MNIST, overfit CNN, random 10%, seed 0", out)


if __name__ == "__main__":
    print(forget_size(), width())
