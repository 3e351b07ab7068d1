"""Pure functions for judging a class-conditional generator by a classifier trained on real data.

A "judge" classifier labels generated samples (``pred``) that were conditioned on labels ``cond``;
its penultimate-layer activations are the features of the Fréchet distance. Everything here works
on numpy arrays, so the same functions score samples from any generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature rows ``a`` [n, d] and ``b`` [m, d]:
    ‖μ_a − μ_b‖² + Tr Σ_a + Tr Σ_b − 2 Tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}.

    This is FID's formula (Heusel et al., NeurIPS 2017; mseitzer/pytorch-fid ``fid_score.py``) on a
    small classifier's penultimate features instead of Inception-v3's 2048-d pool_3, so its values
    are not comparable with published FIDs. The trace term is computed from the symmetric PSD form
    S Σ_b S with S = Σ_a^{1/2} (``eigh``, eigenvalues clipped at 0), which is stable where
    pytorch-fid's ``sqrtm`` of the non-symmetric product needs a 1e-6·I retry. Like FID it is biased
    upwards at small n (roughly linearly in 1/n, Chong & Forsyth, CVPR 2020): compare values only at
    equal sample counts against the same reference features.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature arrays must be [n, d] with the same d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 rows per side for a covariance, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sqrt(np.clip(inner, 0, None)).sum())
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(fd, 0.0)


def class_rate(pred: np.ndarray, cond: np.ndarray, cls: int) -> float:
    """Share of the samples conditioned on ``cls`` that the judge calls ``cls`` (NaN without any)."""
    pred, cond = np.asarray(pred), np.asarray(cond)
    hit = pred[cond == cls]
    return float((hit == cls).mean()) if len(hit) else float("nan")


def per_class_accuracy(pred: np.ndarray, cond: np.ndarray, classes: list[int]) -> dict[int, float]:
    """Conditional accuracy per class: the judge's label equals the label the sample was drawn for."""
    return {c: class_rate(pred, cond, c) for c in classes}


def label_histogram(pred: np.ndarray, num_classes: int) -> np.ndarray:
    """The judge's label distribution [num_classes] over ``pred`` (sums to 1)."""
    counts = np.bincount(np.asarray(pred, np.int64), minlength=num_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """½ Σ |p − q| between two distributions: 0 identical, 1 disjoint. Between the judge's label
    histograms of two models' f-conditioned samples it catches where f's samples went (a fixed
    f → f+1 relabel target puts them all on one class the oracle spreads over many)."""
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% at z = 1.96); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class GenerativeOutputs:
    """One generator's samples as the judge sees them, plus the shared real-data reference.

    ``cond`` [N] the label each sample was conditioned on; ``pred`` [N] the judge's label;
    ``features`` [N, d] the judge's penultimate activations; ``reference`` the same features of
    real test images per class; ``forget_classes`` the classes being forgotten.
    """

    cond: np.ndarray
    pred: np.ndarray
    features: np.ndarray
    reference: dict[int, np.ndarray]
    forget_classes: tuple[int, ...]
    num_classes: int

    @property
    def retained(self) -> list[int]:
        return [c for c in range(self.num_classes) if c not in self.forget_classes and (self.cond == c).any()]

    def of(self, cls: int) -> np.ndarray:
        return self.features[self.cond == cls]

    def available(self) -> set[str]:
        return {"samples", "reference"}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def forget_class_rate(o: GenerativeOutputs) -> float:
    """Mean over forgotten classes f of the share of f-conditioned samples the judge calls f."""
    return _mean([class_rate(o.pred, o.cond, f) for f in o.forget_classes])


def retained_class_accuracy(o: GenerativeOutputs) -> float:
    """Mean over retained classes of the conditional accuracy (per class: ``per_class_accuracy``)."""
    return _mean(list(per_class_accuracy(o.pred, o.cond, o.retained).values()))


def fd_real(o: GenerativeOutputs, forgotten: bool) -> float:
    """Mean per-class Fréchet distance to real test images, over retained (or forgotten) classes."""
    classes = list(o.forget_classes) if forgotten else o.retained
    return _mean([frechet_distance(o.of(c), o.reference[c]) for c in classes])


def fd_between(a: GenerativeOutputs, b: GenerativeOutputs, forgotten: bool) -> float:
    """Mean per-class Fréchet distance between two generators' samples (same labels, same N)."""
    classes = list(a.forget_classes) if forgotten else a.retained
    return _mean([frechet_distance(a.of(c), b.of(c)) for c in classes])


def forget_label_tv(a: GenerativeOutputs, b: GenerativeOutputs) -> float:
    """Total variation between the judge's label histograms of the two generators' f-conditioned samples."""
    mask_a, mask_b = np.isin(a.cond, a.forget_classes), np.isin(b.cond, b.forget_classes)
    return total_variation(
        label_histogram(a.pred[mask_a], a.num_classes), label_histogram(b.pred[mask_b], b.num_classes)
    )
