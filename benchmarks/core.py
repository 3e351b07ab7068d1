"""Core benchmark: every core method vs the retrained oracle on digits and Fashion-MNIST.

Reproduces the figures of the core issue: for each dataset x forget set x seed, train the original
and the oracle, run each method, and report forget / retain / test accuracy, loss-MIA, seconds
and cost as a percentage of retraining, then check the acceptance criteria:

* random forgetting: finetune, neggrad+ and scrub end with forget accuracy closer to the oracle's
  than the original's, test accuracy within 3 points of the oracle's, in < 25% of retrain time;
* class forgetting: scrub and neggrad+ reach forget accuracy <= 5% with retained-class test
  accuracy within 3 points of the oracle's.

Usage: python benchmarks/core.py [--datasets digits,fashion-mnist] [--seeds 0,1,2] [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

import obliviate as ob

METHODS = ["none", "finetune", "neggrad", "neggrad+", "random-label", "scrub", "scrub+r"]


def run_cell(data: ob.datasets.Data, forget: str, seed: int, epochs: int | None) -> list[dict]:
    split = ob.datasets.parse_forget_spec(forget, data.train, seed=seed)
    recipe = ob.Recipe.default_for(data)
    if epochs is not None:
        recipe = recipe.replace(epochs=epochs)
    original = ob.train(recipe, data.train, seed=seed, progress=False)
    rows, repeats = [], 1
    for name in ["retrain", *METHODS]:
        # Sub-second runs are timed as the median of 3 (timer and warm-up noise); results are identical.
        runs = [
            ob.unlearn(original, data.train, split, method=name, seed=seed, val=data.val, progress=False)
            for _ in range(repeats)
        ]
        if name == "retrain" and runs[0].seconds < 5:
            repeats = 3
            runs += [ob.unlearn(original, data.train, split, method=name, seed=seed, progress=False) for _ in range(2)]
        values = ob.evaluate(runs[0].model, data, split, seed=seed).values
        seconds = statistics.median(r.seconds for r in runs)
        rows.append({"method": name, "seconds": seconds, **values, "diverged": runs[0].diverged})
    oracle_values, retrain_s = rows[0], rows[0]["seconds"]
    for r in rows:
        r.update(dataset=data.name, forget=forget, seed=seed, retrain_seconds=retrain_s,
                 cost_pct=100 * r["seconds"] / retrain_s)
        for k in ("forget_acc", "retain_acc", "test_acc", "mia"):
            r[f"{k}_gap"] = abs(r[k] - oracle_values[k])
    return rows


def check(df: pd.DataFrame) -> list[str]:
    """The core issue's acceptance criteria, per seed; returns one line per check."""
    lines = []
    for (dataset, forget, seed), cell in df.groupby(["dataset", "forget", "seed"]):
        by = cell.set_index("method")
        oracle, none = by.loc["retrain"], by.loc["none"]
        if forget.startswith("random"):
            for m in ("finetune", "neggrad+", "scrub"):
                r = by.loc[m]
                ok = (r.forget_acc_gap < none.forget_acc_gap and r.test_acc_gap <= 0.03 and r.cost_pct < 25)
                # When the original already has the oracle's forget accuracy, "closer" cannot happen.
                verdict = "N/A " if none.forget_acc_gap == 0 else "PASS" if ok else "FAIL"
                lines.append(
                    f"{verdict} {dataset} {forget} seed {seed} {m}: forget gap "
                    f"{100 * r.forget_acc_gap:.1f} vs original {100 * none.forget_acc_gap:.1f} pp, test gap "
                    f"{100 * r.test_acc_gap:.1f} pp, cost {r.cost_pct:.1f}% of retrain"
                )
        else:
            for m in ("neggrad+", "scrub"):
                r = by.loc[m]
                ok = r.forget_acc <= 0.05 and r.test_acc_gap <= 0.03
                lines.append(
                    f"{'PASS' if ok else 'FAIL'} {dataset} {forget} seed {seed} {m}: forget acc "
                    f"{100 * r.forget_acc:.1f}%, retained-class test gap {100 * r.test_acc_gap:.1f} pp "
                    f"(oracle test {100 * oracle.test_acc:.1f}%), cost {r.cost_pct:.1f}% of retrain"
                )
    return lines


def summary(df: pd.DataFrame) -> str:
    """Markdown table: mean over seeds per dataset x forget set x method (accuracies in %)."""
    cols = ["forget_acc", "retain_acc", "test_acc", "mia", "seconds", "cost_pct", "forget_acc_gap", "test_acc_gap"]
    agg = df.groupby(["dataset", "forget", "method"], sort=False)[cols].mean().reset_index()
    for c in ("forget_acc", "retain_acc", "test_acc", "forget_acc_gap", "test_acc_gap"):
        agg[c] = 100 * agg[c]
    agg = agg.rename(columns={"forget_acc_gap": "forget_gap_pp", "test_acc_gap": "test_gap_pp"})
    return agg.to_markdown(index=False, floatfmt=".2f")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,fashion-mnist")
    ap.add_argument("--forget", default="random:0.1,class:3")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override the recipes' training epochs")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in args.datasets.split(","):
        data = ob.datasets.load(name, val_fraction=0.5)
        for forget in args.forget.split(","):
            for seed in map(int, args.seeds.split(",")):
                start = time.perf_counter()
                rows += run_cell(data, forget, seed, args.epochs)
                print(f"{name} {forget} seed {seed}: {time.perf_counter() - start:.0f}s", flush=True)
                df = pd.DataFrame(rows)
                df.to_csv(args.out / "core.csv", index=False)
    text = summary(df) + "\n\n" + "\n".join(check(df)) + "\n"
    (args.out / "core.md").write_text(text)
    (args.out / "core.json").write_text(json.dumps({"torch": torch.__version__, "threads": args.threads}))
    print(text)


if __name__ == "__main__":
    main()
