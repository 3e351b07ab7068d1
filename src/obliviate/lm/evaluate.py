"""Per-sequence judgement of a language model against its oracle (reference A1.2, A1.4, A3.4, A4).

Everything is computed from teacher-forced forward passes in batches: per-sequence memorization
(MA), secret extraction (greedy completion reproduces every secret token, which teacher forcing
decides exactly), MIA scores, TOFU-style answer probabilities and truth ratios.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import ks_2samp
from torch import nn

from ..metrics.lm import (
    calibrate_threshold,
    extraction_strength,
    forgetting_counts,
    lm_mia,
    min_k_percent,
    min_k_plus_plus,
    privleak,
    zlib_score,
)
from ..objectives.causal_lm import CausalLMTask, token_nll
from ..data.text import TextDataset

GAMMA_STATS = ("mean", "p95", "max")


@dataclass
class SequenceScores:
    """Per-row scores of one model on one dataset (scored tokens only)."""

    ma: np.ndarray        # exact memorization (share of greedy-correct tokens)
    nll: np.ndarray       # mean token NLL (LOSS attack)
    extracted: np.ndarray  # every scored token greedy-correct (greedy completion is verbatim)
    es: np.ndarray        # extraction strength
    min_k20: np.ndarray
    min_k40: np.ndarray
    min_kpp: np.ndarray

    def __len__(self) -> int:
        return len(self.ma)


@torch.no_grad()
def sequence_scores(model: nn.Module, data: TextDataset, batch_size: int = 64,
                    device: torch.device | None = None) -> SequenceScores:
    """Score every row of ``data`` in eval mode; the model's mode is restored."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    task = CausalLMTask()
    out: dict[str, list] = {k: [] for k in SequenceScores.__dataclass_fields__}
    for _, batch in task.batches(data, batch_size):
        ids, mask, labels = task.to(batch, device)
        logits = task.logits(model, (ids, mask, labels)).float()
        scored = (labels != -100).long()
        hits = task.correct(logits, (ids, mask, labels))
        out["ma"].append(hits)
        out["extracted"].append(hits >= 1.0 - 1e-6)
        # metrics.lm scores positions whose *target* is scored: pass a mask whose position t is 1
        # when token t is scored or is the token right before a scored one
        m = scored.clone()
        m[:, :-1] |= scored[:, 1:]
        out["nll"].append(task.losses(logits, (ids, mask, labels)))
        out["es"].append(extraction_strength(logits, ids, m))
        out["min_k20"].append(min_k_percent(logits, ids, m, 0.2))
        out["min_k40"].append(min_k_percent(logits, ids, m, 0.4))
        out["min_kpp"].append(min_k_plus_plus(logits, ids, m, 0.2))
    model.train(was)
    return SequenceScores(**{k: torch.cat(v).float().cpu().numpy() for k, v in out.items()})


