"""Speed of the vectorised NeurIPS 2023 ε against the plain loop reference of the released scorer.

Times ``obliviate.metrics.neurips23_epsilons`` and ``_neurips23_reference.reference_epsilons`` on
the same φ arrays [models, examples] (default [64, 500], the size the issue asks about), checks that
the results are identical, and prints the speed-up. The vectorised side is the best of ``--repeats``
runs; each round re-times both, so that load from other processes shows up as spread between rounds.

Usage: python benchmarks/neurips23_speed.py [--models 64] [--examples 500] [--threads 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _neurips23_reference import reference_epsilons  # noqa: E402

from obliviate.metrics.neurips23 import neurips23_epsilons  # noqa: E402


def make_confs(models: int, examples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """φ-like samples: per example, the oracle's spread and shift vary; 5% of examples are peaked
    (degenerate-spread rule) and 5% separable, as a weak unlearner produces."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(2.0, 3.0, size=examples)
    spread = rng.uniform(0.5, 2.0, size=examples)
    oracle = centre + spread * rng.normal(size=(models, examples))
    shift = rng.normal(0.0, 0.5, size=examples) * spread
    scale = rng.uniform(0.7, 1.4, size=examples)
    kind = rng.uniform(size=examples)
    scale[kind < 0.05] = 0.005
    shift[(kind >= 0.05) & (kind < 0.1)] = 8 * spread[(kind >= 0.05) & (kind < 0.1)]
    unlearned = centre + shift + scale * spread * rng.normal(size=(models, examples))
    return unlearned, oracle


def timed(fn, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--examples", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unlearned, oracle = make_confs(args.models, args.examples, args.seed)
    neurips23_epsilons(unlearned[:, :4], oracle[:, :4])  # warm-up
    print(f"phi arrays [{args.models}, {args.examples}] x2, torch threads {args.threads}")
    for round_ in range(1, args.rounds + 1):
        t_ref, ref = timed(reference_epsilons, unlearned, oracle)
        runs = [timed(neurips23_epsilons, unlearned, oracle) for _ in range(args.repeats)]
        t_vec, vec = min(runs, key=lambda r: r[0])
        identical = np.array_equal(vec, ref, equal_nan=True)
        print(
            f"round {round_}: loop reference {t_ref:.2f} s, vectorised {t_vec:.3f} s "
            f"(best of {args.repeats}), speed-up {t_ref / t_vec:.1f}x, identical: {identical}"
        )
        if not identical:
            raise SystemExit(f"results differ on {int((vec != ref).sum())} examples")
    print(f"mean eps {np.nanmean(vec):.3f}; examples at the cap: {int((vec == 50).sum())}")


if __name__ == "__main__":
    main()
