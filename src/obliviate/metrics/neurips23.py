"""The NeurIPS 2023 Machine Unlearning Challenge forgetting score, vectorised (reference §4.3-4.4).

Source: the released scorer, google-deepmind/unlearning_evaluation ``metric.py`` and ``main.py``
(commit ffae0ff), and the technical report "Evaluation for the NeurIPS Machine Unlearning
Competition" (2023). Where the two differ this module follows the released code, so that numbers
are comparable with the competition's:

* bins: the code scores 14 bins of width 0.5 up to ``ceil(ln(N - 1)) = 7`` for N = 512, not the
  report's 13 bins up to 6.5; ``N`` is the number of *unlearned* models;
* δ = 1e-5 (the report does not state δ);
* dtypes: φ is float64, the single-threshold grid is float32 (``torch.linspace`` at the default
  dtype), the interval grid float64 (``np.linspace``), and FPR/FNR and the per-attack ε are float32.
  They are reproduced here so that ε matches the released code's arithmetic bit for bit.

The released scorer loops over examples and compares every model's φ with every threshold
(~160,000 interval attacks per example). An attack only matters through which of the pooled,
sorted φ values fall in its region, so here ε is tabulated once per outcome (counts caught of each
sample), and the outcomes a threshold grid reaches are found by counting, for each pooled value,
the grid points at or below it (``np.searchsorted``, or in closed form for the 400 × ~400
``np.linspace`` interval grid; exact), with numpy broadcasting over examples and right
thresholds: O(right thresholds × models) per example instead of O(right thresholds × 400 × models).
Plain numpy (no torch intra-op threads) keeps the timing steady on small, shared machines.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # grid density of both attack families, per unit of φ
INTERVAL_BUFFER = 2.0  # the interval sweep reaches this far beyond the peakier sample
DEGENERATE_SPREAD = 0.01  # min range / max range below this: ε = cap
BIN_WIDTH = 0.5
_CHUNK_ELEMENTS = 500_000  # bounds the [examples, right thresholds, K] work arrays (cache-sized)

ArrayLike = torch.Tensor | np.ndarray


def logit_scaled_confidence(logits: ArrayLike, targets: ArrayLike) -> torch.Tensor:
    """Per-example LiRA statistic φ = log p_y − log Σ_{k≠y} p_k (reference §4.3 step 2).

    Computed as the released ``compute_logit_scaled_confidence``: subtract the max logit, exponentiate
    in the logits' dtype (float32 at least), normalise in float64, sum the non-target probabilities (rather than
    ``1 − p_y``, which would cancel to 0 for confident models) and floor both at 1e-45 inside the
    logs, so φ stays finite (|φ| ≲ 103.6) for any finite logits. Unlike the released function it does
    not modify ``logits`` in place.

    Args:
        logits: ``[..., examples, classes]``, e.g. ``[models, examples, classes]``.
        targets: ``[examples]`` integer labels.

    Returns:
        float64 tensor ``[..., examples]``.
    """
    logits = torch.as_tensor(logits).detach()
    if logits.is_floating_point() and logits.element_size() < 4:
        logits = logits.float()  # the released code received float32 numpy arrays
    targets = torch.as_tensor(targets, device=logits.device)
    if logits.ndim < 2 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a floating tensor [..., examples, classes], got {tuple(logits.shape)} {logits.dtype}"
        )
    n_examples, n_classes = logits.shape[-2:]
    if targets.ndim != 1 or len(targets) != n_examples:
        raise ValueError(
            f"targets must have shape [{n_examples}] to match logits {tuple(logits.shape)}, got {tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer class labels, got {targets.dtype}")
    if len(targets) and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(f"targets must lie in [0, {n_classes}), got [{int(targets.min())}, {int(targets.max())}]")
    if not torch.isfinite(logits).all():
        raise ValueError("logits contain NaN or inf")
    probs = (logits - logits.amax(-1, keepdim=True)).exp().double()
    probs = probs / probs.sum(-1, keepdim=True)
    is_target = F.one_hot(targets.long(), n_classes).bool()
    p_target = torch.where(is_target, probs, 0.0).sum(-1)
    p_rest = torch.where(is_target, 0.0, probs).sum(-1)
    return torch.log(p_target + 1e-45) - torch.log(p_rest + 1e-45)


def _as_confs(a: ArrayLike, name: str) -> np.ndarray:
    """Validate a φ array [models, examples] and return it as float64 (the released scorer's dtype)."""
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [models, examples], got shape {a.shape}")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 models and 1 example, got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _attack_epsilons(m_x: int, m_y: int, delta: float) -> np.ndarray:
    """ε of every attack outcome, indexed [a, b] (released ``_get_epsilons`` rules, in float32).

    An attack predicts "sample X" on a region; ``a`` of X's ``m_x`` values and ``b`` of Y's ``m_y``
    values fall inside it, so FNR = (m_x − a)/m_x and FPR = b/m_y. FPR = FNR = 0 gives ∞ (perfect
    separation); exactly one of them 0 gives NaN (discarded as a small-sample artefact); otherwise
    ε = max(log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR) clipped at 0, NaN where both
    terms are NaN.
    """
    fnr = (np.float32(m_x) - np.arange(m_x + 1, dtype=np.float32)) / np.float32(m_x)
    fpr = np.arange(m_y + 1, dtype=np.float32) / np.float32(m_y)
    one = np.float32(1 - delta)  # the released code's float32 promotion of the Python float 1 - δ
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.log(one - fpr)[None, :] - np.log(fnr)[:, None]
        t2 = np.log(one - fnr)[:, None] - np.log(fpr)[None, :]
        eps = np.maximum(np.fmax(t1, t2), np.float32(0))
    fnr0, fpr0 = (fnr == 0)[:, None], (fpr == 0)[None, :]
    return np.where(fnr0 & fpr0, np.float32(np.inf), np.where(fnr0 | fpr0, np.float32(np.nan), eps))


def _linspace_counts(z: np.ndarray, start: np.ndarray, stop: np.ndarray, num: int) -> np.ndarray:
    """For each row of thresholds ``np.linspace(start, stop, num)`` and sorted values z_1 ≤ ... ≤ z_K,
    the number of thresholds ≤ z_k, with 0 and ``num`` added at both ends: [n, rows, K + 2].

    The grid is never built: ``np.linspace`` yields j·step + start and ``stop`` last, so the count
    is floor((z − start)/step) + 1 clipped to [0, num]. Where z lies within 1e-6 steps of a grid
    point, rounding could shift that by one; those few counts are settled by comparing z with the
    grid points computed exactly as ``np.linspace`` computes them. z: [n, 1, K]; start, stop: [n, R, 1].
    """
    step = (stop - start) / (num - 1)
    inv = 1 / step[:, :1]  # one step per example is accurate to ~1e-10 steps here
    out = np.empty((*start.shape[:2], z.shape[-1] + 2))
    out[..., 0], out[..., -1] = 0, num
    est = out[..., 1:-1]
    np.subtract(z * inv, start * inv, out=est)
    upper = np.add(est, 1e-6)
    np.floor(upper, out=upper)
    np.floor(np.subtract(est, 1e-6, out=est), out=est)
    near = upper != est
    np.clip(np.add(est, 1, out=est), 0, num, out=est)
    if near.any():
        at = np.nonzero(near)
        zz, s, h, e = (np.broadcast_to(t, near.shape)[at] for t in (z, start, step, stop))
        c = est[at].astype(np.int64)

        def point(j: np.ndarray) -> np.ndarray:
            return np.where(j >= num - 1, e, j * h + s)

        while (up := (c < num) & (point(np.minimum(c, num - 1)) <= zz)).any():
            c += up
        while (down := (c > 0) & (point(np.maximum(c - 1, 0)) > zz)).any():
            c -= down
        est[at] = c
    return out


def _chunk_epsilons(
    u: np.ndarray,
    o: np.ndarray,
    oracle_pos: np.ndarray,
    peaky_oracle: np.ndarray,
    width: np.ndarray,
    table: np.ndarray,
    offsets: tuple[int, int],
) -> np.ndarray:
    """Max ε over both attack families for a chunk of non-degenerate examples (columns of u, o).

    An attack only matters through which pooled values (sorted: z_1 ≤ ... ≤ z_K) fall in its
    region: for "φ ≥ t" the number m of them below t, for "t_l ≤ φ ≤ t_r" also the number s at most
    t_r. A threshold grid reaches state m iff one of its points lies in (z_m, z_{m+1}], i.e. iff the
    count of grid points ≤ z steps up between z_m and z_{m+1}. With cumulative counts cx, cy of the
    two samples, the attack catches a = cx[s] − cx[m] of sample X and b = cy[s] − cy[m] of Y, so its
    entry in the flattened ε table is P[s] − Q[m] (P[s] = offset + stride·cx[s] + cy[s],
    Q[m] = stride·cx[m] + cy[m]); m > s is an empty interval, which is always discarded.
    """
    m_u, m_o = len(u), len(o)
    n, k = u.shape[1], m_u + m_o
    pooled = np.concatenate([u, o]).T
    order = np.argsort(pooled, axis=1, kind="stable")
    z = np.take_along_axis(pooled, order, 1)  # [n, K]
    cum_u = np.zeros((n, k + 1), dtype=np.int64)
    np.cumsum(order < m_u, axis=1, out=cum_u[:, 1:])
    cum_o = np.arange(k + 1) - cum_u

    def table_keys(x_is_oracle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # P and Q above, for X = the oracle sample where x_is_oracle, else the unlearned sample.
        x = x_is_oracle[:, None]
        q = np.where(x, cum_o, cum_u) * np.where(x, m_u + 1, m_o + 1) + np.where(x, cum_u, cum_o)
        return q + np.where(x, offsets[1], offsets[0]), q

    # Single threshold: predict the larger-median sample X when φ ≥ t, t on an evenly spaced float32
    # grid over the pooled [min, max] (released: torch.linspace at the default dtype); s = K.
    counts = np.ceil((z[:, -1] - z[:, 0]) * THRESHOLDS_PER_UNIT).astype(np.int64)
    grid_le = np.zeros((n, k + 2), dtype=np.int64)
    grid_le[:, -1] = counts
    for i in range(n):
        grid = torch.linspace(z[i, 0], z[i, -1], int(counts[i]), dtype=torch.float32).double().numpy()
        grid_le[i, 1:-1] = np.searchsorted(grid, z[i], side="right")
    p, q = table_keys(oracle_pos)
    best = table.take((p[:, -1:] - q) * (grid_le[:, 1:] > grid_le[:, :-1])).max(1)  # key 0: not reached

    # Interval: predict the peakier sample X when t_l ≤ φ ≤ t_r. t_r sweeps [min X + width − 2,
    # max X + 2] (np.linspace); for each t_r, 400 t_l sweep (t_r − width) ± 2 (np.linspace).
    r_lo = np.where(peaky_oracle, o.min(0), u.min(0)) + width - INTERVAL_BUFFER
    r_hi = np.where(peaky_oracle, o.max(0), u.max(0)) + INTERVAL_BUFFER
    n_right = np.ceil((r_hi - r_lo) * THRESHOLDS_PER_UNIT).astype(np.int64)
    right = np.repeat(r_lo[:, None], n_right.max(), 1)  # rows past n_right[i]: finite filler
    right_state = np.full(right.shape, -1)  # s per row; -1 marks filler rows, never usable
    for i in range(n):
        right[i, : n_right[i]] = np.linspace(r_lo[i], r_hi[i], n_right[i])
        right_state[i, : n_right[i]] = np.searchsorted(z[i], right[i, : n_right[i]], side="right")
    base = (right - width[:, None])[..., None]
    n_left = int(math.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))
    left_le = _linspace_counts(z[:, None, :], base - INTERVAL_BUFFER, base + INTERVAL_BUFFER, n_left)
    usable = left_le[..., 1:] > left_le[..., :-1]  # [n, R, K+1]: rows x left states reached
    usable &= np.arange(k + 1) <= right_state[..., None]
    p, q = table_keys(peaky_oracle)
    key = np.take_along_axis(p, np.maximum(right_state, 0), 1)[..., None] - q[:, None, :]
    key *= usable  # key 0: not reached
    eps = table.take(key)
    return np.maximum(best, eps.reshape(n, -1).max(1))


def neurips23_epsilons(
    unlearned_confs: ArrayLike, oracle_confs: ArrayLike, delta: float = DELTA, cap: float = EPSILON_CAP
) -> np.ndarray:
    """Per-example empirical ε of the competition (reference §4.3 steps 3-7), vectorised.

    For each forget example, the φ values under the unlearned models and under the oracles
    (retrained models) are two samples; ε is the strongest (ε, δ) violation any attack of two
    families can demonstrate between them. Follows the released ``_get_epsilons``:

    * the positive sample is the one with the larger median (the unlearned one on ties);
    * if min(range) / max(range) < 0.01 (one distribution is extremely peaked), ε = cap. When both
      ranges are 0 the released ratio is NaN and the rule does not fire; the same here;
    * single threshold: predict positive when φ ≥ t, t on ``ceil(100·(max − min))`` evenly spaced
      points over the pooled [min, max];
    * interval: predict the peakier sample (smaller range; the smaller-median one on ties) when
      t_l ≤ φ ≤ t_r, width = the smaller range, t_r on ``ceil(100·(max_P + 2 − (min_P + width − 2)))``
      points of [min_P + width − 2, max_P + 2], and for each t_r 400 points t_l of
      [t_r − width − 2, t_r − width + 2];
    * ε per attack as in :func:`_attack_epsilons`; ε = max over attacks ignoring NaN, clipped to
      [0, cap] (so ∞ becomes cap).

    Two deliberate differences from the released code: the two model counts may differ (the
    released ``np.where`` needs equal counts); and an example where every attack is discarded (e.g.
    all models give one identical φ) gets ε = NaN with a warning, where the released code stops on
    an ``assert``. (As stored, that ``assert`` is applied to a numpy array: it raises whenever more
    than one attack survives, or one survives with ε = 0; this module implements the evident
    intent, the max.)

    Args:
        unlearned_confs: φ ``[unlearned models, examples]``.
        oracle_confs: φ ``[oracle models, examples]``.
        delta: δ of (ε, δ)-unlearning.
        cap: ε of degenerate examples and upper clip.

    Returns:
        float64 ``[examples]``.
    """
    u, o = _as_confs(unlearned_confs, "unlearned_confs"), _as_confs(oracle_confs, "oracle_confs")
    if u.shape[1] != o.shape[1]:
        raise ValueError(
            f"unlearned_confs and oracle_confs must cover the same examples, got {u.shape[1]} and {o.shape[1]} columns"
        )
    m_u, m_o = len(u), len(o)
    oracle_pos = np.median(o, 0) > np.median(u, 0)
    range_u, range_o = u.max(0) - u.min(0), o.max(0) - o.min(0)
    range_pos, range_neg = np.where(oracle_pos, range_o, range_u), np.where(oracle_pos, range_u, range_o)
    width = np.minimum(range_pos, range_neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        degenerate = width / np.maximum(range_pos, range_neg) < DEGENERATE_SPREAD
    peaky_oracle = np.where(range_pos >= range_neg, ~oracle_pos, oracle_pos)

    tab_u, tab_o = _attack_epsilons(m_u, m_o, delta), _attack_epsilons(m_o, m_u, delta)
    table = np.concatenate([[-np.inf], tab_u.ravel(), tab_o.ravel()]).astype(np.float32)
    table[np.isnan(table)] = -np.inf  # discarded attacks never win; entry 0: no attack
    offsets = (1, 1 + tab_u.size)

    eps = np.full(u.shape[1], float(cap))
    todo = np.flatnonzero(~degenerate)
    chunk = max(1, _CHUNK_ELEMENTS // (401 * (m_u + m_o + 1)))
    for start in range(0, len(todo), chunk):
        cols = todo[start : start + chunk]
        eps[cols] = _chunk_epsilons(
            u[:, cols], o[:, cols], oracle_pos[cols], peaky_oracle[cols], width[cols], table, offsets
        )
    eps[eps == -np.inf] = np.nan
    if np.isnan(eps).any():
        warnings.warn(
            f"{int(np.isnan(eps).sum())} example(s) have no usable attack (e.g. every model gives "
            "the same φ); their ε is NaN and they score 0",
            RuntimeWarning,
            stacklevel=2,
        )
    return np.clip(eps, 0.0, cap)


def _bin_points(eps: np.ndarray, n_models: int) -> np.ndarray:
    """Points per example: 2 / 2^n for ε in bin n = 1, 2, ... of width 0.5 (1, 0.5, 0.25, ...).

    The bins end at ``ceil(ln(N − 1))``, N = the number of unlearned models, as in the released
    ``compute_forget_score_from_confs`` (14 bins up to 7 for N = 512; the report says 13 up to 6.5).
    ε beyond the last bin, and NaN, scores 0.
    """
    n_bins = int(math.ceil(math.log(n_models - 1)) / BIN_WIDTH) if n_models > 2 else 0
    bin_index = np.floor(eps / BIN_WIDTH)  # 0-based; NaN stays NaN and fails the test below
    scored = bin_index < n_bins
    return np.where(scored, 0.5 ** np.where(scored, bin_index, 0), 0.0)


def neurips23_score(
    unlearned_confs: ArrayLike, oracle_confs: ArrayLike, delta: float = DELTA, cap: float = EPSILON_CAP
) -> tuple[float, np.ndarray]:
    """Forgetting quality F of the competition (reference §4.3 steps 8-9) and the per-example ε.

    F = mean over forget examples of :func:`_bin_points` of ε (:func:`neurips23_epsilons`), in
    [0, 1]: 1 when no attack separates unlearned from oracle models (ε = 0 everywhere), 0 when
    every example is separable or degenerate. The estimator is noisy at any N: two independent
    samples of one distribution typically give ε ≈ 1.1-1.8, the log of a small count ratio in a
    tail (e.g. a region leaving out 6 models of one sample but 1 of the other: log 6), hence
    F ≈ 0.16-0.21 for a perfect unlearner at N = 16 ... 512 (measured); only identical samples
    give ε = 0 and F = 1.
    """
    eps = neurips23_epsilons(unlearned_confs, oracle_confs, delta, cap)
    return float(_bin_points(eps, len(unlearned_confs)).mean()), eps


def neurips23_final_score(
    forget_quality: float,
    retain_acc_unlearned: float,
    retain_acc_oracle: float,
    test_acc_unlearned: float,
    test_acc_oracle: float,
) -> float:
    """Competition score F × (RA_U / RA_R) × (TA_U / TA_R) (reference §4.4, released ``main.py``).

    Accuracies are means over the unlearned and over the oracle models. No clipping: an unlearned
    model more accurate than the oracles is rewarded above F.
    """
    if retain_acc_oracle <= 0 or test_acc_oracle <= 0:
        raise ValueError(f"oracle accuracies must be positive, got retain {retain_acc_oracle}, test {test_acc_oracle}")
    return forget_quality * (retain_acc_unlearned / retain_acc_oracle) * (test_acc_unlearned / test_acc_oracle)
