"""One self-contained HTML report from a bench results directory (see :mod:`obliviate.bench.runner`).

The page needs nothing but a browser: styles are inline and figures are embedded PNGs, so it can be
mailed, archived or attached to a paper's supplement as one file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..bench.runner import iter_cells, read_table, summarize, tidy
from ..io import atomic_write_text, read_json
from .html import render

__all__ = ["build_report"]


def _summary(results_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """The run's summary table; recomputed from the cells when the run was cut short before writing it."""
    for name in ("summary.parquet", "summary.csv"):
        if (results_dir / name).exists():
            return read_table(results_dir / name), ""
    files = sorted((results_dir / "cells").glob("*.json"))
    if files:
        return summarize(tidy(files)), "summary recomputed from the cells (the run did not finish)"
    return None, ""


def build_report(results_dir: str | Path, out: str | Path | None = None, *, composite: str | None = None) -> Path:
    """Write the HTML report of a bench run and return its path.

    ``out`` defaults to ``results_dir/report.html``; ``composite`` (the metric the leaderboards are
    sorted by) to the run config's composite, else ``avg_gap``.
    """
    results_dir = Path(results_dir)
    summary, note = _summary(results_dir) if results_dir.is_dir() else (None, "")
    cells = list(iter_cells(results_dir)) if results_dir.is_dir() else []
    if summary is None or summary.empty or not cells:
        raise ValueError(f"{results_dir} holds no bench results (summary.csv / summary.parquet and cells/*.json); "
                         "point it at the output folder of `obliviate bench`")
    manifest_path = results_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    composite = composite or manifest.get("config", {}).get("composite") or "avg_gap"
    out = Path(out) if out is not None else results_dir / "report.html"
    atomic_write_text(out, render(summary, cells, manifest, composite, note=note))
    out.chmod(0o644)  # a report is for sharing; the atomic temp file is created private
    return out
