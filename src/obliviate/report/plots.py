"""Report figures as PNG bytes.

Built on ``matplotlib.figure.Figure`` with an explicit ``FigureCanvasAgg``, never pyplot: no global
backend switch, no figure registry to leak, safe to call from a library or a notebook. Every
function takes one (dataset, forget) section and returns ``None`` when its inputs are missing, so a
run without (say) epsilon or ROC simply has fewer figures.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..metrics.neurips23 import EPSILON_CAP

DPI = 110
ORACLE = "oracle"


def method_colors(methods: list[str]) -> dict[str, str]:
    """One stable colour per method across every figure; the oracle is always black."""
    cmap = colormaps["tab10"]
    others = [m for m in methods if m != ORACLE]
    colors = {m: to_hex(cmap(i % 10)) for i, m in enumerate(others)}
    return {**colors, ORACLE: "#000000"}


def scale_of(metric: str) -> float:
    """Accuracies are shown in percent."""
    return 100.0 if metric.endswith("_acc") else 1.0


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _tex(s: str) -> str:
    """Method names are user text: keep '$' from switching matplotlib into mathtext."""
    return s.replace("$", r"\$")


def _by_method(section: pd.DataFrame, metric: str) -> pd.DataFrame:
    return section[section["metric"] == metric].set_index("method")


def _label_points(ax, df: pd.DataFrame, x: str, y: str, colors: dict[str, str]) -> None:
    for method, r in df.iterrows():
        ax.annotate(
            "oracle B" if method == ORACLE else _tex(str(method)),
            (r[x], r[y]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color=colors.get(method, "k"),
        )


def tradeoff(section: pd.DataFrame, colors: dict[str, str]) -> bytes | None:
    """Forget-side gap to the oracle (x, lower is better) against test accuracy (y)."""
    metrics = set(section["metric"])
    x_metric = next((m for m in ("forget_acc", "mia_efficacy") if m in metrics), None)
    if x_metric is None or "test_acc" not in metrics:
        return None
    xs, ys = _by_method(section, x_metric), _by_method(section, "test_acc")
    df = pd.DataFrame(
        {"x": xs["gap"] * 100, "xe": xs["gap_ci95"] * 100, "y": ys["mean"] * 100, "ye": ys["ci95"] * 100}
    ).dropna(subset=["x", "y"])
    if df.empty:
        return None
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.add_subplot()
    lo = np.minimum(df["xe"].fillna(0.0), df["x"])  # a gap is never negative
    for method, r in df.iterrows():
        ax.errorbar(
            r["x"],
            r["y"],
            xerr=[[lo[method]], [np.nan_to_num(r["xe"])]],
            yerr=np.nan_to_num(r["ye"]),
            fmt="o",
            capsize=3,
            color=colors.get(method, "k"),
            ms=5,
        )
    _label_points(ax, df, "x", "y", colors)
    ref_y = ys["oracle"].dropna()
    if len(ref_y):
        ax.plot([0], [ref_y.iloc[0] * 100], marker="*", ms=12, color="k", ls="none", label="oracle A (reference)")
        ax.axhline(ref_y.iloc[0] * 100, color="k", ls="--", lw=0.8)
    floor = xs["floor"].dropna()
    if len(floor):
        ax.axvline(floor.iloc[0] * 100, color="grey", ls=":", lw=1, label="noise floor (oracle B)")
    ax.set_xlabel(f"|{x_metric} − oracle A| (pp)   ← better")
    ax.set_ylabel("test accuracy (%)   ↑ better")
    ax.set_title("forget quality vs utility", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    return _png(fig)


def cost_quality(section: pd.DataFrame, composite: str, direction: str, colors: dict[str, str]) -> bytes | None:
    """Cost as a fraction of retraining (log x) against the composite (y): what each point of quality costs."""
    metrics = set(section["metric"])
    if "cost_ratio" not in metrics or composite not in metrics:
        return None
    cost, comp = _by_method(section, "cost_ratio"), _by_method(section, composite)
    by_gap = direction == "closer to oracle"  # the mean of such a metric is no quality; its gap is
    k = scale_of(composite)
    df = pd.DataFrame(
        {
            "x": cost["mean"],
            "xe": cost["ci95"].fillna(0.0),
            "y": comp["gap" if by_gap else "mean"] * k,
            "ye": comp["gap_ci95" if by_gap else "ci95"].fillna(0.0) * k,
        }
    ).dropna(subset=["x", "y"])
    df = df[df["x"] > 0]
    if df.empty:
        return None
    lo = np.minimum(df["xe"], df["x"] * 0.9)  # a log axis cannot show an interval below zero
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.add_subplot()
    for method, r in df.iterrows():
        ax.errorbar(
            r["x"],
            r["y"],
            xerr=[[lo[method]], [r["xe"]]],
            yerr=r["ye"],
            fmt="o",
            capsize=3,
            color=colors.get(method, "k"),
            ms=5,
        )
    _label_points(ax, df, "x", "y", colors)
    if ORACLE in df.index:
        ax.axhline(df.loc[ORACLE, "y"], color="grey", ls=":", lw=1, label="oracle B (noise floor)")
        ax.legend(fontsize=7, loc="best")
    ax.set_xscale("log")
    ax.set_xlabel("cost: seconds / retrain seconds (log)   ← cheaper")
    arrow = {"higher": "↑ better", "lower": "↓ better"}.get(direction, "↓ better" if by_gap else "")
    ax.set_ylabel(f"{'|' + composite + ' − oracle A|' if by_gap else composite}   {arrow}")
    ax.set_title("cost vs quality", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def roc(cells: list[dict], colors: dict[str, str]) -> bytes | None:
    """Loss-threshold MIA ROC (D_f vs test) per method, against oracle A's curve; log FPR shows the low-FPR regime."""
    curves = {c["cell"]["method"]: c["roc"] for c in cells if c.get("roc")}
    ref = next((c["roc_reference"] for c in cells if c.get("roc_reference")), None)
    if not curves:
        return None
    fig = Figure(figsize=(5.6, 4.2))
    ax = fig.add_subplot()
    grid = np.logspace(-3, 0, 50)
    ax.plot(grid, grid, color="grey", lw=0.8, ls=":", label="chance")
    for method, c in sorted(curves.items()):
        fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
        keep = fpr > 0
        name = "oracle B" if method == ORACLE else _tex(method)
        ax.plot(
            fpr[keep],
            tpr[keep],
            color=colors.get(method, "k"),
            lw=1.2 if method != ORACLE else 0.8,
            alpha=0.9,
            label=name,
        )
    if ref:
        fpr, tpr = np.asarray(ref["fpr"]), np.asarray(ref["tpr"])
        ax.plot(fpr[fpr > 0], tpr[fpr > 0], color="k", ls="--", lw=1.6, label="oracle A (reference)")
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate (test flagged as member, log)")
    ax.set_ylabel("true positive rate (D_f flagged as member)")
    ax.set_title("loss-threshold MIA ROC", fontsize=10)
    n = len(curves) + 1 + bool(ref)  # outside the axes: with 20 methods an inside legend hides the curves
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 if n <= 14 else 2, frameon=False)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def epsilon_hist(cells: list[dict], colors: dict[str, str], cap: float = EPSILON_CAP) -> bytes | None:
    """Per-example ε (pooled over seeds), one panel per method; capped ε (undefined or ∞) gets its own bar."""
    parts = [
        (c["cell"]["method"], np.asarray(c["epsilon"]["eps"], dtype=float))
        for c in cells
        if c.get("epsilon", {}).get("eps")
    ]
    if not parts:
        return None
    eps = pd.DataFrame(
        {
            "method": np.concatenate([np.repeat(m, len(e)) for m, e in parts]),
            "eps": np.concatenate([e for _, e in parts]),
        }
    )
    eps["capped"] = eps["eps"] >= cap
    finite = eps.loc[~eps["capped"], "eps"]
    hi = float(finite.max()) if len(finite) and finite.max() > 0 else 1.0
    edges = np.linspace(0.0, hi, 16)
    width = edges[1] - edges[0]
    cap_x = hi + 1.5 * width
    methods = sorted(eps["method"].unique())
    fig = Figure(figsize=(min(3.0 * len(methods) + 0.6, 12), 3.2))
    axes = fig.subplots(1, len(methods), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (method, g) in zip(axes, eps.groupby("method", sort=True)):
        counts, _ = np.histogram(g.loc[~g["capped"], "eps"], bins=edges)
        color = colors.get(method, "k")
        ax.bar(edges[:-1], counts, width=width, align="edge", color=color, alpha=0.8)
        ax.bar([cap_x], [int(g["capped"].sum())], width=width, color=color, alpha=0.4, hatch="//", edgecolor=color)
        ax.set_title(f"{_tex(method)}: median ε {g['eps'].median():.3g}, {g['capped'].mean():.0%} at cap", fontsize=8)
        ax.set_xlabel("per-example ε")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("examples (all seeds)")
    ticks = [t for t in MaxNLocator(4).tick_values(0.0, hi) if 0 <= t <= 0.85 * hi]  # clear of the cap label
    axes[0].set_xticks(ticks + [cap_x], [f"{t:g}" for t in ticks] + [f"cap\n{cap:g}"])
    fig.suptitle("per-example ε (NeurIPS 2023 protocol; lower = closer to retraining)", fontsize=9)
    return _png(fig)


def ma_histograms(records: list[dict], colors: dict[str, str]) -> bytes | None:
    """Per-sequence memorization accuracy on the forget set: one small histogram per model against
    oracle A's (grey), pooled over seeds. A mean MA can match the oracle's while a few sequences stay
    fully memorized; the histogram shows them (reference A1.2: judge LMs per sequence)."""
    models: dict[str, list[float]] = {}
    reference: list[float] = []
    for rec in records:
        if "forget_ma" not in rec:
            continue
        models.setdefault(rec["cell"]["method"], []).extend(rec["forget_ma"])
        reference.extend(rec.get("forget_ma_reference", []))
    if not models:
        return None
    names = sorted(models, key=lambda m: (m != ORACLE, m))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.0 * cols, 2.2 * rows))
    bins = np.linspace(0, 1, 11).tolist()
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        if reference:
            ax.hist(reference, bins=bins, color="#bbbbbb", label="oracle A", density=True)
        ax.hist(
            models[name],
            bins=bins,
            histtype="step",
            lw=2,
            color=colors.get(name, "k"),
            density=True,
            label="oracle B" if name == ORACLE else _tex(name),
        )
        ax.set_title("oracle B" if name == ORACLE else _tex(name), fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel("density", fontsize=8)
        if i >= len(names) - cols:
            ax.set_xlabel("forget MA per sequence", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def relearn_curves(records: list[dict], colors: dict[str, str]) -> bytes | None:
    """The forget metric against relearning steps (seed-0 cells): each method's curve beside oracle A's
    under the same attack (black, dashed). A method that hid the data climbs away from the oracle."""
    curves = [(rec["cell"]["method"], c) for rec in records for c in rec.get("curves", {}).values()]
    if not curves:
        return None
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    drawn_reference = False
    for name, c in sorted(curves, key=lambda nc: (nc[0] != ORACLE, nc[0])):
        if not drawn_reference:
            ax.plot(c["steps"], c["oracle"], "k--", lw=2, label="oracle A")
            drawn_reference = True
        label = "oracle B" if name == ORACLE else _tex(name)
        ax.plot(c["steps"], c["model"], "-o", ms=3, color=colors.get(name, "k"), label=label)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("relearning steps", fontsize=8)
    ax.set_ylabel(curves[0][1]["metric"], fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return _png(fig)


def _decoded(samples: dict, cls: int) -> np.ndarray:
    """[k, H, W] floats in [0, 1] of one class's kept samples (see ``bench.jobs._samples``)."""
    import base64

    raw = np.frombuffer(base64.b64decode(samples["images"][str(cls)]), dtype=np.uint8)
    return raw.reshape(-1, *samples["shape"]).astype(np.float64) / 255


def sample_grids(records: list[dict], order: list[str]) -> bytes | None:
    """A diffusion grid's samples, one row per model: the original (method ``none``), oracle A, oracle B
    and each method in ``order``; left the forgotten class's samples, right one sample of each retained
    class. Every model starts sample i from the same noise, so columns compare like with like."""
    by_method = {r["cell"]["method"]: r for r in records if "samples" in r}
    rows: list[tuple[str, dict]] = []
    if "none" in by_method:
        rows.append(("original", by_method["none"]["samples"]))
    floor = by_method.get(ORACLE)
    if floor is not None and "samples_reference" in floor:
        rows.append(("oracle A", floor["samples_reference"]))
    if floor is not None:
        rows.append(("oracle B", floor["samples"]))
    rows += [(m, by_method[m]["samples"]) for m in order if m in by_method and m not in ("none", ORACLE)]
    if not rows:
        return None
    first = rows[0][1]
    forget, retained = first["forget"], [c for c in first["classes"] if c not in first["forget"]]
    h, w = first["shape"]
    pad = 2

    def strip(samples: dict) -> np.ndarray:
        tiles = [t for f in forget for t in _decoded(samples, f)]
        tiles += [np.full((h, w), np.nan)]  # a gap between the forgotten class and the retained ones
        tiles += [_decoded(samples, c)[0] for c in retained]
        out = np.full((h + pad, len(tiles) * (w + pad)), np.nan)
        for i, t in enumerate(tiles):
            out[:h, i * (w + pad) : i * (w + pad) + w] = t
        return out

    mosaic = np.vstack([strip(s) for _, s in rows])
    fig = Figure(figsize=(0.32 * mosaic.shape[1] / (w + pad) + 1.2, 0.34 * len(rows) + 0.6))
    ax = fig.subplots()
    cmap = colormaps["gray"].with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([(h + pad) * i + h / 2 for i in range(len(rows))], [_tex(n) for n, _ in rows], fontsize=8)
    n_forget = sum(len(_decoded(first, f)) for f in forget)
    ax.set_xticks(
        [(n_forget / 2) * (w + pad)] + [(n_forget + 1 + i + 0.5) * (w + pad) for i in range(len(retained))],
        [f"class {', '.join(map(str, forget))} (forgotten)"] + [str(c) for c in retained],
        fontsize=7,
    )
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    return _png(fig)
