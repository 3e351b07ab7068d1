"""Distances between two models' output distributions on the same examples (reference §6.3).

All functions take logits [N, C] (or [..., C]) and return per-example values; average them for a
single number. Natural logarithms throughout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(p_ref || p), e.g. KL(p_oracle || p_unlearned): how surprised the oracle's
    predictive distribution is by the unlearned one. 0 iff identical."""
    log_r = F.log_softmax(reference_logits.double(), -1)
    log_p = F.log_softmax(logits.double(), -1)
    return (log_r.exp() * (log_r - log_p)).sum(-1).float()


def symmetric_kl(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """½[KL(a||b) + KL(b||a)], as in RUM's holdout-retraining memorization proxy."""
    return 0.5 * (kl(a_logits, b_logits) + kl(b_logits, a_logits))


def js_divergence(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """Textbook Jensen-Shannon divergence ½KL(a||m) + ½KL(b||m), m = ½(a + b), in nats (<= ln 2).

    Bad-Teacher/SSD's "JSDiv" calls ``F.kl_div(log p, m)`` (= KL(m||p), element-mean); this is the
    real JS, symmetric and bounded.
    """
    p = F.softmax(a_logits.double(), -1)
    q = F.softmax(b_logits.double(), -1)
    m = 0.5 * (p + q)

    def _kl(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(x > 0, x * (x.clamp_min(1e-300).log() - y.clamp_min(1e-300).log()), 0.0).sum(-1)

    return (0.5 * _kl(p, m) + 0.5 * _kl(q, m)).float()


def activation_distance(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """Per-example L2 distance between softmax vectors (Chundawat et al. / SSD ``actv_dist``)."""
    return (F.softmax(a_logits.float(), -1) - F.softmax(b_logits.float(), -1)).norm(dim=-1)


def disagreement(a_logits: torch.Tensor, b_logits: torch.Tensor) -> torch.Tensor:
    """1.0 where the two models' top-1 predictions differ (RUM's prediction-difference metric)."""
    return (a_logits.argmax(-1) != b_logits.argmax(-1)).float()


def zrf(logits: torch.Tensor, random_logits: torch.Tensor) -> float:
    """Zero-retrain forgetting (Chundawat et al. 2023): 1 − mean JS(p_model, p_random) / ln 2.

    Needs no oracle: compares the model with a randomly initialised network of the same
    architecture on D_f. JS is normalised by ln 2 so ZRF is in [0, 1]; 1 = behaves like a random
    model, ~the original's value = nothing forgotten. (The authors' code uses their non-standard
    JS; values are not comparable with theirs.)
    """
    return float(1 - js_divergence(logits, random_logits).mean() / math.log(2))
