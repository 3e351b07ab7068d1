"""How well do cheap memorization proxies rank examples like Feldman's subsampled estimate?

Trains K models on random 70% subsets of digits as vectorised ensembles (the estimate), one model
on all of it (learning-event proxies, curvature) and a holdout fine-tune (holdout KL), and reports
each proxy's Spearman correlation with the estimate, plus every cost.

Usage: python benchmarks/memorization_proxies.py [--k 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import obliviate as ob
from obliviate.evaluation import memorization as mem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--ratio", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/memorization"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ob.datasets.load(args.dataset)
    recipe = ob.Recipe.default_for(data)
    t0 = time.perf_counter()
    est = mem.subsample_memorization(recipe, data.train, k=args.k, ratio=args.ratio, seed=args.seed)
    est_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = ob.train(recipe, data.train, seed=args.seed, progress=False)
    train_s = time.perf_counter() - t0
    proxies, costs = {}, {}
    for kind in ("confidence", "max_conf", "entropy", "bi_acc"):
        proxies[kind], costs[kind] = mem.learning_event_proxy(model, kind), 0.0  # logged while training
    t0 = time.perf_counter()
    proxies["holdout_kl"] = mem.holdout_kl(model, data.train, data.test, seed=args.seed)
    costs["holdout_kl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    proxies["curvature"] = mem.loss_curvature(model, data.train)
    costs["curvature"] = time.perf_counter() - t0
    s = est.scores
    rows = [
        {"proxy": k, "spearman": mem.spearman(v, s), "seconds": costs[k], "orientation": mem.ORIENTATION[k]}
        for k, v in proxies.items()
    ]
    # most examples have an estimate of exactly 0, so rank agreement on the few memorized ones says more:
    # of the examples with memorization > 0.5, how many are in each proxy's top 5%
    memorized = s > 0.5
    k = max(1, round(0.05 * len(s)))
    for r in rows:
        top = torch.zeros_like(memorized)
        top[torch.argsort(proxies[r["proxy"]], descending=True, stable=True)[:k]] = True
        r["recall_top5"] = float((memorized & top).sum() / memorized.sum())
    lines = [
        f"# Memorization proxies vs the subsampled estimate ({args.dataset}, K={args.k}, ratio {args.ratio})",
        "",
        f"- estimate: {est_s:.1f} s for {args.k} models ({args.threads} threads); one training "
        f"{train_s:.2f} s; mean memorization {float(s.mean()):.3f}, {int((s > 0.5).sum())} examples > 0.5, "
        f"{int((s > 0.1).sum())} > 0.1 of {len(s)}",
        "",
        "| proxy | Spearman with estimate | memorized (> 0.5) in its top 5% | extra seconds | orientation |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['proxy']} | {r['spearman']:.3f} | {r['recall_top5']:.2f} | {r['seconds']:.2f} | {r['orientation']} |"
        for r in rows
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}-k{args.k}.md").write_text(text)
    (args.out / f"{args.dataset}-k{args.k}.json").write_text(
        json.dumps(
            {
                "k": args.k,
                "ratio": args.ratio,
                "estimate_seconds": est_s,
                "train_seconds": train_s,
                "rows": rows,
                "torch": torch.__version__,
                "threads": args.threads,
            },
            indent=2,
        )
    )
    print(text)


if __name__ == "__main__":
    main()
