"""SISA on Fashion-MNIST: cost of one deletion vs a full retrain, accuracy vs a single model, exactness.

Trains one model on the whole training set (the recipe as ``ob.train`` runs it) and a SISA ensemble
of S shards x R slices (each constituent trained for --epochs); deletes single random ids one at a time
(each retrains one shard from the slice that held the id); checks that the ensemble after the
deletions equals a fresh SISA fitted without those ids, bit for bit; optionally repeats the SISA
run on a local Ray cluster and checks it gives identical outputs.

Usage: python benchmarks/sisa.py [--shards 8] [--slices 4] [--deletions 5] [--ray]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

import obliviate as ob
from obliviate.exact import SISA


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean())


def run_sisa(recipe, data, args, ids, executor) -> tuple[SISA, float, list]:
    t0 = time.perf_counter()
    sisa = SISA(recipe, shards=args.shards, slices=args.slices, seed=0, executor=executor, threads=args.threads)
    sisa.fit(data.train)
    fit_s = time.perf_counter() - t0
    dels = [sisa.delete([i]) for i in ids]
    return sisa, fit_s, dels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--deletions", type=int, default=5)
    ap.add_argument(
        "--epochs",
        type=int,
        default=24,
        help="each constituent's epochs (the single model keeps the recipe's): measured on Fashion-MNIST "
        "with S=8, 12 epochs cost 3.8 points of accuracy against the single model, 24 cost 1.6",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads per shard job (same for every executor)")
    ap.add_argument("--ray", action="store_true", help="repeat the SISA run on a local Ray cluster")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sisa"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = ob.datasets.load(args.dataset)
    recipe = ob.Recipe.default_for(data)
    y = data.test.y
    t0 = time.perf_counter()
    single = ob.train(recipe, data.train, seed=0, progress=False)
    single_s = time.perf_counter() - t0
    single_acc = accuracy(ob.objectives.ClassificationTask(data.num_classes).predict(single, data.test)[0].argmax(1), y)
    print(f"single model: {100 * single_acc:.2f}% test, {single_s:.1f} s", flush=True)
    ids = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(1))[: args.deletions].tolist()
    recipe = recipe.replace(epochs=args.epochs)
    sisa, fit_s, dels = run_sisa(recipe, data, args, ids, "in-process")
    after = sisa.predict_proba(data.test)
    result = {
        "dataset": args.dataset,
        "n_train": len(data.train),
        "shards": args.shards,
        "slices": args.slices,
        "sisa_recipe": recipe.to_dict(),
        "threads": args.threads,
        "single_seconds": single_s,
        "single_acc": single_acc,
        "sisa_fit_seconds": fit_s,
        "sisa_acc_mean": accuracy(after.argmax(1), y),
        "sisa_acc_vote": accuracy(sisa.predict_proba(data.test, aggregation="vote").argmax(1), y),
        "deletions": [
            {"id": i, "retrained": d.retrained, "seconds": d.seconds, "sample_passes": d.sample_passes}
            for i, d in zip(ids, dels)
        ],
    }
    mean_del = sum(d.seconds for d in dels) / len(dels)
    result["mean_deletion_seconds"] = mean_del
    result["speedup_vs_single_retrain"] = single_s / mean_del
    result["speedup_vs_sisa_refit"] = fit_s / mean_del
    print(
        f"SISA S={args.shards} R={args.slices}: fit {fit_s:.1f} s, {100 * result['sisa_acc_mean']:.2f}% (mean) / "
        f"{100 * result['sisa_acc_vote']:.2f}% (vote); one deletion {mean_del:.1f} s = "
        f"{result['speedup_vs_single_retrain']:.1f}x faster than retraining the single model",
        flush=True,
    )
    t0 = time.perf_counter()
    fresh = SISA(recipe, shards=args.shards, slices=args.slices, seed=0, threads=args.threads).fit(
        data.train, exclude=ids
    )
    result["exact"] = bool(torch.equal(fresh.predict_proba(data.test), after))
    result["fresh_fit_seconds"] = time.perf_counter() - t0
    print(f"after {len(ids)} deletions == fresh fit without them: {result['exact']}", flush=True)
    if args.ray:
        import ray

        from obliviate.executor import RayExecutor

        tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        ex = RayExecutor(num_cpus=2, _temp_dir=tmp)
        on_ray, ray_fit_s, ray_dels = run_sisa(recipe, data, args, ids, ex)
        result["ray"] = {
            "fit_seconds": ray_fit_s,
            "mean_deletion_seconds": sum(d.seconds for d in ray_dels) / len(ids),
            "identical": bool(torch.equal(on_ray.predict_proba(data.test), after)),
        }
        ray.shutdown()
        print(
            f"Ray (local, 2 CPUs): fit {ray_fit_s:.1f} s, identical outputs: {result['ray']['identical']}", flush=True
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.dataset}-s{args.shards}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("sisa_recipe", "deletions")}, indent=2))


if __name__ == "__main__":
    main()
