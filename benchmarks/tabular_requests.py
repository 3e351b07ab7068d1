"""Five sequential predicate deletions on randhie, each step against an oracle retrained without
everything deleted so far (the learned-database setting of Kurmanji et al., SIGMOD 2024).

Usage: python benchmarks/tabular_requests.py [--seeds 0,1,2] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

import obliviate as ob
from obliviate.evaluation.requests import sequential_requests

REQUESTS = [
    "disea > 40",  # the most chronically ill
    "hlthp = 1",  # everyone in poor self-rated health
    "idp = 1 AND physlm = 1",  # individual deductible plan and a physical limitation
    "lpi < 1",  # (almost) no income-related payment cap
    "fmde > 7.5 AND disea > 15",  # large families with chronic disease
]
METHODS = {"none": {}, "finetune": {}, "neggrad+": {}, "scrub": {}, "random-label": {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tabular"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ob.datasets.load("randhie", val_fraction=0.5)
    recipe = ob.Recipe.default_for(data)
    frames = []
    for seed in (int(s) for s in args.seeds.split(",")):
        original = ob.train(recipe, data.train, seed=seed, progress=False)
        df = sequential_requests(
            original,
            data,
            REQUESTS,
            method=METHODS,
            recipe=recipe,
            seed=seed,
            metrics=["forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap"],
        )
        frames.append(df.assign(seed=seed))
        print(f"seed {seed} done", flush=True)
    df = pd.concat(frames)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "randhie-requests.csv", index=False)
    cols = [
        "deleted",
        "remaining",
        "forget_acc",
        "oracle_forget_acc",
        "test_acc",
        "oracle_test_acc",
        "all_deleted_acc",
        "oracle_all_deleted_acc",
        "avg_gap",
        "unlearn_seconds",
        "oracle_seconds",
    ]
    m = df.groupby(["step", "method"], sort=False)[cols].mean()
    for c in [c for c in cols if c.endswith("acc")]:
        m[c] = 100 * m[c]
    text = (
        f"# randhie: 5 sequential predicate deletions, {df.seed.nunique()} seeds (means; accuracies in %)\n\n"
        + "\n".join(f"{i + 1}. `{r}`" for i, r in enumerate(REQUESTS))
        + "\n\n"
        + m.round(3).to_markdown()
        + "\n"
    )
    (args.out / "randhie-requests.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
