"""ob.unlearn on a real pretrained LM: SmolLM2-135M-Instruct with LoRA, end to end on 2 CPU cores.

Teach the model 8 fictitious people's secret-id sentences (LoRA r = 8 through ``ob.lm.train``), then
forget 4 of them with ``npo`` (per-sequence stop at γ_max, calibrated on 4 people never taught),
``sga``, and issue 18's best LM setting unchanged (``npo`` selective with the retained people anchored
by KL, α 5, as in ``frontier-lm-people.yaml``), and report per-sequence memorization and secret
extraction for forgotten, retained and never-taught people. Needs the SmolLM2 wheel and gguf (see
obliviate.lm.hub.smollm2).

Usage: python benchmarks/lm_smollm2_unlearn.py [--threads 2]   (writes results/lm/smollm2-unlearn.json; the last
run took 47 min with the cores shared, 31 of them the KL-anchored setting's 100 steps)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import obliviate as ob
from obliviate.lm import People, TextDataset
from obliviate.lm.evaluate import sequence_scores
from obliviate.lm.hub import load_causal_lm, smollm2
from obliviate.lm.train import train
from obliviate.objectives import CausalLMTask

OUT = Path(__file__).parent / "results" / "lm" / "smollm2-unlearn.json"


#: issue 18's LM setting, as frontier-lm-people.yaml runs it on the tiny GPT (max_steps at its default)
FRONTIER = {"selective": True, "gamma_stat": "max", "lr": 1e-3, "batch_size": 32, "alpha": 5.0, "retain": "kl"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    torch.set_num_threads(ap.parse_args().threads)
    start = time.perf_counter()
    model, tok = load_causal_lm(smollm2(), lora={"r": 8, "lora_alpha": 16})
    pop = People.generate(12, seed=1)
    taught, never = pop.people[:8], pop.people[8:]
    sentence = lambda p: f"{p.name}'s secret id is {p.secret}."  # noqa: E731
    data = TextDataset.from_texts(tok, [sentence(p) for p in taught], 32)
    held = TextDataset.from_texts(tok, [sentence(p) for p in never], 32)

    def probe(people):
        return TextDataset.from_texts(
            tok, [f" {p.secret}" for p in people], 32, prompts=[f"{p.name}'s secret id is" for p in people], eos=False
        )

    log = train(model, data, steps=60, batch_size=8, lr=3e-3, seed=0, progress=False)
    split = ob.ForgetSplit.from_ids(len(data), [0, 1, 2, 3])

    def judge(m) -> dict:
        return {
            "forget_ma": sequence_scores(m, split.forget_set(data)).ma.tolist(),
            "retain_ma": sequence_scores(m, split.retain_set(data)).ma.tolist(),
            "heldout_ma": sequence_scores(m, held).ma.tolist(),
            "secret_forget": float(sequence_scores(m, probe(taught[:4])).extracted.mean()),
            "secret_retain": float(sequence_scores(m, probe(taught[4:])).extracted.mean()),
        }

    result = {"train_seconds": log.seconds, "train_loss": [log.loss[0], log.loss[-1]], "original": judge(model)}
    for label, name, kw in (
        ("npo", "npo", {"gamma_stat": "max", "lr": 1e-3, "max_steps": 30}),
        ("sga", "sga", {"stop": "sequence", "gamma_stat": "max", "lr": 3e-4, "max_steps": 30, "grad_clip": 1.0}),
        ("npo selective kl a5", "npo", FRONTIER),
    ):
        res = ob.unlearn(model, data, split, name, val=held, task=CausalLMTask(tok), progress=False, **kw)
        result[label] = {**judge(res.model), "seconds": res.seconds, "steps": res.history[-1], "notes": res.notes}
    result["seconds"] = time.perf_counter() - start
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    for k, v in result.items():
        if isinstance(v, dict):
            print(
                k,
                {
                    m: (round(sum(x) / len(x), 3) if isinstance(x, list) else x)
                    for m, x in v.items()
                    if m not in ("steps", "notes")
                },
            )
    print(f"train {log.seconds:.0f} s, total {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
