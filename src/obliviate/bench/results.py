"""The results format of a grid, which the report reads: cell records -> tidy rows -> seed summaries.

``cells/<key>.json`` holds one finished (dataset, forget set, method, seed) cell: its identity
(``cell``), parameters, seconds, notes and the evaluation frame (one record per metric: value,
oracle, gap, floor, ideal, higher_is_better). ``results`` is one row per cell x metric and
``summary`` the mean, std and 95% t-interval over seeds; both are written as CSV and Parquet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_write_text, read_json
from ..metrics.catalogue import Direction, direction_of

#: metrics of timing, which differ between otherwise identical runs
TIMING_METRICS = ("seconds", "cost_ratio")
#: the catalogue's directions as the results tables and the report spell them
DIRECTION = {Direction.HIGHER: "higher", Direction.LOWER: "lower", Direction.ORACLE: "closer to oracle"}
#: directions of the NeurIPS 2023 protocol's values (``n23_*`` rows), which are no catalogue metrics
N23_DIRECTION = {"forget_quality": "higher", "neurips23_score": "higher", "seconds": "lower"}
#: U-LiRA's rows (ulira_acc, _auc, _tpr@...): the attack's success, retraining's value is the ideal
ULIRA_DIRECTION = "lower"


def tidy(cell_files: list[Path]) -> pd.DataFrame:
    """One row per cell x metric: dataset, forget, method, seed, metric, value, oracle, gap, floor."""
    rows = []
    for p in cell_files:
        rec = read_json(p)
        c = rec["cell"]
        base = {"dataset": c["dataset"], "forget": c["forget"], "method": c["method"], "seed": c["seed"]}
        for r in rec["metrics"]:
            direction = DIRECTION[direction_of(r["metric"])]
            rows.append(
                {
                    **base,
                    "metric": r["metric"],
                    "value": r["value"],
                    "oracle": r["oracle"],
                    "gap": r["gap"],
                    "floor": r["floor"],
                    "ideal": str(r["ideal"]),
                    "direction": direction,
                }
            )
        for k, v in rec.get("epsilon", {}).get("values", {}).items():
            rows.append(
                {
                    **base,
                    "metric": f"n23_{k}",
                    "value": v,
                    "oracle": np.nan,
                    "gap": np.nan,
                    "floor": np.nan,
                    "ideal": "",
                    "direction": N23_DIRECTION.get(k, ""),
                }
            )
        for k, v in rec.get("ulira", {}).get("values", {}).items():
            rows.append(
                {
                    **base,
                    "metric": k,
                    "value": v,
                    "oracle": np.nan,
                    "gap": np.nan,
                    "floor": np.nan,
                    "ideal": "retrain's (0.5 AUC)",
                    "direction": ULIRA_DIRECTION,
                }
            )
    df = pd.DataFrame(rows)
    for col in ("value", "oracle", "gap", "floor"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and the 95% t-interval half-width over seeds, per (dataset, forget, method, metric)."""
    from scipy import stats

    keys = ["dataset", "forget", "method", "metric"]
    g = results.groupby(keys, sort=False)
    s = g.agg(
        n=("value", "count"),
        mean=("value", "mean"),
        std=("value", "std"),
        oracle=("oracle", "mean"),
        gap=("gap", "mean"),
        gap_std=("gap", "std"),
        floor=("floor", "mean"),
        ideal=("ideal", "first"),
        direction=("direction", "first"),
    ).reset_index()
    t = np.where(s["n"] > 1, stats.t.ppf(0.975, np.maximum(s["n"] - 1, 1)), np.nan)
    s["ci95"] = t * s["std"] / np.sqrt(s["n"])
    s["gap_ci95"] = t * s["gap_std"] / np.sqrt(s["n"])
    return s


def write_table(df: pd.DataFrame, stem: Path) -> None:
    """``stem.csv`` and ``stem.parquet`` (written by DuckDB, so pyarrow is not needed), atomically."""
    import duckdb

    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    tmp = stem.with_name(f".{stem.name}.parquet.tmp{os.getpid()}")
    con = duckdb.connect()
    try:
        con.register("frame", df)
        con.execute(f"COPY frame TO '{tmp}' (FORMAT PARQUET)")
    finally:
        con.close()
    os.replace(tmp, stem.with_suffix(".parquet"))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results / summary table back (Parquet via DuckDB, or CSV)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import duckdb

        return duckdb.read_parquet(str(path)).df()
    return pd.read_csv(path)


def iter_cells(out: str | Path) -> Iterator[dict]:
    """The cell records of a run folder: those of its last config (per the manifest) when known, so
    cells left by an earlier, different config of the same folder do not leak into a report."""
    out = Path(out)
    manifest = out / "manifest.json"
    names = read_json(manifest).get("cells", {}).get("files") if manifest.exists() else None
    paths = [out / "cells" / n for n in names] if names else sorted(Path(out, "cells").glob("*.json"))
    for p in paths:
        yield read_json(p)
