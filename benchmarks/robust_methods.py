"""Do the methods built to resist relearning (UNDO, the SAM forget step) resist it better than their
base method? Digits, forget class 3, the MLP recipe (20 epochs); oracles retrained with seeds 0 (A,
the reference) and 500 (B, the noise floor); every row unlearned and attacked under seeds 0, 1, 2.

Attacks, each applied with the same budget to the model and to both oracles (``ob.evaluate``):

* ``relearn``: Adam on 20% of the forget class alone (obliviate's default attack), at two budgets:
  20 steps (the default) and ``--relearn-steps``; measured on the other 80%. On a single class this
  attack soon teaches "always answer 3", so it measures how fast a model's class-3 logit comes back,
  the oracle's included.
* ``few-shot@30`` / ``few-shot@100``: ``--shots`` forget examples from the same 20% pool, mixed
  half/half with retain rows (batch 64, 30 or 100 Adam steps at lr 1e-3; reference
  attacks-and-robust-methods.md §1.3 and §6). The oracle learns the class from the shots too, so
  the comparison is with the attacked oracle.
* ``quantize-int4``: a group-wise 4-bit weight round trip.

``recovery`` = (forget accuracy after the attack − before) / (original − oracle A), on the rows the
attack leaves out; the oracle's own recovery under the same attack is the reference.

    python benchmarks/robust_methods.py [--out benchmarks/results/robust]

Writes ``results.json`` (every row, seed and metric) and ``results.md`` (the mean table).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import obliviate as ob
from obliviate.data.datasets import Data, subset
from obliviate.data.loading import batch_of
from obliviate.data.splits import ForgetSplit
from obliviate.evaluation.attacks import Relearn
from obliviate.objectives import Task

SEEDS = (0, 1, 2)
#: (label, method, overrides): each robust variant next to the base method it wraps
ROWS: list[tuple[str, str, dict[str, Any]]] = [
    ("none", "none", {}),
    ("retrain (seeds 1-3)", "retrain", {}),
    ("neggrad+", "neggrad+", {}),
    ("neggrad+ sam_rho=0.05", "neggrad+", {"sam_rho": 0.05}),
    ("neggrad+ sam_rho=0.2", "neggrad+", {"sam_rho": 0.2}),
    ("undo(neggrad+) alpha=0.5", "undo", {"alpha": 0.5}),
    ("undo(neggrad+) alpha=0.8", "undo", {"alpha": 0.8}),
    ("neggrad", "neggrad", {}),
    ("neggrad sam_rho=0.05", "neggrad", {"sam_rho": 0.05}),
    ("neggrad+ grad_projection=0.8 (GRU)", "neggrad+", {"grad_projection": 0.8}),
    ("neggrad grad_projection=0.8 (GRU)", "neggrad", {"grad_projection": 0.8}),
    ("undo(neggrad) alpha=0.8", "undo", {"alpha": 0.8, "base": "neggrad"}),
]


@dataclass(frozen=True)
class FewShot(Relearn):
    """``shots`` forget examples from the relearn pool (``fraction`` of D_f), each step's batch half
    shots (with replacement) and half retain rows: few-shot relearning of a forgotten class."""

    shots: int = 5
    steps: int | None = 100

    @property
    def name(self) -> str:
        return f"few-shot@{self.steps}"

    def apply(
        self, model: nn.Module, data: Data, split: ForgetSplit, task: Task, *, seed: int = 0, on_checkpoint: Any = None
    ) -> tuple[nn.Module, ForgetSplit]:
        pool, measured = self.parts(data, split, seed)
        g = torch.Generator().manual_seed(seed)
        shots = subset(data.train, pool[torch.randperm(len(pool), generator=g)[: self.shots]])
        retain = subset(data.train, split.retain_ids)
        steps, half, lr = self.steps or 100, (self.batch_size or 64) // 2, self.lr or 1e-3
        attacked = copy.deepcopy(model).train()
        device = next(attacked.parameters()).device
        opt = torch.optim.Adam(attacked.parameters(), lr=lr)
        for _ in range(steps):
            parts = [
                batch_of(shots, torch.randint(len(shots), (half,), generator=g)),
                batch_of(retain, torch.randint(len(retain), (half,), generator=g)),
            ]
            batch = task.to(tuple(torch.cat(t) for t in zip(*parts)), device)
            loss = task.losses(task.logits(attacked, batch), batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return attacked.eval(), measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/robust"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--relearn-steps", type=int, default=30)
    ap.add_argument("--shots", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = ob.datasets.load("digits")
    split = ob.ForgetSplit.by_class(data.train, [3])
    recipe = ob.Recipe.default_for(data).replace(epochs=20)
    original = ob.train(recipe, data.train, seed=0, progress=False)
    oracles = [
        ob.unlearn(original, data.train, split, method="retrain", seed=s, recipe=recipe, progress=False)
        for s in (0, 500)
    ]
    attacks: list[list[Any]] = [
        ["relearn", "quantize-int4", FewShot(shots=args.shots, steps=30), FewShot(shots=args.shots, steps=100)],
        [Relearn(steps=args.relearn_steps)],  # a second relearn budget: its rows are renamed below
    ]
    long = f"relearn@{args.relearn_steps}"
    cache: dict = {}
    records = []
    for label, method, overrides in ROWS:
        for seed in SEEDS:
            kw = {"recipe": recipe} if method == "retrain" else {}
            res = ob.unlearn(
                original, data.train, split, method=method, seed=seed + (1 if method == "retrain" else 0),
                progress=False, **kw, **overrides,
            )  # fmt: skip
            row: dict[str, Any] = {"row": label, "method": method, "params": res.params, "seed": seed}
            row["seconds"] = res.seconds
            row["diverged"] = res.diverged
            for i, group in enumerate(attacks):
                rep = ob.evaluate(
                    res, data, split, oracle=oracles, original=original, attacks=group, seed=seed, cache=cache
                )
                frame = rep.to_frame().set_index("metric")
                for metric, r in frame.iterrows():
                    name = str(metric).replace("relearn/", f"{long}/") if i == 1 else str(metric)
                    if i == 1 and not name.startswith(long):
                        continue
                    row[name] = float(r["value"])
                    row[f"{name}:oracle"] = float(r["oracle"])
                    row[f"{name}:floor"] = float(r["floor"])
            records.append(row)
            print(f"{label:26s} seed {seed}: {_brief(row, long)}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "data": "digits (sklearn), forget class 3",
        "recipe": recipe.to_dict() if hasattr(recipe, "to_dict") else str(recipe),
        "oracle_seeds": [0, 500],
        "seeds": list(SEEDS),
        "attacks": {
            "relearn": dataclasses.asdict(Relearn()),
            long: dataclasses.asdict(Relearn(steps=args.relearn_steps)),
            "few-shot@30": dataclasses.asdict(FewShot(shots=args.shots, steps=30)),
            "few-shot@100": dataclasses.asdict(FewShot(shots=args.shots, steps=100)),
            "quantize-int4": {"bits": 4, "group_size": 32},
        },
        "retrain_seconds": [o.seconds for o in oracles],
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {args.threads} torch thread(s)",
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "rows": records}, indent=1, default=str))
    (args.out / "results.md").write_text(_table(records, long))
    print(_table(records, long))


def _brief(row: dict[str, Any], long: str) -> str:
    keys = [
        "forget_acc",
        "test_acc",
        "relearn/recovery",
        f"{long}/recovery",
        "few-shot@30/recovery",
        "few-shot@100/recovery",
    ]
    return " ".join(f"{k}={row.get(k, float('nan')):.2f}" for k in keys)


def _table(records: list[dict[str, Any]], long: str) -> str:
    """Mean (± sd over the seeds) per row; the oracle's value under the same attack in the header row."""
    cols = [
        ("forget acc", "forget_acc"),
        ("retain acc", "retain_acc"),
        ("test acc", "test_acc"),
        ("relearn rec.", "relearn/recovery"),
        (f"{long} rec.", f"{long}/recovery"),
        ("few-shot@30 rec.", "few-shot@30/recovery"),
        ("few-shot@100 rec.", "few-shot@100/recovery"),
        ("few-shot@100 test", "few-shot@100/test_acc"),
        ("int4 forget acc", "quantize-int4/forget_acc"),
        ("seconds", "seconds"),
        ("cost vs retrain", "cost_ratio"),
    ]
    head = "| row | " + " | ".join(c for c, _ in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    first = [r for r in records if r["row"] == records[0]["row"]]  # the oracles' values, per attack seed

    def ref(k: str) -> str:
        if k in ("seconds", "cost_ratio"):
            return ""
        value, floor = (statistics.mean(r[f"{k}:{c}"] for r in first) for c in ("oracle", "floor"))
        return f"{value:.3f} (±{floor:.3f})"

    oracle = "| **oracle A** (floor: oracle B) | " + " | ".join(ref(k) for _, k in cols)
    lines = [head + oracle + " |"]
    for label in dict.fromkeys(r["row"] for r in records):
        rs = [r for r in records if r["row"] == label]
        cells = []
        for _, k in cols:
            vals = [r[k] for r in rs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(
                f"{statistics.mean(vals):.2f}" if k == "seconds" else f"{statistics.mean(vals):.3f} ± {sd:.3f}"
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
