"""``obliviate lm-demo``: memorize fictitious people's secrets in a tiny GPT, forget 20 of them, and
judge each method per sequence against the oracle retrained without them.

The trained original and oracle are cached (safetensors + JSON, keyed by the scenario and training
settings), so a second run only unlearns and evaluates.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..metrics.lm import calibrate_threshold, privleak
from ..objectives.causal_lm import CausalLMTask
from . import evaluate as lme
from .corpus import tiny_gpt2
from .scenario import Scenario, make_scenario
from .train import train

#: (label, method, overrides) the demo runs by default: Jang's aggregate-stopped GA, the same GA and
#: SGA as released, SGA stopped per sequence at γ_max, NPO (with its retain term), NPO made selective,
#: and SGA with a strong retain term stopped at γ_p95 (the rows of benchmarks/results/lm/lm-demo.json).
#: Minibatches of 32 forget rows (steps comparable in cost with training steps); measured settings,
#: see the README's LM section.
DEFAULT_METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("ga (aggregate stop)", "ga", {}),
    ("ga (sequence stop, γ_max)", "ga", {"stop": "sequence", "gamma_stat": "max"}),
    ("sga (released)", "sga", {}),
    (
        "sga (sequence stop, γ_max)",
        "sga",
        {"stop": "sequence", "gamma_stat": "max", "lr": 3e-4, "batch_size": 32, "max_steps": 100, "grad_clip": 1.0},
    ),
    ("npo (γ_max, 100 steps)", "npo", {"gamma_stat": "max", "lr": 3e-3, "batch_size": 32}),
    (
        "npo selective (γ_max)",
        "npo",
        {"selective": True, "gamma_stat": "max", "lr": 1e-3, "batch_size": 32, "alpha": 2.0},
    ),
    (
        "sga + retain α=5 (sequence stop, γ_p95)",
        "sga",
        {
            "stop": "sequence",
            "gamma_stat": "p95",
            "lr": 3e-4,
            "batch_size": 32,
            "alpha": 5.0,
            "max_steps": 100,
            "grad_clip": 1.0,
        },
    ),
]


@dataclass
class DemoConfig:
    steps: int = 800
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    scenario: dict[str, Any] = field(default_factory=lambda: {"pii_repeats": 20})

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:12]


def _trained(
    sc: Scenario, which: str, cfg: DemoConfig, cache: Path | None, progress: bool | None
) -> tuple[nn.Module, float]:
    """The original (all rows) or the oracle (retain rows only), same recipe and seed; cached."""
    model = tiny_gpt2(len(sc.tokenizer), context=sc.length, seed=cfg.seed, eos_token_id=sc.tokenizer.eos_token_id)
    folder = cache / f"{cfg.key()}-{which}" if cache else None
    if folder and (folder / "model.safetensors").exists():
        state = load_file(folder / "model.safetensors")
        model.load_state_dict(state, strict=False)
        model.tie_weights()
        return model.eval(), json.loads((folder / "train.json").read_text())["seconds"]
    data = sc.train if which == "original" else sc.retain
    log = train(model, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, progress=progress)
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied
        save_file(state, folder / "model.safetensors")
        (folder / "train.json").write_text(json.dumps(log.to_dict()))
    return model.eval(), log.seconds


@dataclass
class Judge:
    """Scores any model of the scenario; γ is fixed from the *original*'s held-out scores."""

    sc: Scenario
    original: nn.Module
    oracle: nn.Module
    oracle_row: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        sc = self.sc
        self.held0 = lme.sequence_scores(self.original, sc.heldout)
        self.gamma = {s: calibrate_threshold(self.held0.ma, s) for s in lme.GAMMA_STATS}
        self.ppl0 = lme.perplexity(self.original, sc.heldout_text)
        # every probe is tokenised once and scored for each model
        self.probes = {
            "secret_forget": sc.secret_probe(sc.forget_people),
            "secret_retain": sc.secret_probe(sc.retain_people),
        }
        for who, people in (("forget", sc.forget_people), ("retain", sc.retain_people)):
            self.probes[f"qa_{who}"] = sc.qa_probe(people)[0]
            self.probes[f"assoc_{who}"] = sc.association_probe(people)
        for answer in ("paraphrased", "perturbed0", "perturbed1", "perturbed2"):
            self.probes[answer] = sc.qa_probe(sc.forget_people, answer)[0]
        self.oracle_row = self.row(self.oracle)

    def row(self, model: nn.Module) -> dict[str, Any]:
        sc = self.sc
        f = lme.sequence_scores(model, sc.forget)
        h = lme.sequence_scores(model, sc.heldout)
        counts = lme.per_sequence_report(f.ma, self.held0.ma)
        mia = lme.mia_suite(f, h, sc.forget.texts, sc.heldout.texts)
        row: dict[str, Any] = {
            "c": {s: counts[s]["above"] for s in lme.GAMMA_STATS},
            "below_low": counts["mean"]["below_low"],
            "forget_ma": float(f.ma.mean()),
            "forget_ma_max": float(f.ma.max()),
            "secret_forget": float(lme.sequence_scores(model, self.probes["secret_forget"]).extracted.mean()),
            "secret_retain": float(lme.sequence_scores(model, self.probes["secret_retain"]).extracted.mean()),
            "mia_auc": {k: v["auc"] for k, v in mia.items()},
            "ppl_change": lme.perplexity(model, sc.heldout_text) / self.ppl0 - 1,
            "hist": lme.histogram(f.ma),
        }
        if self.oracle_row is not None:
            row["privleak"] = privleak(row["mia_auc"]["min_k40"], self.oracle_row["mia_auc"]["min_k40"])
        return row

    def entity(self, model: nn.Module) -> dict[str, float]:
        """TOFU-style knowledge of the forget people vs the retained (neighbours), and an indirect probe."""
        out: dict[str, float] = {}
        for who in ("forget", "retain"):
            ans = lme.sequence_scores(model, self.probes[f"qa_{who}"])
            out[f"qa_acc_{who}"] = float(ans.extracted.mean())
            out[f"qa_prob_{who}"] = float(lme.answer_probability(ans).mean())
            out[f"assoc_{who}"] = float(lme.sequence_scores(model, self.probes[f"assoc_{who}"]).extracted.mean())
        para = lme.sequence_scores(model, self.probes["paraphrased"])
        pert = [lme.sequence_scores(model, self.probes[f"perturbed{k}"]) for k in range(3)]
        out["truth_ratio"] = lme.truth_ratio(para, pert)  # type: ignore[assignment]
        return out


