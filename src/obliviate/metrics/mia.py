"""Membership-inference attacks on per-example statistics (scikit-learn classifiers, no hand-rolled ML)."""

from __future__ import annotations

import numpy as np
import torch


def _balanced(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample the larger of two samples to the size of the smaller."""
    n = min(len(a), len(b))
    return rng.choice(a, n, replace=False), rng.choice(b, n, replace=False)


def loss_mia(
    forget_losses: torch.Tensor | np.ndarray,
    test_losses: torch.Tensor | np.ndarray,
    *,
    n_splits: int = 10,
    seed: int = 0,
) -> float:
    """The NeurIPS 2023 starting-kit "simple MIA" (reference §4.5).

    A logistic regression on the per-example cross-entropy tells forget (member, 1) from test
    (non-member, 0) examples, classes balanced by subsampling the larger set; returns the mean
    10-split ``StratifiedShuffleSplit`` accuracy. Ideal: the oracle's value, ~0.5.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score

    rng = np.random.default_rng(seed)
    f, t = _balanced(np.asarray(forget_losses, dtype=np.float64), np.asarray(test_losses, dtype=np.float64), rng)
    if len(f) < 2:
        raise ValueError("loss_mia needs at least 2 forget and 2 test examples")
    x = np.concatenate([f, t])[:, None]
    y = np.r_[np.ones(len(f)), np.zeros(len(t))]
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=0.3 if len(x) >= 20 else 0.5, random_state=seed)
    return float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())
