"""Per-sequence judgement of a language model against its oracle (reference A1.2, A1.4, A3.4, A4):
the lm-demo's tables. The scoring itself (``sequence_scores``, ``perplexity``) lives in
:mod:`obliviate.evaluation.sequences` and the pure functions in :mod:`obliviate.metrics.lm`, which
``ob.evaluate`` uses for language models; they are re-exported here under their old names."""

from __future__ import annotations

import copy

import numpy as np
from torch import nn

from ..data.text import TextDataset
from ..evaluation.sequences import GAMMA_STATS, perplexity, sequence_scores
from ..metrics.lm import (
    SequenceScores,
    answer_probability,
    calibrate_threshold,
    forget_quality,
    forgetting_counts,
    lm_mia,
    privleak,
    truth_ratio,
    zlib_score,
)


def memorization_mia(forget_ma: np.ndarray, heldout_ma: np.ndarray) -> dict[str, float]:
    """The memorization-distribution attack (reference A1.4): score |g(x) − median of g on unseen
    text|, so both under-unlearned (too high) and over-unlearned (too low) forget sequences stand
    out; AUC and TPR at low FPR of forget vs held-out."""
    from ..metrics.mia import threshold_attack

    med = float(np.median(heldout_ma))
    return threshold_attack(np.abs(forget_ma - med), np.abs(heldout_ma - med))


def mia_suite(
    forget: SequenceScores,
    heldout: SequenceScores,
    forget_texts: list[str] | None = None,
    heldout_texts: list[str] | None = None,
    reference: tuple[SequenceScores, SequenceScores] | None = None,
) -> dict[str, dict[str, float]]:
    """LOSS, zlib, Min-K% (k = 0.2, 0.4), Min-K%++, reference-based (NLL minus a reference
    model's NLL, e.g. the oracle's) and the memorization-distribution attack: forget vs held-out."""
    out = {
        "loss": lm_mia(forget.nll, heldout.nll),
        "min_k20": lm_mia(forget.min_k20, heldout.min_k20),
        "min_k40": lm_mia(forget.min_k40, heldout.min_k40),
        "min_kpp": lm_mia(forget.min_kpp, heldout.min_kpp),
        "memorization": memorization_mia(forget.ma, heldout.ma),
    }
    if forget_texts is not None and heldout_texts is not None:
        out["zlib"] = lm_mia(zlib_score(forget.nll, forget_texts), zlib_score(heldout.nll, heldout_texts))
    if reference is not None:
        out["reference"] = lm_mia(forget.nll - reference[0].nll, heldout.nll - reference[1].nll)
    return out


def per_sequence_report(
    forget_ma: np.ndarray,
    heldout_ma_original: np.ndarray,
    oracle_forget_ma: np.ndarray | None = None,
    stats: tuple[str, ...] = GAMMA_STATS,
) -> dict[str, dict[str, float]]:
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


def relearn(
    model: nn.Module, relearn_set: TextDataset, *, steps: int = 10, lr: float = 1e-3, batch_size: int = 8, seed: int = 0
) -> nn.Module:
    """The relearning attack (reference A3.5): a copy of ``model`` fine-tuned for ``steps`` Adam steps on
    a few forget rows (or related text); the caller measures the rest of the forget set on it."""
    from ..train.lm import fit_causal_lm

    attacked = copy.deepcopy(model)
    fit_causal_lm(attacked, relearn_set, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=False)
    return attacked


def recovery(attacked: float, unlearned: float, original: float) -> float:
    """(M_attacked − M_unlearned) / (M_original − M_unlearned): 0 = nothing came back, 1 = all of it."""
    gap = original - unlearned
    return float("nan") if abs(gap) < 1e-12 else (attacked - unlearned) / gap


__all__ = [
    "GAMMA_STATS",
    "SequenceScores",
    "answer_probability",
    "forget_quality",
    "histogram",
    "memorization_mia",
    "mia_suite",
    "per_sequence_report",
    "perplexity",
    "privleak",
    "recovery",
    "relearn",
    "sequence_scores",
    "truth_ratio",
]
