"""Class forgetting for a diffusion model on Fashion-MNIST: every diffusion method, 3 seeds, vs the oracle.

The grid of issue 17: the original (all of D), oracle A (D_r, seed 0) and oracle B (D_r, seed 500, the
noise floor) are trained once with one recipe and cached (safetensors + manifest under OUT/models);
then for each seed every method unlearns the original under that seed and every model is sampled
with that seed's initial noise (DDIM, guidance 1 by default), labelled by a judge MLP trained on the real data,
and judged against oracle A with oracle B as the floor. Finished cells are kept in OUT/cells.jsonl
and skipped on a rerun; OUT/summary.json and OUT/summary.md hold each method's mean ± sd over seeds.

Images are Fashion-MNIST's 28×28 average-pooled to 14×14 (``--size 28`` keeps full size at ~4× the
cost): on 2 CPU cores a 32×32 ``mnist-S`` UNet trains at ~2-5 s per step of 64, which would spend the
whole 90-minute budget on the original alone.

Usage:
  python benchmarks/diffusion_fashion_mnist.py --time-cell     # time one cell, print the grid's estimate
  python benchmarks/diffusion_fashion_mnist.py                 # the grid (resumable)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import obliviate as ob
from obliviate.data.datasets import ArrayDataset, Data
from obliviate.diffusion.demo import DEFAULT_METHODS, diffusion_method
from obliviate.evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from obliviate.models.diffusion import Denoiser
from obliviate.models.store import load_model, save_model
from obliviate.train.diffusion import DiffusionRecipe, train_diffusion

FORGET = 1  # trouser: a class the judge recognises reliably, so its rate is not classifier confusion


def fashion(size: int, per_class: int) -> tuple[Data, Data]:
    """Fashion-MNIST at ``size``²: with the first ``per_class`` training images of each class (the
    generators' data: the retain-set methods pass over D_r once per epoch, and on all 54,000 that alone
    would cost as much as training the original), and whole (the judge's)."""
    data = ob.datasets.load("fashion-mnist")

    def pool(ds: Any) -> ArrayDataset:
        return ds if size == 28 else ArrayDataset(F.adaptive_avg_pool2d(ds.x, size), ds.y)

    full = dataclasses.replace(data, train=pool(data.train), test=pool(data.test), input_shape=(1, size, size))
    y = full.train.y
    keep = torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(10)]).sort().values
    return dataclasses.replace(full, train=full.train.subset(keep)), full


def recipe_for(size: int, steps: int) -> DiffusionRecipe:
    # 14x14: two blocks (14 -> 7); 28x28: three (28 -> 14 -> 7) with mid-block attention, as mnist-S
    overrides: dict[str, Any] = {"image_size": size}
    config = "digits-demo" if size == 14 else "mnist-S"
    return DiffusionRecipe(config=config, steps=steps, batch_size=128, lr=2e-3, overrides=overrides)