@torch.no_grad()
def perplexity(model: nn.Module, data: TextDataset, batch_size: int = 64) -> float:
    """exp(mean NLL over every scored token of ``data``)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    task = CausalLMTask()
    total, count = 0.0, 0
    for _, batch in task.batches(data, batch_size):
        batch = task.to(batch, device)
        nll, valid = token_nll(task.logits(model, batch), batch[2])
        total, count = total + float(nll.sum()), count + int(valid.sum())
    model.train(was)
    return math.exp(total / max(count, 1))


def memorization_mia(forget_ma: np.ndarray, heldout_ma: np.ndarray) -> dict[str, float]:
    """The memorization-distribution attack (reference A1.4): score |g(x) − median of g on unseen
    text|, so both under-unlearned (too high) and over-unlearned (too low) forget sequences stand
    out; AUC and TPR at low FPR of forget vs held-out."""
    from ..metrics.mia import threshold_attack

    med = float(np.median(heldout_ma))
    return threshold_attack(np.abs(forget_ma - med), np.abs(heldout_ma - med))


def mia_suite(forget: SequenceScores, heldout: SequenceScores, forget_texts: list[str] | None = None,
              heldout_texts: list[str] | None = None, reference: tuple[SequenceScores, SequenceScores] | None = None
              ) -> dict[str, dict[str, float]]:
    """LOSS, zlib, Min-K% (k = 0.2, 0.4), Min-K%++, reference-based (NLL minus a reference
    model's NLL, e.g. the oracle's) and the memorization-distribution attack: forget vs held-out."""
    out = {"loss": lm_mia(forget.nll, heldout.nll), "min_k20": lm_mia(forget.min_k20, heldout.min_k20),
           "min_k40": lm_mia(forget.min_k40, heldout.min_k40), "min_kpp": lm_mia(forget.min_kpp, heldout.min_kpp),
           "memorization": memorization_mia(forget.ma, heldout.ma)}
    if forget_texts is not None and heldout_texts is not None:
        out["zlib"] = lm_mia(zlib_score(forget.nll, forget_texts), zlib_score(heldout.nll, heldout_texts))
    if reference is not None:
        out["reference"] = lm_mia(forget.nll - reference[0].nll, heldout.nll - reference[1].nll)
    return out


def per_sequence_report(forget_ma: np.ndarray, heldout_ma_original: np.ndarray, oracle_forget_ma: np.ndarray | None = None,
                        stats: tuple[str, ...] = GAMMA_STATS) -> dict[str, dict[str, float]]:
    """c(D_f) and the lower-tail count at each γ statistic (γ from the *original* model's held-out
    scores, fixed across methods), beside the oracle's counts when given."""
    out = {}
    for s in stats:
        gamma = calibrate_threshold(heldout_ma_original, s)
        row = forgetting_counts(forget_ma, heldout_ma_original, gamma)
        if oracle_forget_ma is not None:
            row["oracle_above"] = int((oracle_forget_ma > gamma).sum())
        out[s] = row
    return out


def histogram(values: np.ndarray, bins: int = 10) -> list[int]:
    """Counts of per-sequence scores in ``bins`` equal bins over [0, 1] (for a per-sequence report)."""
    return np.histogram(np.clip(values, 0, 1), bins=bins, range=(0, 1))[0].tolist()


# --- entity unlearning (TOFU-style, reference A3.1 and A4) ---------------------------------------

def answer_probability(scores: SequenceScores) -> np.ndarray:
    """TOFU's P(a|q)^{1/|a|} = exp(−mean NLL of the answer tokens)."""
    return np.exp(-scores.nll)


def truth_ratio(paraphrased: SequenceScores, perturbed: list[SequenceScores]) -> np.ndarray:
    """Per question: geometric mean over perturbed answers of P^{1/|â|}, over P^{1/|ã|} of the
    paraphrased answer (OpenUnlearning's choice: the mean of the perturbed answers' mean NLL is taken
    before exponentiating; the paper uses an arithmetic mean)."""
    pert_nll = np.mean([p.nll for p in perturbed], axis=0)
    return np.exp(paraphrased.nll - pert_nll)


def forget_quality(truth_unlearned: np.ndarray, truth_oracle: np.ndarray) -> float:
    """TOFU's forget quality: the KS-test p-value between the forget set's truth ratios under the
    unlearned model and under the oracle; ≥ 0.05 reads as indistinguishable from retraining."""
    return float(ks_2samp(truth_unlearned, truth_oracle).pvalue)


def relearn(model: nn.Module, relearn_set: TextDataset, *, steps: int = 10, lr: float = 1e-3, batch_size: int = 8,
            seed: int = 0) -> nn.Module:
    """The relearning attack (reference A3.5): a copy of ``model`` fine-tuned for ``steps`` Adam steps on
    a few forget rows (or related text); the caller measures the rest of the forget set on it."""
    from .train import train

    attacked = copy.deepcopy(model)
    train(attacked, relearn_set, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=False)
    return attacked


def recovery(attacked: float, unlearned: float, original: float) -> float:
    """(M_attacked − M_unlearned) / (M_original − M_unlearned): 0 = nothing came back, 1 = all of it."""
    gap = original - unlearned
    return float("nan") if abs(gap) < 1e-12 else (attacked - unlearned) / gap


__all__ = ["GAMMA_STATS", "SequenceScores", "answer_probability", "forget_quality", "histogram", "memorization_mia",
           "mia_suite", "per_sequence_report", "perplexity", "privleak", "recovery", "relearn", "sequence_scores",
           "truth_ratio"]
