"""U-LiRA: a per-example likelihood-ratio attack on unlearning (Hayes et al., SaTML 2025; reference §5.1).

Population MIAs train one attacker for all examples and overestimate privacy; U-LiRA fits, for
every target example, the distribution of its logit-scaled confidence under shadow models that
*trained on it and then unlearned it* and under shadow models that *never saw it*, and tests each
unlearned model against both Gaussians. An unlearning method is private when the attack is at
chance (accuracy 0.5, AUC 0.5), which is what retraining gives.

Protocol here (cost: ``n_shadow`` trainings as one vectorised ensemble + ``n_shadow`` runs of the
method):

1. ``n_targets`` target examples T are drawn from the training set (the pool).
2. Shadow k trains on a random half H_k of the pool; its forget set F_k is a random half of T ∩ H_k.
3. The method unlearns F_k from shadow k; φ_k(x) is recorded for every x in T.
4. Leave-one-shadow-out: each shadow j is attacked in turn with Gaussians fitted on the others —
   positives are F_j (trained then unlearned), negatives T \\ H_j (never seen), so the classes are
   balanced in expectation. The score is log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out) (online),
   or (φ − μ_out)/σ_out with out-models only (``offline=True``, cheaper to collect in practice).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..data.datasets import Data, labels_of, subset
from ..data.splits import ForgetSplit
from ..methods.unlearn import unlearn
from ..metrics.mia import threshold_attack
from ..metrics.neurips23 import logit_scaled_confidence
from ..objectives import ClassificationTask
from ..train.ensemble import train_ensemble
from ..train.recipe import Recipe
from ..utils import progress_bar
from .report import Report


def ulira(
    recipe: Recipe,
    data: Data,
    method: str,
    *,
    n_shadow: int = 32,
    n_targets: int = 100,
    seed: int = 0,
    offline: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    **overrides: Any,
) -> Report:
    """Run U-LiRA against ``method`` (with hyper-parameter ``overrides``) on ``data``'s training set.

    Returns a Report with ``ulira_acc`` (balanced accuracy of the likelihood-ratio test at Λ = 1;
    for ``offline``, which has no natural threshold, the best threshold's), ``ulira_auc``, ``ulira_tpr@1%fpr`` and
    ``ulira_tpr@0.1%fpr``; ideal for all: what retraining gives (0.5, 0.5, ~FPR). ``details`` holds
    the per-attack scores and labels.
    """
    n = len(data.train)
    if n_shadow < 4:
        raise ValueError(f"n_shadow must be >= 4 (Gaussians are fitted on the other shadows), got {n_shadow}")
    if not 2 <= n_targets <= n // 2:
        raise ValueError(f"n_targets must be in [2, {n // 2}], got {n_targets}")
    g = torch.Generator().manual_seed(seed)
    targets = torch.randperm(n, generator=g)[:n_targets]
    halves = torch.stack([torch.randperm(n, generator=g)[: n // 2] for _ in range(n_shadow)])
    ensemble = train_ensemble(
        recipe, data.train, [seed + k for k in range(n_shadow)], subsets=halves, device=device, progress=progress
    )
    task = ClassificationTask(data.num_classes)
    target_set = subset(data.train, targets)
    target_y = labels_of(target_set)

    phi = torch.empty(n_shadow, n_targets, dtype=torch.float64)
    trained = torch.zeros(n_shadow, n_targets, dtype=torch.bool)
    forgotten = torch.zeros(n_shadow, n_targets, dtype=torch.bool)
    bar = progress_bar(n_shadow, f"U-LiRA {method}", progress)
    for k in range(n_shadow):
        half = halves[k]
        trained[k] = torch.isin(targets, half)
        in_half = torch.nonzero(trained[k]).flatten()
        chosen = in_half[torch.randperm(len(in_half), generator=g)[: max(1, len(in_half) // 2)]]
        forgotten[k, chosen] = True
        position = {int(i): p for p, i in enumerate(half.tolist())}  # dataset id -> position in H_k
        split = ForgetSplit.from_ids(len(half), [position[int(targets[t])] for t in chosen])
        shadow_train = subset(data.train, half)
        res = unlearn(
            ensemble.model(k),
            shadow_train,
            split,
            method=method,
            seed=seed + k,
            recipe=recipe,
            device=device,
            progress=False,
            **overrides,
        )
        phi[k] = logit_scaled_confidence(task.predict(res.model, target_set)[0], target_y)
        bar.update()
    bar.close()
    scores, labels = _leave_one_out_scores(phi, forgotten, ~trained, offline)
    if not (labels == 1).any() or not (labels == 0).any():
        # each target is forgotten in ~n_shadow/4 shadows and needs 2 others to fit its Gaussian
        raise ValueError(
            f"U-LiRA with n_shadow={n_shadow}: no target was forgotten (or never seen) in enough other shadows "
            "to fit its Gaussians; use n_shadow >= 16"
        )
    attack = threshold_attack(scores[labels == 1], scores[labels == 0])
    # balanced accuracy: positives (forgotten) and negatives (never seen) differ in number per shadow
    balanced = 0.5 * float((scores[labels == 1] > 0).mean() + (scores[labels == 0] <= 0).mean())
    acc = attack["best_acc"] if offline else balanced
    values = {
        "ulira_acc": acc,
        "ulira_auc": attack["auc"],
        "ulira_tpr@1%fpr": attack["tpr@1%fpr"],
        "ulira_tpr@0.1%fpr": attack["tpr@0.1%fpr"],
    }
    return Report(
        values,
        details={
            "scores": scores,
            "labels": labels,
            "method": method,
            "offline": offline,
            "n_shadow": n_shadow,
            "n_targets": n_targets,
        },
    )


def _gaussian_stats(phi: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-(held-out shadow, example) mean, variance and count of φ over the *other* shadows in ``mask``."""
    m = mask.double()
    s1, s2, c = (phi * m).sum(0), (phi * phi * m).sum(0), m.sum(0)
    s1_j, s2_j, c_j = s1 - phi * m, s2 - phi * phi * m, c - m  # leave shadow j out
    mean = s1_j / c_j.clamp_min(1)
    var = (s2_j - c_j * mean**2) / (c_j - 1).clamp_min(1)
    return mean, var, c_j


def _leave_one_out_scores(
    phi: torch.Tensor, in_mask: torch.Tensor, out_mask: torch.Tensor, offline: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Attack every shadow with Gaussians fitted on the others, vectorised over shadows and examples.

    Per-example variances come from few samples; they are floored at the pooled (global) variance
    of their family / 4, the stabilisation LiRA uses when shadows are scarce.
    """
    mu_in, var_in, c_in = _gaussian_stats(phi, in_mask)
    mu_out, var_out, c_out = _gaussian_stats(phi, out_mask)
    var_in = var_in.clamp_min(float(phi[in_mask].var()) / 4 + 1e-12)
    var_out = var_out.clamp_min(float(phi[out_mask].var()) / 4 + 1e-12)

    def log_normal(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x - mu) ** 2 / var + torch.log(2 * math.pi * var))

    if offline:
        score = (phi - mu_out) / var_out.sqrt()
        usable = c_out >= 2
    else:
        score = log_normal(phi, mu_in, var_in) - log_normal(phi, mu_out, var_out)
        usable = (c_in >= 2) & (c_out >= 2)
    pos, neg = in_mask & usable, out_mask & usable
    scores = torch.cat([score[pos], score[neg]]).numpy()
    labels = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
    return scores, labels