def default_cache() -> Path:
    return Path.home() / ".cache" / "obliviate" / "lm-demo"


def run_demo(
    cfg: DemoConfig | None = None,
    methods: list[tuple[str, str, dict[str, Any]]] | None = None,
    *,
    cache: Path | None = None,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
    relearn_steps: int = 10,
) -> dict[str, Any]:
    """Train (or load) original and oracle, unlearn with each method, judge; returns everything printed."""
    cfg = cfg or DemoConfig()
    methods = DEFAULT_METHODS if methods is None else methods
    from ..methods import get

    for _, name, kw in methods:  # unknown names and parameters fail now, not after two trainings
        get(name)(**kw)
    t0 = time.perf_counter()
    sc = make_scenario(seed=cfg.seed, **cfg.scenario)
    echo(
        f"scenario: {len(sc.train)} training rows ({len(sc.forget_people)} forget / {len(sc.retain_people)} retained "
        f"/ {len(sc.heldout_people)} held-out people, {len(sc.canaries['forget'])} forget canaries); "
        f"forget set {len(sc.forget)} sequences"
    )
    original, train_s = _trained(sc, "original", cfg, cache, progress)
    oracle, _ = _trained(sc, "oracle", cfg, cache, progress)
    judge = Judge(sc, original, oracle)
    echo(
        f"γ from the original's held-out people: mean {judge.gamma['mean']:.3f}, p95 {judge.gamma['p95']:.3f}, "
        f"max {judge.gamma['max']:.3f}; training took {train_s:.0f} s"
    )
    rows: dict[str, dict[str, Any]] = {"original": judge.row(original), "oracle": judge.oracle_row}
    entity = {"original": judge.entity(original), "oracle": judge.entity(oracle)}
    models = {"original": original, "oracle": oracle}
    task = CausalLMTask(sc.tokenizer)
    from .. import unlearn

    for label, name, kw in methods:
        res = unlearn(
            original, sc.train, sc.split, name, val=sc.heldout, task=task, seed=cfg.seed, progress=progress, **kw
        )
        row = judge.row(res.model)
        row.update(seconds=res.seconds, cost=res.seconds / train_s, params=res.params, notes=res.notes)
        rows[label], entity[label], models[label] = row, judge.entity(res.model), res.model
    oracle_truth = entity["oracle"]["truth_ratio"]
    for label in entity:
        entity[label]["forget_quality"] = lme.forget_quality(entity[label].pop("truth_ratio"), oracle_truth)
    relearn = _relearn(sc, judge, models, relearn_steps)
    result = {
        "config": cfg.__dict__,
        "gamma": judge.gamma,
        "train_seconds": train_s,
        "rows": rows,
        "entity": entity,
        "relearn": relearn,
        "seconds": time.perf_counter() - t0,
    }
    return result


