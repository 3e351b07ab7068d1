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


# ---- lm-demo ----------------------------------------------------------------------------------------
#: (label, method, parameters) of the lm-demo's rows: Jang's aggregate-stopped GA, GA stopped per
#: sequence at γ_max, SGA as released and stopped per sequence, NPO (with its retain term), NPO made
#: selective, and SGA with a strong retain term stopped at γ_p95. Minibatches of 32 forget rows (steps
#: comparable in cost with training steps); measured settings, see the language-models docs page.
LM_DEMO_METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("ga (aggregate stop)", "ga", {}),
    ("ga (sequence stop, γ_max)", "ga", {"stop": "sequence", "gamma_stat": "max"}),
    ("sga (released)", "sga", {}),
    (
        "sga (sequence stop, γ_max)",
        "sga",
        {"stop": "sequence", "gamma_stat": "max", "lr": 3e-4, "batch_size": 32, "max_steps": 100, "grad_clip": 1.0},
    ),
    ("npo (γ_max, 100 steps)", "npo", {"gamma_stat": "max", "lr": 3e-3, "batch_size": 32}),
    (
        "npo selective (γ_max)",
        "npo",
        {"selective": True, "gamma_stat": "max", "lr": 1e-3, "batch_size": 32, "alpha": 2.0},
    ),
    (
        "sga + retain α=5 (sequence stop, γ_p95)",
        "sga",
        {
            "stop": "sequence",
            "gamma_stat": "p95",
            "lr": 3e-4,
            "batch_size": 32,
            "alpha": 5.0,
            "max_steps": 100,
            "grad_clip": 1.0,
        },
    ),
]
#: the lm-demo's relearning attack: fine-tune on half the forget people, measure the other half
LM_DEMO_ATTACKS: list[Any] = [{"relearn": {"fraction": 0.5}}]


def lm_demo_config(
    methods: list[tuple[str, str, dict[str, Any]]] | None = None,
    *,
    steps: int = 800,
    seed: int = 0,
    device: str | None = None,
) -> BenchConfig:
    """The lm-demo as a grid config (the same as ``benchmarks/lm-people.yaml`` at the defaults): the people
    scenario (60 people, 20 forgotten, secrets ×20), the tiny GPT-2 trained ``steps`` steps, oracle A
    (seed) and B (seed + 500), ``none`` (the original) then each method row, judged per sequence and
    after relearning half the forget people. No validation split: γ comes from every held-out person."""
    rows = LM_DEMO_METHODS if methods is None else methods
    raw: dict[str, Any] = {
        "name": "lm-demo",
        "seeds": [seed],
        "oracles": 2,
        "datasets": [{"name": "people", "options": {"pii_repeats": 20}, "val_fraction": 0, "recipe": {"steps": steps}}],
        "forget": ["dataset"],
        "methods": ["none", *({name: {"label": label, **params}} for label, name, params in rows)],
        "attacks": LM_DEMO_ATTACKS,
        "composite": "avg_gap_ma",
        "roc": False,
        "device": device or "auto",
    }
    return load_config(text=yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def _v(row: dict[str, float], metric: str) -> float:
    return row.get(metric, float("nan"))


def lm_tables(summary: Any) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of the lm-demo's three tables from a grid summary (mean over seeds): per-sequence
    forgetting, entity knowledge and the relearning attack, oracle A's value in brackets. Shared by
    ``obliviate lm-demo`` and the docs, so the printed and the published tables are one computation."""
    wide = summary.pivot_table(index="method", columns="metric", values="mean", aggfunc="first")
    ref = summary.groupby("metric")["oracle"].mean()
    order = ["original (none)", "oracle A (retrain)", "oracle B (floor)"]
    rows = {"oracle A (retrain)": ref.to_dict()}
    for method in wide.index:
        label = {"none": order[0], "oracle": order[2]}.get(method, method)
        rows[label] = wide.loc[method].dropna().to_dict()
    labels = [k for k in order if k in rows] + [k for k in dict.fromkeys(summary["method"]) if k in rows]
    oa = rows["oracle A (retrain)"]

    def pct(x: float) -> str:
        return "" if x != x else f"{100 * x:.0f}%"

    def both(r: dict, m: str, fmt: str) -> str:
        v, o = _v(r, m), _v(oa, m)
        return "" if v != v else f"{v:{fmt}} ({o:{fmt}})"

    seq_head = ["model", "c(D_f) γ_mean", "γ_p95", "γ_max", "forget MA", "secret extr. forget", "retained",
                "MIA AUC loss", "PrivLeak", "Δ ppl", "seconds", "% of retrain"]  # fmt: skip
    seq = [
        [
            k,
            both(r, "c_gamma_mean", ".0f"),
            both(r, "c_gamma_p95", ".0f"),
            both(r, "c_gamma_max", ".0f"),
            both(r, "forget_ma", ".3f"),
            pct(_v(r, "extraction_secret_forget")),
            pct(_v(r, "extraction_secret_retain")),
            f"{_v(r, 'mia_auc_loss'):.2f}",
            "" if k == labels[1] else f"{_v(r, 'privleak'):+.2f}",
            f"{100 * _v(r, 'ppl_change'):+.1f}%",
            "" if _v(r, "seconds") != _v(r, "seconds") else f"{_v(r, 'seconds'):.1f}",
            "" if _v(r, "cost_ratio") != _v(r, "cost_ratio") else f"{100 * _v(r, 'cost_ratio'):.1f}%",
        ]
        for k, r in ((k, rows[k]) for k in labels)
    ]
    ent_head = ["model", "forget QA acc", "forget quality (KS p)", "neighbour QA acc", "association forget / retained"]
    ent = [
        [
            k,
            pct(_v(r, "extraction_qa_forget")),
            "" if k == labels[1] else f"{_v(r, 'forget_quality'):.2g}",
            pct(_v(r, "extraction_qa_retain")),
            f"{pct(_v(r, 'extraction_assoc_forget'))} / {pct(_v(r, 'extraction_assoc_retain'))}",
        ]
        for k, r in ((k, rows[k]) for k in labels)
    ]
    rel_head = ["model", "forget MA after relearning", "c γ_max after", "forget rows extracted after", "recovery"]
    rel = [
        [
            k,
            both(r, "relearn/forget_ma", ".3f"),
            both(r, "relearn/c_gamma_max", ".0f"),
            pct(_v(r, "relearn/extraction_forget")),
            both(r, "relearn/recovery", ".2f"),
        ]
        for k, r in ((k, rows[k]) for k in labels if k != order[0])
    ]
    return [
        (
            "per-sequence forgetting (oracle A's value in brackets; γ from the original's held-out people)",
            seq_head,
            seq,
        ),
        ("entity knowledge (TOFU-style: the forget people vs their retained neighbours)", ent_head, ent),
        ("relearning attack: fine-tune on half the forget people, measure the other half", rel_head, rel),
    ]


def run_lm_demo(cfg: BenchConfig, out: Path, *, progress: bool | None = None) -> tuple[list, BenchRun]:
    """Run the lm-demo grid under ``out/grid``; write ``out/results.json`` (the tables and every row)."""
    result = run(cfg, out / "grid", progress=progress)
    tables = lm_tables(result.summary)
    write_json(
        out / "results.json",
        {
            "grid": str(result.out),
            "tables": [{"title": t, "header": h, "rows": r} for t, h, r in tables],
            "summary": result.summary.to_dict(orient="records"),
        },
    )
    return tables, result
