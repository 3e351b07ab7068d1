"""The grid runner: originals, oracles and tunings cached by content, cells resumable, results tidy.

A run directory holds::

    config.yaml          the config as given
    cache/models/<key>/  originals and oracles (safetensors + manifest), keyed by data, recipe,
                         seed and split hash, so every method and every rerun reuses them
    cache/splits/        forget splits by content hash
    cache/tuning/        ob.tune results
    cells/<key>.json     one finished (dataset, forget set, method, seed) cell, written atomically
    models/<cell>/       the unlearned models, with ``save_models: true``
    results.parquet/.csv tidy: one row per cell x metric (value, oracle, gap, floor)
    summary.parquet/.csv mean, std and 95% t-interval over seeds per (dataset, forget, method, metric)
    manifest.json        versions, config, seeds, data / split / checkpoint hashes, timings

Rerunning the same config computes only cells without a file; a killed run loses at most the
cells in flight. Planning is :mod:`.plan`, the jobs :mod:`.jobs`, the results format :mod:`.results`
and the display :mod:`.progress`; this module runs the stages in order.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..executor import Executor, get_executor
from ..io import atomic_write_text, read_json, write_json
from .config import BenchConfig, load_config
from .jobs import (
    ROC_GRID,
    cell_job,
    data_of,
    fingerprint,
    recipe_of,
    resolve_device,
    train_oracle_job,
    train_original_job,
    tune_job,
)
from .plan import Group, Planner, check_against_data
from .progress import Progress
from .results import DIRECTION, TIMING_METRICS, iter_cells, read_table, summarize, tidy, write_table

__all__ = [
    "DIRECTION",
    "ROC_GRID",
    "TIMING_METRICS",
    "BenchRun",
    "cell_job",
    "data_of",
    "file_sha256",
    "iter_cells",
    "read_table",
    "recipe_of",
    "resolve_device",
    "run",
    "summarize",
    "tidy",
    "train_oracle_job",
    "train_original_job",
    "tune_job",
    "write_table",
]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class BenchRun:
    """What :func:`run` did: where, how many cells it computed and reused, the tidy results."""

    out: Path
    computed: int
    reused: int
    results: pd.DataFrame
    summary: pd.DataFrame
    seconds: float
    groups: list[Group] = field(default_factory=list)  # per (dataset, forget set, seed): original, oracles, split


def run(
    config: BenchConfig | str | Path,
    out: str | Path | None = None,
    *,
    executor: str | Executor = "in-process",
    device: str | None = None,
    cache: str | Path | None = None,
    progress: bool | None = None,
) -> BenchRun:
    """Run (or resume) a grid; return the tidy results. See the module docstring for the layout.

    ``device`` overrides the config's (``auto``: CUDA when present, with the datasets'
    ``recipe_cuda``); ``cache`` shares originals, oracles and tunings between run folders.
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, BenchConfig) else load_config(config)
    out = Path(out) if out is not None else Path("runs/bench") / cfg.name
    cache_dir = Path(cache) if cache is not None else out / "cache"
    for sub in ("models", "splits", "tuning"):
        (cache_dir / sub).mkdir(parents=True, exist_ok=True)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ex = get_executor(executor) if isinstance(executor, str) else executor
    check_against_data(cfg, dev)
    atomic_write_text(out / "config.yaml", cfg.text)
    plan = Planner(cfg, out, cache_dir, dev, torch.get_num_threads())

    with Progress(progress) as bar:
        todo = plan.plan_originals()
        n_cells = len(plan.groups) * (len(cfg.methods) + (cfg.oracles > 1))
        bar.plan("original", len(todo))
        bar.plan("cell", n_cells)
        for job, _ in ex.map(train_original_job, todo):
            bar.step("original", f"original {Path(job.path).name} trained")
        logged, oracles, tunes = plan.plan_oracles()
        bar.plan("original", len(logged))
        bar.plan("oracle", len(oracles))
        bar.plan("tune", len(tunes))
        for job, _ in ex.map(train_original_job, logged):
            bar.step("original", f"original with update log {Path(job.path).name}")
        for job, _ in ex.map(train_oracle_job, oracles):
            bar.step("oracle", f"oracle seed {job.seed} ({Path(job.path).name})")
        for job, res in ex.map(tune_job, tunes):
            bar.step("tune", f"tuned {job.method}: {read_json(Path(res))['best_params']}")
        cell_files, cell_jobs = plan.plan_cells()
        reused = len(cell_files) - len(cell_jobs)
        bar.plan("cell", -reused)
        computed = 0
        for job, rec in ex.map(cell_job, cell_jobs):
            computed += 1
            comp = next((r["value"] for r in rec["metrics"] if r["metric"] == cfg.composite), float("nan"))
            c = job.cell
            bar.step(
                "cell",
                f"{c.dataset} {c.forget} {c.method} seed {c.seed}: {cfg.composite} {comp:.3f} ({rec['seconds']:.2f} s)",
            )

    results = tidy(cell_files)
    summary = summarize(results)
    write_table(results, out / "results")
    write_table(summary, out / "summary")
    parts: dict[str, Any] = {"splits": plan.splits, "checkpoints": {}, "tuning": {}}
    for p in {*plan.originals, *plan.oracles}:
        if Path(p, "model.safetensors").exists():
            parts["checkpoints"][Path(p).name] = file_sha256(Path(p, "model.safetensors"))
    for (d, f, m), p in plan.tuning_of.items():
        parts["tuning"][f"{d}/{f}/{m}"] = read_json(Path(p))["best_params"]
    seconds = time.perf_counter() - start
    write_json(
        out / "manifest.json",
        _manifest(cfg, dev, ex, parts, n_cells, computed, reused, seconds, cache_dir, [p.name for p in cell_files]),
    )
    return BenchRun(out, computed, reused, results, summary, seconds, plan.groups)


def _manifest(
    cfg: BenchConfig,
    dev: torch.device,
    ex: Executor,
    parts: dict,
    n_cells: int,
    computed: int,
    reused: int,
    seconds: float,
    cache_dir: Path,
    cell_names: list[str],
) -> dict:
    import duckdb
    import sklearn

    from ..models.store import versions

    data_hashes = {}
    for ds in cfg.datasets:
        data = data_of(ds)
        data_hashes[ds.label] = {
            "train": fingerprint(data.train),
            "test": fingerprint(data.test),
            "val": fingerprint(data.val) if data.val is not None else None,
            "n_train": len(data.train),
        }
    return {
        "config": cfg.to_dict(),
        "versions": {
            **versions(),
            "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__,
            "duckdb": duckdb.__version__,
        },
        "seeds": list(cfg.seeds),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "executor": ex.name,
        "data": data_hashes,
        **parts,
        "cache": str(cache_dir),
        "cells": {"total": n_cells, "computed": computed, "reused": reused, "files": cell_names},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 2),
    }