def cached(path: Path, recipe: DiffusionRecipe, dataset: Any, seed: int, log: dict[str, float]) -> Denoiser:
    """Train once; later runs load the safetensors (the training seconds are kept in the manifest)."""
    cfg = recipe.denoiser_config()
    if (path / "model.safetensors").exists():
        model, manifest = load_model(path, Denoiser(cfg))
        log[path.name] = manifest["seconds"]
        assert isinstance(model, Denoiser)
        return model.eval()
    t = time.perf_counter()
    model = train_diffusion(recipe, dataset, seed=seed, num_classes=10, progress=True)
    log[path.name] = time.perf_counter() - t
    save_model(
        model, path, {"denoiser": cfg.to_dict(), "recipe": recipe.to_dict(), "seed": seed, "seconds": log[path.name]}
    )
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/diffusion-fashion-mnist"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--forget", type=int, default=FORGET)
    ap.add_argument("--size", type=int, choices=(14, 28), default=14)
    ap.add_argument("--train-per-class", type=int, default=600, help="training images per class (6,000 in all)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps (batch 128) of each of the 3 models")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--forget-per-class", type=int, default=200)
    ap.add_argument("--sample-steps", type=int, default=20)
    ap.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance scale (3 oversaturates this small 14x14 model's footwear samples)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-cell", action="store_true", help="time 20 training steps and one cell; estimate the grid")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data, full = fashion(args.size, args.train_per_class)
    split = ob.ForgetSplit.by_class(data.train, [args.forget])
    retain = split.retain_set(data.train)
    recipe = recipe_for(args.size, args.steps)
    judge = train_judge(full, hidden=64, epochs=10)  # on all 60,000 real images

    def plan(seed: int) -> SamplingPlan:
        return SamplingPlan(args.per_class, args.forget_per_class, args.sample_steps, args.guidance, seed)

    if args.time_cell:
        time_cell(args, data, split, retain, recipe, judge, plan(0))
        return
    log: dict[str, float] = {}
    models = args.out / "models"
    original = cached(models / "original", recipe, data.train, 0, log)
    oracle_a = cached(models / "oracle-A", recipe, retain, 0, log)
    oracle_b = cached(models / "oracle-B", recipe, retain, 500, log)
    cells_path = args.out / "cells.jsonl"
    done = set()
    if cells_path.exists():
        done = {(c["seed"], c["label"]) for c in map(json.loads, cells_path.read_text().splitlines())}
    for seed in args.seeds:
        cache: dict[int, Any] = {}
        sampling = plan(seed)

        def judged(model: Denoiser, seconds: float | None, p: SamplingPlan = sampling, c: dict = cache) -> Any:
            return evaluate_generative(
                model,
                data,
                [args.forget],
                classifier=judge,
                oracle=[oracle_a, oracle_b],
                plan=p,
                seconds=seconds,
                retrain_seconds=log["oracle-A"],
                cache=c,
            )

        rows: list[tuple[str, Callable[[], tuple[Denoiser, float | None]]]] = [
            ("original", lambda: (original, None)),
            ("oracle B", lambda: (oracle_b, None)),
        ]
        for label, name, params in DEFAULT_METHODS:

            def run(name: str = name, params: dict = params, seed: int = seed) -> tuple[Denoiser, float | None]:
                r = ob.unlearn(original, data.train, split, method=diffusion_method(name, params), seed=seed)
                assert isinstance(r.model, Denoiser)
                return r.model, r.seconds

            rows.append((label, run))
        for label, make in rows:
            if (seed, label) in done:
                continue
            t = time.perf_counter()
            model, seconds = make()
            rep = judged(model, seconds)
            cell = {
                "seed": seed,
                "label": label,
                "values": rep.values,
                "oracle": rep.oracle,
                "floor": rep.floor,
                "class_accuracy": rep.details["class_accuracy"],
                "wall": time.perf_counter() - t,
            }
            with cells_path.open("a") as f:
                f.write(json.dumps(cell, default=float) + "\n")
            print(
                f"seed {seed} {label}: rate {rep['forget_class_rate']:.3f} acc {rep['retained_class_acc']:.3f} "
                f"({cell['wall']:.0f} s)",
                flush=True,
            )
    summarize(cells_path, args.out, log)


def summarize(cells_path: Path, out: Path, log: dict[str, float]) -> None:
    """Mean ± sd over seeds per method and metric, with oracle A's mean and the floor's."""
    cells = [json.loads(line) for line in cells_path.read_text().splitlines()]
    labels = list(dict.fromkeys(c["label"] for c in cells))
    metrics = list(cells[0]["values"])
    summary: dict[str, Any] = {"training_seconds": log, "methods": {}}
    for label in labels:
        mine = [c for c in cells if c["label"] == label]
        summary["methods"][label] = {
            m: {
                "mean": float(np.mean([c["values"][m] for c in mine if m in c["values"]])),
                "sd": float(np.std([c["values"][m] for c in mine if m in c["values"]], ddof=0)),
                "oracle": float(np.mean([c["oracle"].get(m, np.nan) for c in mine])),
                "floor": float(np.mean([c["floor"].get(m, np.nan) for c in mine])),
                "seeds": len(mine),
            }
            for m in metrics
            if any(m in c["values"] for c in mine)
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    cols = [
        "forget_class_rate",
        "retained_class_acc",
        "fd_retained",
        "fd_oracle_retained",
        "fd_oracle_forget",
        "tv_forget_labels",
        "cost_ratio",
    ]
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for label, row in summary["methods"].items():
        lines.append(
            f"| {label} | "
            + " | ".join(f"{row[c]['mean']:.3f} ± {row[c]['sd']:.3f}" if c in row else "" for c in cols)
            + " |"
        )
    first = summary["methods"]["original"]
    lines.append("| oracle A | " + " | ".join(f"{first[c]['oracle']:.3f}" if c in first else "" for c in cols) + " |")
    lines.append("| floor | " + " | ".join(f"{first[c]['floor']:.3f}" if c in first else "" for c in cols) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def time_cell(
    args: argparse.Namespace,
    data: Data,
    split: Any,
    retain: Any,
    recipe: DiffusionRecipe,
    judge: Any,
    plan: SamplingPlan,
) -> None:
    """Time 20 training steps, one SalUn cell and one evaluation; extrapolate to the grid."""
    probe = recipe.replace(steps=20)
    t = time.perf_counter()
    model = train_diffusion(probe, data.train, seed=0, num_classes=10, progress=False)
    step_s = (time.perf_counter() - t) / probe.steps
    per_method = {}
    for label, name, params in DEFAULT_METHODS:
        t = time.perf_counter()
        ob.unlearn(model, data.train, split, method=diffusion_method(name, params), seed=0, progress=False)
        per_method[label] = time.perf_counter() - t
    t = time.perf_counter()
    evaluate_generative(model, data, [args.forget], classifier=judge, oracle=[model], plan=plan)
    eval_s = time.perf_counter() - t
    n = len(args.seeds)
    train_total = 3 * args.steps * step_s
    methods_total = n * sum(per_method.values())
    # per seed: every method's samples plus the original's, oracle A's and oracle B's
    eval_total = n * (len(DEFAULT_METHODS) + 3) * eval_s
    estimate = {
        "config": recipe.denoiser_config().to_dict(),
        "train_step_seconds": step_s,
        "method_seconds": per_method,
        "evaluation_seconds": eval_s,
        "estimate_minutes": {
            "training (3 models)": train_total / 60,
            "methods": methods_total / 60,
            "evaluation": eval_total / 60,
            "total": (train_total + methods_total + eval_total) / 60,
        },
    }
    print(json.dumps(estimate, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_cell.json").write_text(json.dumps(estimate, indent=2))


if __name__ == "__main__":
    main()
