"""forgetium's GA and NPO beside obliviate's, on the lm-demo's tiny GPT and forget set.

Both libraries start from the same trained original (the lm-demo's recipe, trained here with
``ob.train``) and are judged by the same per-sequence evaluation (``ob.evaluate``) against the same
oracle. Each library runs the same number of optimiser steps at batch 32 and the same peak learning
rate; forgetium decays it linearly to 0 (so it moves about half as far per step budget) and samples
retain rows uniformly, obliviate keeps it constant and samples retain rows like training did.
obliviate's fixed-step rows run with its collapse guard off (``collapse_drop=None``; with it on, GA's
25- and 50-step runs roll back to the original, which is the safe fallback but not a comparison);
the last rows show its stopping rules, which forgetium does not have.

Run in forgetium's own environment (see forgetium_adapter.py for the set-up):
    .venv-forgetium/bin/python benchmarks/lm_forgetium.py
writes benchmarks/results/lm/forgetium.json and prints the table. (Since the one-pipeline refactor the
rows are ob.evaluate's; the committed JSON is from the previous, equivalent scorer and not re-run here:
forgetium's environment is not part of CI.)
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
from obliviate.objectives import CausalLMTask  # noqa: E402

OUT = Path(__file__).parent / "results" / "lm" / "forgetium.json"
STEPS = (10, 25, 50)
LR = 1e-3


def judge(model, data, split, oracle, original) -> dict:
    """The per-sequence rows of ``ob.evaluate`` against the oracle (γ and perplexity from the original)."""
    return dict(ob.evaluate(model, data, split, oracle=oracle, original=original).values)


def main() -> None:
    torch.set_num_threads(2)
    data = ob.datasets.load("people", pii_repeats=20, val_fraction=0)
    recipe = ob.Recipe.default_for(data)
    split = data.forget_split()
    start = time.perf_counter()
    original = ob.train(recipe, data.train, seed=0, progress=False)
    train_s = time.perf_counter() - start
    oracle = ob.train(recipe, split.retain_set(data.train), seed=0, progress=False)
    rows = {
        "original": judge(original, data, split, oracle, original),
        "oracle": judge(oracle, data, split, oracle, original),
    }
    forget_texts, retain_texts = split.forget_set(data.train).texts, split.retain_set(data.train).texts
    task = CausalLMTask(data.tokenizer)
    common = dict(val=data.test, task=task, progress=False, lr=LR, batch_size=32)
    for steps in STEPS:
        for method in ("ga", "npo"):
            model, secs = run_forgetium(
                copy.deepcopy(original),
                data.tokenizer,
                forget_texts,
                retain_texts if method == "npo" else None,
                method,
                steps=steps,
                lr=LR,
                batch_size=32,
                seed=0,
            )
            rows[f"forgetium {method} {steps} steps"] = {
                **judge(model, data, split, oracle, original),
                "seconds": secs,
                "cost": secs / train_s,
            }
            res = ob.unlearn(
                original, data.train, split, method, stop="none", max_steps=steps, collapse_drop=None, **common
            )
            rows[f"obliviate {method} {steps} steps"] = {
                **judge(res.model, data, split, oracle, original),
                "seconds": res.seconds,
                "cost": res.seconds / train_s,
                "diverged": res.diverged,
                "notes": res.notes,
            }
            print(f"{steps} steps {method}: forgetium {secs:.1f} s, obliviate {res.seconds:.1f} s", flush=True)
    for method in ("ga", "npo"):
        res = ob.unlearn(
            original, data.train, split, method, stop="sequence", gamma_stat="max", max_steps=100, **common
        )
        rows[f"obliviate {method}, stop c=0 at γ_max"] = {
            **judge(res.model, data, split, oracle, original),
            "seconds": res.seconds,
            "cost": res.seconds / train_s,
            "notes": res.notes,
        }
    result = {"lr": LR, "batch_size": 32, "train_seconds": train_s, "rows": rows}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(
        f"{'model':36s} {'c mean':>6s} {'p95':>4s} {'max':>4s} {'MA':>6s} "
        f"{'secret f':>8s} {'secret r':>8s} {'Δppl':>7s}"
    )
    for label, r in rows.items():
        print(
            f"{label:36s} {r['c_gamma_mean']:6.0f} {r['c_gamma_p95']:4.0f} {r['c_gamma_max']:4.0f} "
            f"{r['forget_ma']:6.3f} {r['extraction_secret_forget']:8.0%} {r['extraction_secret_retain']:8.0%} "
            f"{r['ppl_change']:+7.1%}" + ("  rolled back by the collapse guard" if r.get("diverged") else "")
        )


if __name__ == "__main__":
    main()
