"""``obliviate diffusion-demo``: forget one digit from a class-conditional diffusion model, judged
against the oracle retrained without it.

Trains the original on D, oracle A on D_r (same recipe and seed) and oracle B on D_r (seed + 500,
the noise floor, as the bench's oracle policy), a judge classifier on the real data, then runs each
method on the original and samples every model with the same DDIM sampler, guidance and initial
noise. Prints, per model, the forget-class rate, retained-class accuracy and Fréchet distances next
to oracle A's and the floor, and the cost as a fraction of retraining; saves results JSON and
sample grids (PNG).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.datasets import Data, load
from ..data.splits import ForgetSplit
from ..evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from ..evaluation.report import Report
from ..io import atomic_write_text
from ..methods import unlearn
from ..methods.base import get
from ..models.diffusion import Denoiser
from ..train.diffusion import DiffusionRecipe, train_diffusion

#: (label, method, overrides): the issue's five methods and two variants. The classification
#: methods' SGD defaults are tuned for classifiers; on a denoiser they take Adam (lr 1e-3, no
#: weight decay; 1e-4 for the ascent of ga+retain, which collapsed the retained classes at 1e-3).
DEFAULT_METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("finetune", "finetune", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "epochs": 1}),
    ("ga+retain", "neggrad+", {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "epochs": 1}),
    ("random-label", "random-label", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "epochs": 2}),
    ("salun", "salun", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "epochs": 2}),
    ("esd", "esd", {}),
    ("esd (class row)", "esd", {"params": "class", "lr": 1e-2, "alpha": 0.0}),
    ("concept-ablation", "concept-ablation", {}),
]


@dataclass(frozen=True)
class DemoConfig:
    """The demo's data, recipe, sampling and seeds (defaults: digits, forget 3, ~2.5 min on 2 cores)."""

    dataset: str = "digits"
    forget: int = 3
    #: lr 2e-3: at 1e-3 the 300-step original's retained samples were recognised 81% of the time, at
    #: 2e-3 96% (measured, judge MLP; the reference spec's gate is 90%)
    recipe: DiffusionRecipe = field(default_factory=lambda: DiffusionRecipe(config="digits-demo", steps=300, lr=2e-3))
    plan: SamplingPlan = field(default_factory=SamplingPlan)
    seed: int = 0
    #: oracle B (the floor) is trained with seed + this (the bench's oracle policy)
    floor_offset: int = 500


def _check_data(data: Data, recipe: DiffusionRecipe, forget: int) -> None:
    cfg = recipe.denoiser_config()
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    if tuple(data.input_shape) != shape:
        raise ValueError(f"{data.name} images are {tuple(data.input_shape)} but the recipe's denoiser makes {shape}")
    if not 0 <= forget < data.num_classes:
        raise ValueError(f"class {forget} is not in {data.name} (classes 0..{data.num_classes - 1})")


