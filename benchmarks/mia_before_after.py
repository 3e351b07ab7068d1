"""MIA-efficacy before and after issue 13's fix, on the Fashion-MNIST grid's own cached originals and oracles.

"old" is the attack the leaderboard used (``svc_mia`` on the confidence alone: standardised, a seeded random
|D_t|-sample of D_r); "new" is ``mia_efficacy``, SalUn's computation. Needs the grid's cache:
    obliviate bench benchmarks/fashion-mnist.yaml --out runs/bench/fashion-mnist   (the originals/oracles suffice)
    python benchmarks/mia_before_after.py > benchmarks/results/mia-fix/fashion-mnist.txt
"""

import glob
import json

import pandas as pd
import torch

import obliviate as ob
from obliviate.bench.config import load_config
from obliviate.bench.runner import data_of
from obliviate.evaluation.evaluate import outputs_of
from obliviate.metrics import avg_gap, mia_efficacy, svc_mia
from obliviate.models.store import load_model

torch.set_num_threads(1)
cfg = load_config("benchmarks/fashion-mnist.yaml")
data = data_of(cfg.datasets[0])
C = "runs/bench/fashion-mnist/cache/models/"
orig = {json.load(open(p + "/manifest.json"))["training"]["seed"]: p for p in glob.glob(C + "original-[0-9a-f]*")}
oracles = {}
for p in glob.glob(C + "oracle-*"):
    m = json.load(open(p + "/manifest.json"))
    oracles.setdefault(m["split_hash"], {})[m["seed"]] = p
rows = []
for sp in glob.glob("runs/bench/fashion-mnist/cache/splits/*.json"):
    split = ob.ForgetSplit.load(sp)
    for seed, o in sorted(oracles.get(split.hash, {}).items()):
        if seed >= 500 or seed not in orig:
            continue
        ob_seed = [s for s in oracles[split.hash] if s != seed and s - seed in (500, 1, 1000)]
        models = {
            "original(none)": orig[seed],
            "oracle A": o,
            "oracle B": oracles[split.hash][ob_seed[0]] if ob_seed else None,
        }
        vals = {}
        for name, path in models.items():
            if path is None:
                continue
            out = outputs_of(load_model(path)[0], data, split, seed=seed)
            acc = {
                k: float((out.views[v][0].argmax(1) == out.views[v][1]).float().mean())
                for k, v in (("forget_acc", "forget"), ("retain_acc", "retain"), ("test_acc", "test"))
            }
            new = mia_efficacy(out.views["retain"], out.views["test_all"], out.views["forget"])
            old = svc_mia(
                out.views["retain"], out.views["test_all"], out.views["forget"], features=("confidence",), seed=seed
            )
            vals[name] = (acc, old, new)
        a = vals["oracle A"]
        for name, (acc, old, new) in vals.items():
            rows.append(
                {
                    "split": split.kind,
                    "seed": seed,
                    "model": name,
                    "mia_old": 100 * old,
                    "mia_new": 100 * new,
                    "avg_gap_old": avg_gap({**acc, "mia_efficacy": old}, {**a[0], "mia_efficacy": a[1]}),
                    "avg_gap_new": avg_gap({**acc, "mia_efficacy": new}, {**a[0], "mia_efficacy": a[2]}),
                }
            )

df = pd.DataFrame(rows)
print(df.to_string())
print(df.groupby(["split", "model"])[["mia_old", "mia_new", "avg_gap_old", "avg_gap_new"]].mean().round(2).to_string())
