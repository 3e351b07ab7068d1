"""Detect -> unlearn -> prove: inject symmetric label noise, find it, unlearn it, compare with oracles.

Per seed: flip ``--noise`` of the training labels, train an original on them, detect label issues
(cleanlab on 5-fold out-of-sample probabilities), unlearn the flagged set with each method, and
compare test accuracy with the original, an oracle retrained without the injected examples and a
model trained on the clean labels.

Usage: python benchmarks/detect_unlearn.py [--dataset digits] [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch

import obliviate as ob
from obliviate.evaluation.detect import detect_and_unlearn

#: method -> parameters; fine-tuning gets more, gentler epochs than its random-forgetting default
METHODS = {"finetune": {"epochs": 5, "lr": 1e-3}, "neggrad+": {}, "scrub": {}, "salun": {}, "random-label": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--noise", type=float, default=0.05)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-size", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/detect"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ob.datasets.load(args.dataset)
    if args.train_size:
        keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: args.train_size]
        data = dataclasses.replace(data, train=data.train.subset(keep.sort().values))
    recipe = ob.Recipe.default_for(data)
    if args.epochs:
        recipe = recipe.replace(epochs=args.epochs)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for method, params in METHODS.items():
            r = detect_and_unlearn(data, recipe, noise=args.noise, method=method, seed=seed, progress=False, **params)
            rows.append({k: v for k, v in r.items() if k != "params"} | {"seed": seed, "params": json.dumps(params)})
            print(
                f"seed {seed} {method}: precision {r['precision']:.2f} recall {r['recall']:.2f} test "
                f"{100 * r['test_original']:.2f} -> {100 * r['test_unlearned']:.2f} (oracle "
                f"{100 * r['test_oracle']:.2f}, clean {100 * r['test_clean']:.2f})",
                flush=True,
            )
    df = pd.DataFrame(rows)
    m = df.groupby("method", sort=False)[
        [
            "precision",
            "recall",
            "test_original",
            "test_unlearned",
            "test_oracle",
            "test_clean",
            "unlearn_seconds",
            "train_seconds",
        ]
    ].mean()
    m["moved_toward_oracle_pp"] = 100 * (
        (m.test_oracle - m.test_original).abs() - (m.test_oracle - m.test_unlearned).abs()
    )
    for c in ("test_original", "test_unlearned", "test_oracle", "test_clean"):
        m[c] = 100 * m[c]
    text = (
        f"# Detect -> unlearn -> prove: {args.dataset}, {100 * args.noise:g}% symmetric label noise, "
        f"{df.seed.nunique()} seeds (means)\n\n" + m.round(3).to_markdown() + "\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}.md").write_text(text)
    df.to_csv(args.out / f"{args.dataset}.csv", index=False)
    print(text)


if __name__ == "__main__":
    main()
