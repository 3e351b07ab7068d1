"""Presets: ``obliviate demo`` as a grid config over the one runner, plus the files the README uses.

The demo is one dataset x one forget set x one seed with two oracles, every method run by
:func:`obliviate.bench.run`, so it follows the same oracle policy (floor oracle = seed + 500), cache
and evaluation as any grid; rerunning it with the same options reuses what is on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import yaml

from ..data.splits import ForgetSpec, ForgetSplit
from ..io import write_json
from ..methods import available
from ..methods.result import UnlearningResult
from ..metrics.catalogue import METRICS
from ..models.store import load_model, save_model
from .config import BenchConfig, load_config
from .jobs import resolve_device
from .plan import slug
from .results import iter_cells
from .runner import BenchRun, run

#: how the demo table names the two oracles
ORACLE_ROW, FLOOR_ROW = "oracle (retrain)", "oracle #2 (floor)"


def demo_methods(methods: str | list[str]) -> list[str]:
    """The demo's method rows: ``none`` first, then the named ones (``all``: every classification method)."""
    names = [m.strip() for m in methods.split(",") if m.strip()] if isinstance(methods, str) else list(methods)
    if names == ["all"]:
        names = list(available("classification"))
    return ["none", *[n for n in names if n not in ("none", "retrain")]]


def demo_config(
    dataset: str = "digits",
    forget: str = "random:0.1",
    methods: str | list[str] = "all",
    seed: int = 0,
    epochs: int | None = None,
    device: str | None = None,
) -> BenchConfig:
    """The demo's options as a bench config (built as YAML, so it is checked like any config file)."""
    raw: dict[str, Any] = {
        "name": "demo",
        "seeds": [seed],
        "oracles": 2,
        "datasets": [
            {
                "name": dataset,
                "val_fraction": 0.5,
                "val_seed": seed,
                **({"recipe": {"epochs": epochs}} if epochs is not None else {}),
            }
        ],
        "forget": [ForgetSpec.parse(forget).to_mapping()],
        "methods": demo_methods(methods),
        "roc": False,
        "save_models": True,
        "device": device or "auto",
    }
    return load_config(text=yaml.safe_dump(raw, sort_keys=False))


def demo_rows(result: BenchRun) -> list[dict[str, Any]]:
    """One row per model as the demo table shows it: the reference oracle's own values, the floor
    oracle and every method (metric -> value, plus ``diverged``)."""
    records = list(iter_cells(result.out))
    oracle = UnlearningResult.load(result.groups[0].oracles[0])
    ref = {
        r["metric"]: r["oracle"]
        for r in records[0]["metrics"]
        if r["metric"] in METRICS and METRICS[r["metric"]].kind == "model"
    }
    rows = [{"method": ORACLE_ROW, **ref, "seconds": oracle.seconds, "cost_ratio": 1.0, "diverged": False}]
    for rec in records:
        name = rec["cell"]["method"]
        rows.append(
            {
                "method": FLOOR_ROW if name == "oracle" else name,
                **{r["metric"]: r["value"] for r in rec["metrics"]},
                "diverged": rec["diverged"],
            }
        )
    return rows


def run_demo(cfg: BenchConfig, out: Path, *, progress: bool | None = None) -> tuple[list[dict[str, Any]], dict]:
    """Run the demo grid under ``out/grid`` and write what the README uses: ``results.csv`` /
    ``results.json``, ``split.json`` and ``models/{original,oracle,retrain,<method>}``, each model's
    manifest naming its dataset (so ``obliviate evaluate`` needs no ``--dataset``)."""
    import pandas as pd

    result = run(cfg, out / "grid", progress=progress)
    group = result.groups[0]
    dataset, seed = group.dataset.name, group.seed
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    manifests = {}
    for rec in iter_cells(result.out):
        c = rec["cell"]
        if c["method"] != "oracle":
            stem = f"{slug(c['dataset'])}__{slug(c['forget'])}__{slug(c['method'])}__s{c['seed']}"
            shutil.rmtree(models / c["method"], ignore_errors=True)
            shutil.copytree(result.out / "models" / stem, models / c["method"])
            manifests[c["method"]] = UnlearningResult.load(models / c["method"]).manifest()
    original, _ = load_model(group.original)
    save_model(original, models / "original", {"dataset": dataset, "role": "original", "seed": seed})
    reference, floor = (UnlearningResult.load(p) for p in group.oracles)
    save_model(
        reference.model,
        models / "oracle",
        {"dataset": dataset, "role": "oracle", "seed": seed, "split_hash": group.split_hash},
    )
    # the floor oracle, saved like a method's result ("retrain" with the floor seed), as before
    save_model(floor.model, models / "retrain", {**floor.manifest(), "dataset": dataset})
    shutil.copyfile(group.split_path, out / "split.json")
    split = ForgetSplit.load(group.split_path)
    rows = demo_rows(result)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    meta = {
        "dataset": dataset,
        "forget": split.kind,
        "n_forget": len(split),
        "split_hash": split.hash,
        "seed": seed,
        "recipe": group.recipe,
        "retrain_seconds": reference.seconds,
        "device": str(resolve_device(cfg.device)),
        "torch": torch.__version__,
        "grid": str(result.out),
        "rows": rows,
        "methods": manifests,
    }
    write_json(out / "results.json", meta)
    return rows, meta
