"""Plain loop reference for the NeurIPS 2023 unlearning ε (released-scorer semantics).

Written independently of ``obliviate.metrics.neurips23`` from a reading of the released scorer
(google-deepmind/unlearning_evaluation ``metric.py``, ``_get_epsilons`` and its two rate helpers):
one example at a time, every threshold materialised, every φ compared with every threshold, the
same dtypes (float32 single-threshold grid, float64 interval grid, float32 rates and ε), on CPU.
Used by ``tests/test_neurips23.py`` (exact agreement) and ``benchmarks/neurips23_speed.py`` (the
baseline the vectorised version is timed against). Not part of the package.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive iff φ ≥ t", t on 100 points per unit over the pooled [min, max]."""
    pooled = np.concatenate([pos, neg])
    lo, hi = pooled.min(), pooled.max()
    count = int(np.ceil((hi - lo) * 100))
    thresholds = torch.linspace(float(lo), float(hi), count, dtype=torch.float32).numpy().astype(np.float64)
    fnr = (pos[:, None] < thresholds[None, :]).astype(np.float32).mean(0)
    fpr = (neg[:, None] >= thresholds[None, :]).astype(np.float32).mean(0)
    return fpr, fnr


def _interval_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "the peakier sample iff t_left ≤ φ ≤ t_right", over the released sweep."""
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    width = neg_range if pos_range > neg_range else pos_range
    peaky, other = (neg, pos) if pos_range >= neg_range else (pos, neg)
    lo = peaky.min() + width - 2.0
    hi = peaky.max() + 2.0
    rights = np.linspace(lo, hi, int(np.ceil((hi - lo) * 100)))
    lefts_per_right = int(np.ceil(2 * 2.0 * 100))
    left = np.concatenate([np.linspace(r - width - 2.0, r - width + 2.0, lefts_per_right) for r in rights])
    right = np.repeat(rights, lefts_per_right)
    peaky_in = (left[None, :] <= peaky[:, None]) & (peaky[:, None] <= right[None, :])
    other_in = (left[None, :] <= other[:, None]) & (other[:, None] <= right[None, :])
    return other_in.astype(np.float32).mean(0), (~peaky_in).astype(np.float32).mean(0)


def _attack_eps(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> np.ndarray:
    """Per-attack ε: ∞ if FPR = FNR = 0, NaN (discarded) if exactly one is 0, else the bound."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns in nanmax
        bound = np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)], axis=0)
        bound = np.clip(bound, 0, None)
    eps = np.where(fpr + fnr == 0, np.float32(np.inf), bound)
    return np.where((fpr * fnr == 0) & (fpr + fnr != 0), np.float32(np.nan), eps)


def reference_epsilons(
    unlearned_confs: np.ndarray, oracle_confs: np.ndarray, delta: float = 1e-5, cap: float = 50.0
) -> np.ndarray:
    """Per-example ε, one example and one attack at a time. NaN where every attack is discarded."""
    unlearned = np.asarray(unlearned_confs, dtype=np.float64)
    oracle = np.asarray(oracle_confs, dtype=np.float64)
    out = []
    for i in range(unlearned.shape[1]):
        u, o = unlearned[:, i], oracle[:, i]
        pos, neg = (o, u) if np.median(o) > np.median(u) else (u, o)
        pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
        with np.errstate(divide="ignore", invalid="ignore"):
            spread_ratio = min(pos_range, neg_range) / max(pos_range, neg_range)
        if spread_ratio < 0.01:
            out.append(cap)
            continue
        fpr_s, fnr_s = _single_threshold_rates(pos, neg)
        fpr_d, fnr_d = _interval_rates(pos, neg)
        eps = _attack_eps(np.concatenate([fpr_d, fpr_s]), np.concatenate([fnr_d, fnr_s]), delta)
        eps = eps[~np.isnan(eps)]
        out.append(float(eps.max()) if len(eps) else np.nan)
    return np.clip(np.array(out, dtype=np.float64), 0, cap)
