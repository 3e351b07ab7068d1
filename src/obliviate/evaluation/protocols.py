"""Evaluation protocols that re-run a method and train many oracles (reference §4.3-4.4)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.datasets import Data, labels_of
from ..data.splits import ForgetSplit
from ..methods.unlearn import unlearn
from ..metrics.accuracy import accuracy
from ..metrics.neurips23 import logit_scaled_confidence, neurips23_final_score, neurips23_score
from ..models.log import training_log
from ..objectives import ClassificationTask
from ..train.ensemble import train_ensemble
from ..train.recipe import Recipe
from ..utils import cached, progress_bar
from .oracles import ensemble_seeds
from .report import Report, split_views

# Oracles use ensemble seeds, unlearning runs seeds i: the two families never share a seed, so
# retrain-as-the-method is compared with *other* retrains (the estimator's ceiling).


def neurips23(
    original: nn.Module,
    data: Data,
    split: ForgetSplit,
    *,
    method: str,
    n_models: int = 32,
    seed: int = 0,
    recipe: Recipe | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    cache: dict | None = None,
    **overrides: Any,
) -> Report:
    """The NeurIPS 2023 competition protocol at ``n_models`` (the competition used 512).

    Trains ``n_models`` oracles on D_r as one vectorised ensemble, runs ``method`` ``n_models``
    times from the same original with seeds ``seed + i``, and computes per forget example the
    logit-scaled confidence of every model; the forgetting quality F (and per-example ε) comes
    from :func:`~obliviate.metrics.neurips23_score`, the final score is
    F x RA_U/RA_R x TA_U/TA_R with mean accuracies over the runs. ``report.details`` holds
    ``epsilons`` [examples] and the confidence arrays. ``cache``: a dict kept across calls that
    score several methods against the same oracles (same data, recipe, split, seed and ``n_models``); the
    ensemble is then trained once, and ``details["oracle_seconds"]`` is its one training time.
    """
    if n_models < 2:
        raise ValueError(f"n_models must be >= 2, got {n_models}")
    if recipe is None:
        log = training_log(original)
        if log is None:
            raise ValueError("pass recipe= (the original's training recipe) to train the oracles")
        recipe = Recipe.from_dict(log.recipe)
    views = split_views(data, split)
    task = ClassificationTask(data.num_classes)
    forget_y, retain_y, test_y = (labels_of(views[v]) for v in ("forget", "retain", "test"))

    def oracles() -> tuple[torch.Tensor, float, float, float]:
        start = time.perf_counter()
        ensemble = train_ensemble(
            recipe, views["retain"], ensemble_seeds(seed, n_models), device=device, progress=progress
        )
        seconds = time.perf_counter() - start
        conf = logit_scaled_confidence(ensemble.predict(views["forget"]), forget_y)
        ra = accuracy(ensemble.predict(views["retain"]), retain_y)  # [K, N, C] vs [N]: mean over members
        return conf, ra, accuracy(ensemble.predict(views["test"]), test_y), seconds

    key = ("neurips23", id(data.train), json.dumps(recipe.to_dict(), sort_keys=True), split.hash, seed, n_models)
    oracle_conf, ra_r, ta_r, oracle_seconds = cached(cache, key, data.train, oracles)

    conf, ra_u, ta_u, seconds = [], [], [], []
    bar = progress_bar(n_models, f"{method} x{n_models}", progress)
    for i in range(n_models):
        res = unlearn(
            original,
            data.train,
            split,
            method=method,
            seed=seed + i,
            val=data.val,
            recipe=recipe,
            device=device,
            progress=False,
            **overrides,
        )
        seconds.append(res.seconds)
        conf.append(logit_scaled_confidence(task.predict(res.model, views["forget"])[0], forget_y))
        ra_u.append(accuracy(*task.predict(res.model, views["retain"])))
        ta_u.append(accuracy(*task.predict(res.model, views["test"])))
        bar.update()
    bar.close()
    unlearned_conf = torch.stack(conf)
    forget_quality, eps = neurips23_score(unlearned_conf, oracle_conf)
    values = {
        "forget_quality": forget_quality,
        "neurips23_score": float(
            neurips23_final_score(forget_quality, float(np.mean(ra_u)), ra_r, float(np.mean(ta_u)), ta_r)
        ),
        "retain_acc": float(np.mean(ra_u)),
        "test_acc": float(np.mean(ta_u)),
        "seconds": float(np.mean(seconds)),
    }
    details = {
        "epsilons": eps,
        "unlearned_confidences": unlearned_conf.numpy(),
        "oracle_confidences": oracle_conf.numpy(),
        "n_models": n_models,
        "oracle_seconds": oracle_seconds,
        "method": method,
    }
    return Report(values, {"retain_acc": ra_r, "test_acc": ta_r}, details=details)
