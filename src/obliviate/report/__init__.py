"""One self-contained HTML report from a bench results directory (see :mod:`obliviate.bench.results`).

The page needs nothing but a browser: styles are inline and figures are embedded PNGs, so it can be
mailed, archived or attached to a paper's supplement as one file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..bench.results import iter_cells, read_table, summarize, tidy
from ..io import atomic_write_text, read_json
from .html import render

__all__ = ["attack_markdown", "build_report", "markdown"]


def _summary(results_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """The run's summary table; recomputed from the cells when the run was cut short before writing it."""
    for name in ("summary.parquet", "summary.csv"):
        if (results_dir / name).exists():
            return read_table(results_dir / name), ""
    files = sorted((results_dir / "cells").glob("*.json"))
    if files:
        return summarize(tidy(files)), "summary recomputed from the cells (the run did not finish)"
    return None, ""


def _composite_of(results_dir: Path, manifest: dict) -> str:
    """The run's composite: from its manifest, else (a run cut short) from its config.yaml, else avg_gap."""
    found = manifest.get("config", {}).get("composite")
    if not found and (results_dir / "config.yaml").exists():
        import yaml

        raw = yaml.safe_load((results_dir / "config.yaml").read_text())
        found = raw.get("composite") if isinstance(raw, dict) else None
    return str(found or "avg_gap")


def build_report(results_dir: str | Path, out: str | Path | None = None, *, composite: str | None = None) -> Path:
    """Write the HTML report of a bench run and return its path.

    ``out`` defaults to ``results_dir/report.html``; ``composite`` (the metric the leaderboards are
    sorted by) to the run config's composite, else ``avg_gap``.
    """
    results_dir = Path(results_dir)
    summary, note = _summary(results_dir) if results_dir.is_dir() else (None, "")
    cells = list(iter_cells(results_dir)) if results_dir.is_dir() else []
    if summary is None or summary.empty or not cells:
        raise ValueError(
            f"{results_dir} holds no bench results (summary.csv / summary.parquet and cells/*.json); "
            "point it at the output folder of `obliviate bench`"
        )
    manifest_path = results_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    composite = composite or _composite_of(results_dir, manifest)
    out = Path(out) if out is not None else results_dir / "report.html"
    atomic_write_text(out, render(summary, cells, manifest, composite, note=note))
    return out


#: the columns of a Markdown leaderboard, by modality (the first whose metrics the run has)
MARKDOWN_METRICS = (
    ("forget_acc", "retain_acc", "test_acc", "mia_efficacy"),
    ("forget_ma", "c_gamma_mean", "c_gamma_max", "extraction_forget", "mia_auc_loss", "ppl_change"),
    ("forget_class_rate", "retained_class_acc", "fd_retained", "fd_oracle_retained", "fd_oracle_forget"),
)


def _cell(metric: str, value: float, ci: float = float("nan")) -> str:
    """A leaderboard number (``± ci`` when given): accuracies, rates and MIA scores in %, "—" where
    there is none (oracle A's own distance to itself is no measurement)."""
    if value != value:
        return "—"
    if metric.endswith(("_acc", "_rate")) or metric.startswith("mia"):
        return f"{100 * value:.1f}" + (f" ± {100 * ci:.1f}" if ci == ci else "")
    return f"{value:.3g}" + (f" ± {ci:.2g}" if ci == ci else "")