def run_demo(
    cfg: DemoConfig | None = None,
    methods: list[tuple[str, str, dict[str, Any]]] | None = None,
    *,
    data: Data | None = None,
    out: Path | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo; returns ``{"config", "rows", "seconds", ...}`` (rows: label -> value/oracle/floor
    per metric) and, with ``out``, writes ``results.json`` and ``grids/*.png`` there."""
    cfg = cfg or DemoConfig()
    methods = DEFAULT_METHODS if methods is None else methods
    start = time.perf_counter()
    data = data or load(cfg.dataset)
    _check_data(data, cfg.recipe, cfg.forget)
    split = ForgetSplit.by_class(data.train, [cfg.forget])
    retain = split.retain_set(data.train)
    built = [(label, get(name)(**params)) for label, name, params in methods]  # bad params fail here

    def trained(on: Any, seed: int, what: str) -> tuple[Denoiser, float]:
        t = time.perf_counter()
        model = train_diffusion(cfg.recipe, on, seed=seed, num_classes=data.num_classes, progress=False)
        seconds = time.perf_counter() - t
        echo(f"{what}: {cfg.recipe.steps} steps in {seconds:.1f} s")
        return model, seconds

    original, _ = trained(data.train, cfg.seed, "original")
    oracle_a, retrain_seconds = trained(retain, cfg.seed, "oracle A")
    oracle_b, _ = trained(retain, cfg.seed + cfg.floor_offset, "oracle B (floor)")
    judge = train_judge(data, seed=cfg.seed)
    cache: dict[int, Any] = {}

    def judged(model: Denoiser, seconds: float | None = None) -> Report:
        return evaluate_generative(
            model,
            data,
            [cfg.forget],
            classifier=judge,
            oracle=[oracle_a, oracle_b],
            plan=cfg.plan,
            seconds=seconds,
            retrain_seconds=retrain_seconds,
            cache=cache,
        )

    reports: dict[str, Report] = {"original": judged(original), "oracle A": judged(oracle_a)}
    reports["oracle B"] = judged(oracle_b)
    notes: dict[str, list[str]] = {}
    for label, method in built:
        run = unlearn(original, data.train, split, method=method, seed=cfg.seed, progress=False)
        assert isinstance(run.model, Denoiser)  # unlearn returns a copy of the original's class
        reports[label] = judged(run.model, run.seconds)
        notes[label] = run.notes
        echo(f"{label}: {run.seconds:.1f} s")
    rows = {label: _row(rep) for label, rep in reports.items()}
    result: dict[str, Any] = {
        "config": {
            "dataset": data.name,
            "forget": cfg.forget,
            "recipe": cfg.recipe.to_dict(),
            "plan": asdict(cfg.plan),
            "seed": cfg.seed,
            "floor_seed": cfg.seed + cfg.floor_offset,
            "methods": [{"label": lab, "method": name, "params": p} for lab, name, p in methods],
        },
        "retrain_seconds": retrain_seconds,
        "rows": rows,
        "notes": {k: v for k, v in notes.items() if v},
        "seconds": time.perf_counter() - start,
    }
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.json", json.dumps(result, indent=2, default=float))
        for label, rep in reports.items():
            save_grid({label: rep}, cfg.forget, out / "grids" / f"{_slug(label)}.png", per_class=8)
        save_grid(reports, cfg.forget, out / "grids" / "overview.png", per_class=6)
    return result


def _row(rep: Report) -> dict[str, Any]:
    return {
        "values": dict(rep.values),
        "oracle": dict(rep.oracle or {}),
        "floor": dict(rep.floor),
        "class_accuracy": rep.details["class_accuracy"],
        "class_fd": rep.details["class_fd"],
    }


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label).strip("-")


#: the table's columns: (heading, metric, show oracle A's value, show the floor)
COLUMNS = [
    ("forget rate", "forget_class_rate", True, True),
    ("retained acc", "retained_class_acc", True, True),
    ("FD retained", "fd_retained", True, True),
    ("FD→oracle retained", "fd_oracle_retained", False, True),
    ("FD→oracle forget", "fd_oracle_forget", False, True),
    ("label TV forget", "tv_forget_labels", False, True),
]


def format_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Heading and rows: one per model, then oracle A's values and the floor (oracle B's gap to A)."""
    head = ["model"] + [c[0] for c in COLUMNS] + ["cost ×retrain"]
    rows = result["rows"]
    body = []
    for label, row in rows.items():
        if label == "oracle A":
            continue
        v = row["values"]
        cost = _fmt(v.get("cost_ratio"))
        body.append([label] + [_fmt(v.get(metric)) for _, metric, _, _ in COLUMNS] + [cost])
    ref = rows["original"]
    body.append(["oracle A"] + [_fmt(ref["oracle"].get(m)) if o else "0" for _, m, o, _ in COLUMNS] + ["1.00"])
    body.append(["floor |B − A|"] + [_fmt(ref["floor"].get(m)) for _, m, _, _ in COLUMNS] + [""])
    return head, body


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.2f}"


def save_grid(reports: dict[str, Report], forget: int, path: Path, per_class: int = 8) -> Path:
    """Sample grids from each report's images (same initial noise per sample index in every model).

    One model: a row per class (the forgotten class first, marked), ``per_class`` samples each. Several
    models: a row per model, ``per_class`` samples of the forgotten class, then one sample of each
    retained class.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(reports.values())).details["outputs"]
    classes = [forget] + [c for c in range(first.num_classes) if c != forget]

    def pick(rep: Report, cls: int, k: int) -> list[np.ndarray]:
        cond, images = rep.details["outputs"].cond, rep.details["images"]
        return [images[i, 0].numpy() for i in np.nonzero(cond == cls)[0][:k]]

    if len(reports) == 1:
        rep = next(iter(reports.values()))
        grid = [pick(rep, c, per_class) for c in classes]
        labels = [f"{c} (forgotten)" if c == forget else str(c) for c in classes]
        title = next(iter(reports))
    else:
        grid = [pick(r, forget, per_class) + [pick(r, c, 1)[0] for c in classes[1:]] for r in reports.values()]
        labels = list(reports)
        title = f"left: {per_class} samples conditioned on the forgotten class {forget}; right: classes {classes[1:]}"
    rows, cols = len(grid), max(len(g) for g in grid)
    fig, axes = plt.subplots(rows, cols, figsize=(0.6 * cols + 1.6, 0.6 * rows + 0.5), squeeze=False)
    for r, (label, images) in enumerate(zip(labels, grid)):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0, vmax=1)
            if len(reports) > 1 and c >= per_class:
                for s in ax.spines.values():
                    s.set_color("#888888")
            elif len(reports) > 1 or r == 0:
                for s in ax.spines.values():
                    s.set_color("#c0392b")
                    s.set_linewidth(1.5)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
