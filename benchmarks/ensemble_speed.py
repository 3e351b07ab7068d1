"""Vectorised ensembles vs sequential training: K=64 oracles of one recipe on digits.

Times, on ``--threads`` CPU threads (default 2):

* ``sequential``: K separate ``ob.train(recipe, data.train, seed=k)`` calls (the reference);
* ``ensemble``: one ``train_ensemble(recipe, data.train, range(K))`` (stacked leaves, batched
  ``baddbmm`` linear layers, fused optimiser step);
* ``plain vmap`` (MLP only, ``--no-plain`` skips it): the unoptimised starting point,
  ``vmap(functional_call(model))`` over the whole model with the recipe's per-tensor optimiser,

for the default digits recipe (MLP 64-256-10, Adam, 40 epochs) and for the small CNN recipe
(``Recipe.default_for`` settings for small images: Adam 1e-3, batch 128, 12 epochs) on 1x8x8
digits, and checks that member 0 matches sequential seed 0 (max weight difference, test agreement).

Usage: python benchmarks/ensemble_speed.py [--k 64] [--threads 2] [--sequential 64] [--chunk-size N]
       [--no-cnn] [--no-plain] [--precision fp32|bf16]
With ``--precision bf16`` it also checks that the NeurIPS 2023 ε-score cannot tell the bf16
members from exact ones any better than it tells two exact ensembles apart.
``--sequential N`` times only N sequential calls and scales to K (for quick runs). The load
average printed with each line shows whether other processes shared the cores: on 2 cores, two
torch threads wait for each other at every parallel op when a core is taken, and times grow 10x.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

import obliviate as ob
from obliviate.train import make_scheduler
from obliviate.train.ensemble import train_ensemble
from obliviate.utils import seeded


def plain_vmap(recipe: ob.Recipe, dataset, seeds: list[int]) -> dict[str, torch.Tensor]:
    """The starting point: whole-model vmap, the recipe's own (per-tensor) optimiser on stacked leaves."""
    members, gens = [], []
    for s in seeds:
        with seeded(s) as g:
            members.append(recipe.build())
        gens.append(g)
    model = members[0]
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in members]).requires_grad_()
        for n, _ in model.named_parameters()
    }
    optimizer = recipe.make_optimizer(params.values())
    m, b = len(dataset), recipe.batch_size
    scheduler = make_scheduler(recipe.schedule, optimizer, recipe.epochs * math.ceil(m / b))
    losses = vmap(lambda p, x, y: F.cross_entropy(functional_call(model, p, (x,)), y))
    for _ in range(recipe.epochs):
        order = torch.stack([torch.randperm(m, generator=g) for g in gens])
        for start in range(0, m, b):
            idx = order[:, start : start + b]
            optimizer.zero_grad(set_to_none=True)
            losses(params, dataset.x[idx], dataset.y[idx]).sum().backward()
            optimizer.step()
            scheduler.step()
    return {n: p.detach() for n, p in params.items()}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def compare(
    name: str,
    recipe: ob.Recipe,
    data,
    k: int,
    n_sequential: int,
    plain: bool,
    chunk: int | None,
    precision: str = "fp32",
) -> None:
    """Ensemble, then the sequential calls, then the ensemble again (so both see similar load).

    Speed-ups are given on totals and best-vs-best (K x the fastest sequential call against the
    faster ensemble run), the latter being the estimate least disturbed by other processes.
    """
    seeds = list(range(k))
    kw = {"progress": False, "chunk_size": chunk, "precision": precision}
    ensemble, t_ens = timed(lambda: train_ensemble(recipe, data.train, seeds, **kw))
    sequential, calls = [], []
    for s in seeds[:n_sequential]:
        model, t = timed(lambda s=s: ob.train(recipe, data.train, seed=s, progress=False))
        sequential.append(model)
        calls.append(t)
    _, t_ens2 = timed(lambda: train_ensemble(recipe, data.train, seeds, **kw))
    t_seq = sum(calls) * k / n_sequential
    ref, member = sequential[0].state_dict(), ensemble.model(0).state_dict()
    diff = max((ref[n] - member[n]).abs().max().item() for n in ref)
    with torch.no_grad():
        agree = (sequential[0](data.test.x).argmax(1) == ensemble.predict(data.test)[0].argmax(1)).float().mean()
    scaled = "" if n_sequential == k else f", scaled from {n_sequential}"
    load = "/".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"{name}: {k} sequential train() calls {t_seq:.2f} s (fastest call {min(calls):.3f} s{scaled}) | "
        f"ensemble of {k}: {t_ens:.2f} s, again {t_ens2:.2f} s | per-model speed-up {t_seq / t_ens:.1f}x, "
        f"{t_seq / t_ens2:.1f}x; best-vs-best {k * min(calls) / min(t_ens, t_ens2):.1f}x | "
        f"load avg {load}",
        flush=True,
    )
    print(
        f"{name} ({precision}): member 0 vs sequential seed 0: max |dw| {diff:.1e}, test agreement {agree:.3f}",
        flush=True,
    )
    if precision != "fp32":
        same_distribution(name, recipe, data, ensemble, seeds, chunk)
    if plain:
        _, t_plain = timed(lambda: plain_vmap(recipe, data.train, seeds))
        print(
            f"{name}: plain vmap (before) {t_plain:.2f} s | per-model speed-up {t_seq / t_plain:.1f}x; "
            f"best-vs-best {k * min(calls) / t_plain:.1f}x",
            flush=True,
        )