def markdown(results_dir: str | Path, *, composite: str | None = None, metrics: tuple[str, ...] | None = None) -> str:
    """The leaderboards as Markdown (for a README): per forget set, one row per method, best first,
    ``mean ± 95% CI`` of the composite, means of ``metrics`` (accuracies and rates in %; default: the
    classifier, LM or diffusion columns of :data:`MARKDOWN_METRICS`) and cost vs retrain."""
    from .html import method_order

    results_dir = Path(results_dir)
    summary, _ = _summary(results_dir)
    if summary is None or summary.empty:
        raise ValueError(f"{results_dir} holds no bench results")
    manifest = read_json(results_dir / "manifest.json") if (results_dir / "manifest.json").exists() else {}
    composite = composite or _composite_of(results_dir, manifest)
    if metrics is None:
        present = set(summary["metric"])
        metrics = next((cols for cols in MARKDOWN_METRICS if cols[0] in present), MARKDOWN_METRICS[0])
    out = []
    for (dataset, forget), sec in summary.groupby(["dataset", "forget"], sort=False):
        order, note = method_order(sec, composite)
        mean = sec.pivot(index="method", columns="metric", values="mean")
        ci = sec.pivot(index="method", columns="metric", values="ci95")
        shown = [m for m in metrics if m in mean.columns]
        extra = [] if composite in shown else [composite]  # a shown composite carries its interval in place
        head = ["method", *shown, *extra, "cost (% of retrain)"]
        lines = [
            f"**{dataset}, forget {forget}** ({note}; n = {int(sec['n'].max())} seeds; accuracies and rates in %)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        ref = sec.groupby("metric")["oracle"].mean()
        oracle_a = [*(_cell(k, ref[k]) for k in shown), *["—"] * len(extra), "100%"]
        lines.append("| oracle A (reference) | " + " | ".join(oracle_a) + " |")
        for m in order:
            c, w = (
                mean.at[m, composite] if composite in mean else float("nan"),
                ci.at[m, composite] if composite in ci else float("nan"),
            )
            cells = [_cell(k, mean.at[m, k], w if k == composite else float("nan")) for k in shown]
            comp = [f"{c:.2f}" + (f" ± {w:.2f}" if w == w else "")] if extra else []
            cost = mean.at[m, "cost_ratio"] if "cost_ratio" in mean else float("nan")
            name = "oracle B (noise floor)" if m == "oracle" else f"`{m}`"
            lines.append(
                f"| {name} | " + " | ".join([*cells, *comp, f"{100 * cost:.1f}%" if cost == cost else "—"]) + " |"
            )
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def attack_markdown(results_dir: str | Path, *, composite: str | None = None) -> str:
    """Which forgetting survives attack, as Markdown: per forget set, each method's recovery under every
    attack of the run (oracle A's recovery in the first row, ± the floor: oracle B's distance from it),
    the attacks whose recovery lands within the floor of oracle A's ("survives"), the unattacked
    composite and the cost. Recovery is the share of the original-to-oracle distance on the forget
    metric that the attack takes back (0: nothing, 1: all of it)."""
    from ..metrics.catalogue import ATTACK_SEP
    from .html import method_order

    results_dir = Path(results_dir)
    summary, _ = _summary(results_dir)
    if summary is None or summary.empty:
        raise ValueError(f"{results_dir} holds no bench results")
    manifest = read_json(results_dir / "manifest.json") if (results_dir / "manifest.json").exists() else {}
    composite = composite or _composite_of(results_dir, manifest)
    out = []
    for (dataset, forget), sec in summary.groupby(["dataset", "forget"], sort=False):
        rec = [m for m in dict.fromkeys(sec["metric"]) if m.endswith(ATTACK_SEP + "recovery")]
        if not rec:
            continue
        attacks = [m.split(ATTACK_SEP)[0] for m in rec]
        order, _ = method_order(sec, composite)
        by = sec.set_index(["method", "metric"])
        head = ["method", *attacks, "survives (within the floor)", composite, "cost (% of retrain)"]
        ref = sec.groupby("metric")[["oracle", "floor"]].mean()
        first = ["oracle A (reference)"] + [f"{ref.at[m, 'oracle']:.2f} ± {ref.at[m, 'floor']:.2f}" for m in rec]
        lines = [
            f"**{dataset}, forget {forget}** (recovery under each attack; n = {int(sec['n'].max())} seeds)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            "| " + " | ".join([*first, "—", "—", "100%"]) + " |",
        ]
        for m in order:
            vals, ok = [], []
            for a, r in zip(attacks, rec):
                if (m, r) not in by.index:
                    vals.append("—")
                    continue
                row = by.loc[(m, r)]
                vals.append(f"{row['mean']:.2f}")
                if row["gap"] <= row["floor"]:
                    ok.append(a)
            surv = "all" if len(ok) == len(attacks) else ", ".join(ok) or "none"
            comp = by.loc[(m, composite), "mean"] if (m, composite) in by.index else float("nan")
            cost = by.loc[(m, "cost_ratio"), "mean"] if (m, "cost_ratio") in by.index else float("nan")
            name = "oracle B (noise floor)" if m == "oracle" else f"`{m}`"
            lines.append(
                f"| {name} | "
                + " | ".join([*vals, surv, f"{comp:.2f}", f"{100 * cost:.1f}%" if cost == cost else "—"])
                + " |"
            )
        out.append("\n".join(lines))
    if not out:
        raise ValueError(f"{results_dir} has no attack rows (run the grid with attacks:)")
    return "\n\n".join(out) + "\n"