def _relearn(sc: Scenario, judge: Judge, models: dict[str, nn.Module], steps: int) -> dict[str, Any]:
    """Fine-tune each model on the rows of the first half of the forget people and measure secret
    extraction on the other half (disjoint), against the oracle under the same attack."""
    half = len(sc.forget_people) // 2
    first = {p.pid for p in sc.forget_people[:half]}
    rows = [i for i in sc.split.forget_ids.tolist() if sc.pids[i] in first]
    relearn_set = sc.train.subset(torch.tensor(rows))
    probe = sc.secret_probe(sc.forget_people[half:])  # the un-relearned half only
    probe_ma = sc.train.subset(
        torch.tensor([i for i in sc.split.forget_ids.tolist() if sc.pids[i] not in first and sc.pids[i] >= 0])
    )
    out = {}
    base = {k: float(lme.sequence_scores(m, probe_ma).ma.mean()) for k, m in models.items()}
    for k, m in models.items():
        if k == "original":
            continue
        attacked = lme.relearn(m, relearn_set, steps=steps, lr=1e-3, batch_size=8)
        ma = float(lme.sequence_scores(attacked, probe_ma).ma.mean())
        out[k] = {
            "ma_before": base[k],
            "ma_after": ma,
            "secret_after": float(lme.sequence_scores(attacked, probe).extracted.mean()),
            "recovery": lme.recovery(ma, base[k], base["original"]),
        }
    return out


def format_tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) tables of a demo result, for rich or markdown."""
    oracle = result["rows"]["oracle"]
    head = [
        "model",
        "c(D_f) γ_mean",
        "γ_p95",
        "γ_max",
        "forget MA (oracle)",
        "below low",
        "secret extr. forget",
        "retained",
        "MIA AUC loss / mem",
        "PrivLeak",
        "Δ ppl",
        "seconds",
        "% train",
    ]
    body = []
    for label, r in result["rows"].items():
        body.append(
            [
                label,
                *(f"{r['c'][s]} ({oracle['c'][s]})" for s in lme.GAMMA_STATS),
                f"{r['forget_ma']:.3f} ({oracle['forget_ma']:.3f})",
                str(r["below_low"]),
                f"{r['secret_forget']:.0%}",
                f"{r['secret_retain']:.0%}",
                f"{r['mia_auc']['loss']:.2f} / {r['mia_auc']['memorization']:.2f}",
                f"{r.get('privleak', 0.0):+.2f}" if "privleak" in r else "",
                f"{r['ppl_change']:+.1%}",
                f"{r['seconds']:.1f}" if "seconds" in r else "",
                f"{r['cost']:.1%}" if "cost" in r else "",
            ]
        )
    ent_head = [
        "model",
        "forget QA acc",
        "forget QA prob",
        "forget quality (KS p)",
        "neighbour QA acc",
        "association forget / retained",
    ]
    ent = [
        [
            k,
            f"{e['qa_acc_forget']:.0%}",
            f"{e['qa_prob_forget']:.3f}",
            f"{e['forget_quality']:.2g}",
            f"{e['qa_acc_retain']:.0%}",
            f"{e['assoc_forget']:.0%} / {e['assoc_retain']:.0%}",
        ]
        for k, e in result["entity"].items()
    ]
    rel_head = ["model", "held-out forget MA before", "after relearning", "recovery", "secrets after"]
    rel = [
        [k, f"{v['ma_before']:.3f}", f"{v['ma_after']:.3f}", f"{v['recovery']:.2f}", f"{v['secret_after']:.0%}"]
        for k, v in result["relearn"].items()
    ]
    return [
        ("per-sequence forgetting (oracle's value in brackets; γ from the original's held-out people)", head, body),
        ("entity unlearning (TOFU-style, forget people vs retained neighbours)", ent_head, ent),
        ("relearning attack: fine-tune on half the forget people, measure the other half", rel_head, rel),
    ]


def save(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
