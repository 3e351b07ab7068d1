"""Certified removal vs retraining for logistic regression (Guo et al. 2020) on breast-cancer and randhie.

Removes ``--removals`` random training rows one at a time; reports the time per removal against a
retrain from scratch, how many removals the (ε, δ) budget allowed before a retrain, the largest
gradient residual against its bound, and test accuracy before and after, beside scikit-learn's
unperturbed logistic regression.

Usage: python benchmarks/certified.py [--removals 100] [--eps 1] [--sigma 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

import obliviate as ob
from obliviate.exact import CertifiedLogistic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--removals", type=int, default=100)
    ap.add_argument("--lam", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--eps", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-4)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/certified"))
    args = ap.parse_args()
    rows, lines = [], []
    for name in ("breast-cancer", "randhie"):
        data = ob.datasets.load(name)
        x, y = data.train.x.double().numpy(), data.train.y.numpy()
        xt, yt = data.test.x.double().numpy(), data.test.y.numpy()
        t0 = time.perf_counter()
        m = CertifiedLogistic(lam=args.lam, sigma=args.sigma, eps=args.eps, delta=args.delta).fit(x, y)
        fit_s = time.perf_counter() - t0
        acc0 = float((m.predict(xt) == yt).mean())
        ids = np.random.default_rng(0).permutation(len(y))[: args.removals]
        res = [m.remove([int(i)]) for i in ids]
        keep = np.ones(len(y), bool)
        keep[ids] = False
        t0 = time.perf_counter()
        CertifiedLogistic(lam=args.lam, sigma=args.sigma, eps=args.eps, delta=args.delta).fit(x[keep], y[keep])
        retrain_s = time.perf_counter() - t0
        sk = LogisticRegression(max_iter=2000).fit(x, y)
        newton = [r.seconds for r in res if not r.retrained]
        row = {
            "dataset": name,
            "n": len(y),
            "d": x.shape[1],
            "classes": int(len(np.unique(y))),
            "fit_seconds": fit_s,
            "retrain_seconds": retrain_s,
            "removal_seconds": float(np.median(newton)) if newton else None,
            "removals": len(res),
            "budget_retrains": sum(r.retrained for r in res),
            "max_residual": max(r.gradient_residual for r in res),
            "max_bound": max(r.accumulated_bound for r in res),
            "bound_held": all(r.gradient_residual <= r.accumulated_bound for r in res),
            "test_acc_before": acc0,
            "test_acc_after": float((m.predict(xt) == yt).mean()),
            "sklearn_test_acc": float(sk.score(xt, yt)),
        }
        rows.append(row)
        speed = row["retrain_seconds"] / row["removal_seconds"] if row["removal_seconds"] else float("nan")
        lines.append(
            f"| {name} | {row['n']} x {row['d']}, {row['classes']} classes | {1e3 * row['removal_seconds']:.2f} ms"
            f" | {1e3 * retrain_s:.1f} ms | {speed:.0f}x | {row['budget_retrains']} of {row['removals']} | "
            f"{row['max_residual']:.2g} / {row['max_bound']:.2g}, held: {row['bound_held']} | {100 * acc0:.1f} -> "
            f"{100 * row['test_acc_after']:.1f} (sklearn {100 * row['sklearn_test_acc']:.1f}) |"
        )
    text = (
        f"# Certified removal (λ={args.lam}, σ={args.sigma}, ε={args.eps}, δ={args.delta}), {args.removals} "
        "single removals\n\n| data | size | one removal (median) | retrain | speed-up | budget retrains | "
        "max residual / max accumulated bound | test acc % before -> after |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "certified.md").write_text(text)
    (args.out / "certified.json").write_text(
        json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=2)
    )
    print(text)


if __name__ == "__main__":
    main()
