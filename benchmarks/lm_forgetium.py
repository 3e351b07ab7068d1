"""forgetium's GA and NPO beside obliviate's, on the lm-demo's tiny GPT and forget set.

Both libraries start from the same trained original (the lm-demo's cached model: run
``obliviate lm-demo`` once first) and are judged by the same per-sequence evaluation against the same
oracle. Each library runs the same number of optimiser steps at batch 32 and the same peak learning
rate; forgetium decays it linearly to 0 (so it moves about half as far per step budget) and samples
retain rows uniformly, obliviate keeps it constant and samples retain rows like training did.
obliviate's fixed-step rows run with its collapse guard off (``collapse_drop=None``; with it on, GA's
25- and 50-step runs roll back to the original, which is the safe fallback but not a comparison);
the last rows show its stopping rules, which forgetium does not have.

Run in forgetium's own environment (see forgetium_adapter.py for the set-up):
    .venv-forgetium/bin/python benchmarks/lm_forgetium.py
writes benchmarks/results/lm/forgetium.json and prints the table.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from forgetium_adapter import run_forgetium  # noqa: E402

import obliviate as ob  # noqa: E402
from obliviate.lm import demo  # noqa: E402
from obliviate.lm.scenario import make_scenario  # noqa: E402
from obliviate.objectives import CausalLMTask  # noqa: E402

OUT = Path(__file__).parent / "results" / "lm" / "forgetium.json"
STEPS = (10, 25, 50)
LR = 1e-3


def main() -> None:
    torch.set_num_threads(2)
    cfg = demo.DemoConfig()
    sc = make_scenario(seed=cfg.seed, **cfg.scenario)
    original, train_s = demo._trained(sc, "original", cfg, demo.default_cache(), False)
    oracle, _ = demo._trained(sc, "oracle", cfg, demo.default_cache(), False)
    judge = demo.Judge(sc, original, oracle)
    rows = {"original": judge.row(original), "oracle": judge.oracle_row}
    forget_texts, retain_texts = sc.forget.texts, sc.retain.texts
    task = CausalLMTask(sc.tokenizer)
    for steps in STEPS:
        for method in ("ga", "npo"):
            model, secs = run_forgetium(
                copy.deepcopy(original),
                sc.tokenizer,
                forget_texts,
                retain_texts if method == "npo" else None,
                method,
                steps=steps,
                lr=LR,
                batch_size=32,
                seed=cfg.seed,
            )
            rows[f"forgetium {method} {steps} steps"] = {**judge.row(model), "seconds": secs, "cost": secs / train_s}
            start = time.perf_counter()
            res = ob.unlearn(
                original,
                sc.train,
                sc.split,
                method,
                val=sc.heldout,
                task=task,
                progress=False,
                stop="none",
                max_steps=steps,
                lr=LR,
                batch_size=32,
                collapse_drop=None,
            )
            rows[f"obliviate {method} {steps} steps"] = {
                **judge.row(res.model),
                "seconds": res.seconds,
                "cost": res.seconds / train_s,
                "diverged": res.diverged,
                "notes": res.notes,
            }
            print(
                f"{steps} steps {method}: forgetium {secs:.1f} s, obliviate {time.perf_counter() - start:.1f} s",
                flush=True,
            )
    for method in ("ga", "npo"):
        label = f"obliviate {method}, stop c=0 at γ_max"
        res = ob.unlearn(
            original,
            sc.train,
            sc.split,
            method,
            val=sc.heldout,
            task=task,
            progress=False,
            lr=LR,
            batch_size=32,
            stop="sequence",
            gamma_stat="max",
            max_steps=100,
        )
        rows[label] = {
            **judge.row(res.model),
            "seconds": res.seconds,
            "cost": res.seconds / train_s,
            "notes": res.notes,
        }
    result = {"lr": LR, "batch_size": 32, "train_seconds": train_s, "gamma": judge.gamma, "rows": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    head = (
        f"{'model':36s} {'c mean':>6s} {'p95':>4s} {'max':>4s} {'MA':>6s} {'secret f':>8s} {'secret r':>8s} "
        f"{'Δppl':>7s} {'s':>6s}"
    )
    print(head)
    for label, r in rows.items():
        print(
            f"{label:36s} {r['c']['mean']:6d} {r['c']['p95']:4d} {r['c']['max']:4d} {r['forget_ma']:6.3f} "
            f"{r['secret_forget']:8.0%} {r['secret_retain']:8.0%} {r['ppl_change']:+7.1%} {r.get('seconds', 0):6.1f}"
            + ("  rolled back by the collapse guard" if r.get("diverged") else "")
        )


if __name__ == "__main__":
    main()
