"""``ob.detect``: find the training examples worth forgetting — wrong labels and memorized outliers.

Unlearning needs a forget set; often nobody knows it. Two signals, each from data the model did not
fit to the example itself:

* **label issues** — cleanlab's confident learning on *out-of-sample* predicted probabilities from
  K-fold cross-validation (the K fold models train as one vectorised ensemble);
* **outliers** — examples the model only fits by memorizing them: the highest memorization scores
  (any ``ob.evaluation.memorization`` score, or by default the learning-event proxy of a model
  trained by ``ob.train``).

The result is a ranked table with a one-line explanation per example; ``.ids`` goes straight into
``ForgetSplit.from_ids``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data.datasets import ArrayDataset, SizedDataset, labels_of
from ..data.splits import ForgetSplit
from ..train.ensemble import train_ensemble
from ..train.recipe import Recipe

if TYPE_CHECKING:
    from ..data.datasets import Data


@dataclass
class Detection:
    """Ranked findings: one row per flagged example, most suspicious first."""

    table: pd.DataFrame  # id, kind, score, given_label, suggested_label, label_quality, memorization, why
    probs: np.ndarray  # [N, C] out-of-sample predicted probabilities

    @property
    def ids(self) -> torch.Tensor:
        return torch.tensor(self.table["id"].to_numpy(dtype=np.int64))

    def split(self, dataset: SizedDataset | int) -> ForgetSplit:
        return ForgetSplit.from_ids(dataset, self.ids)

    def save(self, path: str | Path) -> None:
        """CSV of the table (ids first, so ``cut -d, -f1`` gives an id list)."""
        from ..io import atomic_write_text

        atomic_write_text(Path(path), self.table.to_csv(index=False))

    def __len__(self) -> int:
        return len(self.table)


def out_of_sample_probs(
    recipe: Recipe,
    dataset: SizedDataset,
    *,
    folds: int = 5,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """[N, C] probabilities, each from the fold model that did not train on that example."""
    n = len(dataset)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = [torch.as_tensor(p) for p in np.array_split(order.numpy(), folds)]
    m = n - max(len(p) for p in parts)  # equal-sized training sets, as a stacked ensemble needs
    subsets = torch.stack(
        [torch.cat([q for j, q in enumerate(parts) if j != k])[:m].sort().values for k in range(folds)]
    )
    ens = train_ensemble(
        recipe, dataset, [seed * 7919 + k for k in range(folds)], subsets=subsets, device=device, progress=progress
    )
    logits = ens.predict(dataset)  # [K, N, C]
    probs = torch.empty(n, logits.shape[-1])
    for k, part in enumerate(parts):
        probs[part] = logits[k, part].softmax(-1)
    return probs.double().numpy()


def detect(
    dataset: SizedDataset,
    recipe: Recipe,
    *,
    model: nn.Module | None = None,
    memorization: np.ndarray | None = None,
    folds: int = 5,
    outlier_fraction: float = 0.01,
    label_issues: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> Detection:
    """Rank label issues (cleanlab, cross-validated) and memorized outliers of ``dataset``.

    ``memorization`` (one score per example, higher = more memorized) or ``model`` (trained by
    ``ob.train``: its learning-event confidence proxy) give the outlier signal; the top
    ``outlier_fraction`` not already flagged as label issues are reported as outliers.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = labels_of(dataset).numpy()
    n = len(y)
    if memorization is None and model is not None:
        from .memorization import learning_event_proxy

        memorization = learning_event_proxy(model).numpy()
    if memorization is not None:
        memorization = np.asarray(memorization, dtype=float)
        if memorization.shape != (n,):
            raise ValueError(
                f"memorization must have one score per example: got shape {memorization.shape}, "
                f"the dataset has {n} examples"
            )
    if not 0 <= outlier_fraction < 1:
        raise ValueError(f"outlier_fraction must be in [0, 1), got {outlier_fraction}")
    probs = out_of_sample_probs(recipe, dataset, folds=folds, seed=seed, device=device, progress=progress)
    quality = get_label_quality_scores(y, probs)
    suggested = probs.argmax(1)
    flagged = (
        find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
        if label_issues
        else np.array([], dtype=int)
    )
    rows = [
        {
            "id": int(i),
            "kind": "label issue",
            "score": float(1 - quality[i]),
            "given_label": int(y[i]),
            "suggested_label": int(suggested[i]),
            "label_quality": float(quality[i]),
            "why": f"given {y[i]}, out-of-sample model says {suggested[i]} (p={probs[i, suggested[i]]:.2f}; "
            f"p(given)={probs[i, y[i]]:.2f})",
        }
        for i in flagged
    ]
    if memorization is not None and outlier_fraction > 0:
        top = np.argsort(-memorization, kind="stable")
        taken = set(flagged.tolist())
        k = int(round(outlier_fraction * n))
        extra = [int(i) for i in top if int(i) not in taken][:k]
        rows += [
            {
                "id": i,
                "kind": "outlier",
                "score": float(memorization[i]),
                "given_label": int(y[i]),
                "suggested_label": int(suggested[i]),
                "label_quality": float(quality[i]),
                "why": f"memorization score {memorization[i]:.2f} (top {100 * outlier_fraction:g}%); label "
                f"{'agrees' if suggested[i] == y[i] else 'disagrees'} with out-of-sample model",
            }
            for i in extra
        ]
    table = pd.DataFrame(
        rows, columns=["id", "kind", "score", "given_label", "suggested_label", "label_quality", "why"]
    )
    if memorization is not None:
        table.insert(6, "memorization", memorization[table["id"].to_numpy(dtype=int)] if len(table) else [])
    return Detection(table.reset_index(drop=True), probs)