def same_distribution(name: str, recipe: ob.Recipe, data, ensemble, seeds: list[int], chunk: int | None) -> None:
    """Can the NeurIPS 2023 ε-score tell reduced-precision members from exact ones?

    Per test example, the logit-scaled confidences of the K reduced-precision members are compared
    with those of K exact (fp32) members of *other* seeds, and the same score is computed between
    two exact ensembles of disjoint seeds: equal scores mean the precision change is invisible
    to the metric the ensembles are used for.
    """
    k = len(seeds)
    exact_a = train_ensemble(recipe, data.train, [s + k for s in seeds], progress=False, chunk_size=chunk)
    exact_b = train_ensemble(recipe, data.train, [s + 2 * k for s in seeds], progress=False, chunk_size=chunk)
    conf = lambda e: ob.metrics.logit_scaled_confidence(e.predict(data.test), data.test.y)  # noqa: E731
    reduced, a, b = conf(ensemble), conf(exact_a), conf(exact_b)
    f_reduced = ob.metrics.neurips23_score(reduced, a)[0]
    f_exact = ob.metrics.neurips23_score(b, a)[0]
    acc = lambda e: (e.predict(data.test).argmax(-1) == data.test.y).float().mean(1)  # noqa: E731
    print(
        f"{name}: ε-score F over {len(data.test)} test examples, K={k}: reduced vs exact {f_reduced:.3f}, "
        f"exact vs exact {f_exact:.3f} | test acc {acc(ensemble).mean():.4f} vs {acc(exact_a).mean():.4f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=None, help="time only this many sequential calls")
    parser.add_argument("--no-cnn", action="store_true")
    parser.add_argument("--no-plain", action="store_true")
    parser.add_argument("--chunk-size", type=int, default=None, help="members trained at once (default: all)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_seq = min(args.sequential or args.k, args.k)
    data = ob.datasets.load("digits")
    mlp = ob.Recipe.default_for(data)
    ob.train(mlp.replace(epochs=1), data.train, progress=False)  # warm-up (lazy init, allocator)
    print(f"digits train {len(data.train)} examples, torch {torch.__version__}, {torch.get_num_threads()} threads")
    compare("mlp", mlp, data, args.k, n_seq, not args.no_plain, args.chunk_size, args.precision)
    if not args.no_cnn:
        cnn = ob.Recipe("cnn", data.input_shape, data.num_classes, {}, "adam", 1e-3, epochs=12, batch_size=128)
        compare("cnn", cnn, data, args.k, n_seq, False, args.chunk_size, args.precision)


if __name__ == "__main__":
    main()