def inject_label_noise(
    dataset: SizedDataset, fraction: float, num_classes: int, seed: int = 0
) -> tuple[SizedDataset, torch.Tensor]:
    """A copy of an ``ArrayDataset`` with ``fraction`` of its labels flipped to another class
    uniformly at random (symmetric noise), and the flipped ids: the ground truth for detection."""
    if not isinstance(dataset, ArrayDataset):
        raise TypeError("inject_label_noise needs an ArrayDataset")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    g = torch.Generator().manual_seed(seed)
    n = len(dataset)
    ids = torch.randperm(n, generator=g)[: round(fraction * n)].sort().values
    y = dataset.y.clone()
    y[ids] = (y[ids] + torch.randint(1, num_classes, (len(ids),), generator=g)) % num_classes
    return ArrayDataset(dataset.x, y), ids


def detect_and_unlearn(
    data: Data,
    recipe: Recipe,
    *,
    noise: float = 0.05,
    method: str = "finetune",
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    **params,
) -> dict:
    """The detect -> unlearn -> prove loop on data with injected symmetric label noise.

    Trains an original on the noisy labels, detects label issues, unlearns the detected set with
    ``method`` and compares test accuracy with the original's, an oracle retrained without the
    injected examples, and a model trained on the clean labels. Returns the figures (fractions).
    """
    import time

    from ..methods.unlearn import unlearn
    from ..metrics.accuracy import accuracy
    from ..objectives import ClassificationTask
    from ..train.loop import train

    task = ClassificationTask(data.num_classes)

    def test_acc(model: nn.Module) -> float:
        return accuracy(*task.predict(model, data.test))

    noisy, injected = inject_label_noise(data.train, noise, data.num_classes, seed=seed)
    original = train(recipe, noisy, seed=seed, device=device, progress=progress)
    t0 = time.perf_counter()
    found = detect(noisy, recipe, seed=seed, device=device, progress=progress)
    detect_s = time.perf_counter() - t0
    issues = found.table[found.table.kind == "label issue"]
    hit = np.isin(issues["id"].to_numpy(), injected.numpy())
    split = ForgetSplit.from_ids(noisy, issues["id"].to_numpy())
    res = unlearn(
        original, noisy, split, method=method, seed=seed, recipe=recipe, device=device, progress=progress, **params
    )
    oracle = train(
        recipe, ForgetSplit.from_ids(noisy, injected).retain_set(noisy), seed=seed, device=device, progress=progress
    )
    clean = train(recipe, data.train, seed=seed, device=device, progress=progress)
    return {
        "noise": noise,
        "injected": len(injected),
        "flagged": len(issues),
        "precision": float(hit.mean()) if len(hit) else 0.0,
        "recall": float(hit.sum() / len(injected)),
        "test_original": test_acc(original),
        "test_unlearned": test_acc(res.model),
        "test_oracle": test_acc(oracle),
        "test_clean": test_acc(clean),
        "method": method,
        "params": res.params,
        "unlearn_seconds": res.seconds,
        "detect_seconds": detect_s,
        "train_seconds": training_seconds(original),
        "diverged": res.diverged,
    }


def training_seconds(model: nn.Module) -> float:
    from ..models.log import training_log

    log = training_log(model)
    return float(log.seconds) if log is not None else float("nan")
