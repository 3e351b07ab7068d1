"""``ob.tune``: a small seeded search over a method's declared hyper-parameter space, judged against
a *validation* oracle on the *validation* set, so test data and evaluation oracles stay unseen.

Why: unlearning methods' defaults either collapse the model or do nothing depending on the model
(reference/calibration.md: no single ascent lr works on both the digits MLP and the Fashion-MNIST
CNN). A grid of a few values of the 1-3 parameters that matter, tried from the same original,
fixes most of that at a few multiples of one unlearning run.

Search: the method's defaults first, then a seeded random sample (without replacement) of the
grid ``Method.search_space`` (or ``space=``) up to ``budget`` trials. Optuna's samplers gain little
on grids of 10-30 points, so it is not a dependency.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..data.datasets import Data
from ..data.splits import ForgetSplit
from ..io import read_json, write_json
from ..methods import unlearn
from ..methods.base import get
from ..metrics.catalogue import METRICS, Modality
from ..models.log import training_log
from ..objectives import Task
from ..train import Recipe, train
from ..utils import progress_bar
from .evaluate import evaluate, modality_of
from .oracles import validation_seed
from .report import Report


def _objective(name: str) -> Callable[[Report], float]:
    """The loss to minimise for one catalogue metric, read from its declared direction: −value
    (higher is better), value (lower), or the gap to its ideal (the oracle's value)."""
    spec = METRICS[name]
    return lambda r: spec.loss(r[name], (r.oracle or {}).get(name))


#: objective name -> loss to minimise from a report: every catalogue metric (composites are the usual choice)
OBJECTIVES: dict[str, Callable[[Report], float]] = {name: _objective(name) for name in METRICS}
#: what each modality's trials are judged on (the objective's metric is added when missing)
_METRICS = {
    Modality.CLASSIFICATION: ["forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap", "tow", "tow_mia"],
    Modality.CAUSAL_LM: ["forget_ma", "retain_ma", "test_ma", "avg_gap_ma"],
}
_DEFAULT_OBJECTIVE = {Modality.CLASSIFICATION: "avg_gap", Modality.CAUSAL_LM: "avg_gap_ma"}


@dataclasses.dataclass
class TuneResult:
    """The best hyper-parameters found and every trial (``trials``: one row per configuration,
    with the metrics it was judged on; ``val_acc`` is accuracy on the validation set)."""

    method: str
    objective: str
    best_params: dict[str, Any]
    best_score: float
    trials: pd.DataFrame
    seconds: float

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        payload = {k: getattr(self, k) for k in ("method", "objective", "best_params", "best_score", "seconds")}
        payload["trials"] = json.loads(self.trials.to_json(orient="records"))
        write_json(path, payload)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TuneResult:
        d = read_json(path)
        return cls(
            d["method"], d["objective"], d["best_params"], d["best_score"], pd.DataFrame(d["trials"]), d["seconds"]
        )


def candidates(space: dict[str, Sequence[Any]], defaults: dict[str, Any], budget: int, seed: int) -> list[dict]:
    """The defaults, then up to ``budget - 1`` distinct grid points in a seeded random order."""
    names = sorted(space)
    grid = [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]
    grid = [g for g in grid if any(g[n] != defaults.get(n) for n in names)]  # the defaults come first
    order = torch.randperm(len(grid), generator=torch.Generator().manual_seed(seed)).tolist()
    return [{}] + [grid[i] for i in order[: max(0, budget - 1)]]


def tune(
    method: str,
    data: Data,
    split: ForgetSplit,
    *,
    original: nn.Module | None = None,
    oracle: nn.Module | None = None,
    recipe: Recipe | None = None,
    budget: int = 8,
    objective: str | Callable[[Report], float] | None = None,
    space: dict[str, Sequence[Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    task: Task | None = None,
) -> TuneResult:
    """Search ``method``'s hyper-parameters for the unlearned model closest to a validation oracle.

    ``data.val`` is required (``data.with_validation()``): the objective's "test" rows are
    measured on it (for text data, γ too). ``original`` defaults to a model of ``recipe`` (default
    ``Recipe.default_for(data)``) trained with ``seed``; ``oracle`` to the recipe retrained on the
    retain set with the validation seed (:func:`~obliviate.evaluation.oracles.validation_seed`).
    ``objective``: a catalogue metric, optimised in its declared direction (``avg_gap`` by default
    for classifiers, ``avg_gap_ma`` for language models; ``tow``, ``forget_ma``, ...), or a function
    of the :class:`Report` returning a loss to minimise. ``fixed`` are overrides applied to every
    trial. Diverged runs are recorded but never chosen. ``task`` overrides the task adapter chosen
    from the data (as in ``ob.unlearn`` and ``ob.evaluate``).
    """
    if data.val is None:
        raise ValueError(
            "tune selects on a validation set so the test set stays unseen: "
            "pass data.with_validation() (it carves one out of the test set)"
        )
    if budget < 1:
        raise ValueError(f"budget must be >= 1 trial, got {budget}")
    modality = modality_of(data, task)
    objective = _DEFAULT_OBJECTIVE[modality] if objective is None else objective
    if isinstance(objective, str) and (objective not in METRICS or modality not in METRICS[objective].modalities):
        raise ValueError(
            f"unknown objective {objective!r} for {modality.value} models; use a metric of "
            f"ob.metrics.available({modality.value!r}) or a function"
        )
    score_of = OBJECTIVES[objective] if isinstance(objective, str) else objective
    judged = _METRICS[modality] + (
        [objective] if isinstance(objective, str) and objective not in _METRICS[modality] else []
    )
    cls = get(method)
    space = dict(cls.search_space if space is None else space)
    unknown = sorted(set(space) - {f.name for f in dataclasses.fields(cls.Params)})
    if unknown:
        raise ValueError(f"search space names unknown parameter(s) {unknown} of {method!r}")
    fixed = dict(fixed or {})
    start = time.perf_counter()
    if recipe is None:
        log = training_log(original) if original is not None else None
        recipe = Recipe.from_dict(log.recipe) if log is not None else Recipe.default_for(data)
    if original is None:
        original = train(recipe, data.train, seed=seed, device=device, progress=progress)
    if oracle is None:
        oracle = train(
            recipe, split.retain_set(data.train), seed=validation_seed(seed), device=device, progress=progress
        )
    selection = dataclasses.replace(data, test=data.val, val=None)  # "test" metrics read the val set
    defaults = dataclasses.asdict(cls(**fixed).params)
    rows, best, best_score = [], None, math.inf
    configs = candidates(space, defaults, budget, seed)
    bar = progress_bar(len(configs), f"tune {method}", progress)
    for config in configs:
        params = {**fixed, **config}
        result = unlearn(
            original,
            data.train,
            split,
            method=method,
            seed=seed,
            val=data.val,
            recipe=recipe,
            device=device,
            progress=False,
            task=task,
            **params,
        )
        report = evaluate(
            result,
            selection,
            split,
            oracle=oracle,
            metrics=judged,
            device=device,
            original=original if modality is Modality.CAUSAL_LM else None,
            task=task,
        )
        score = math.inf if result.diverged else float(score_of(report))
        measured = {k.replace("test_", "val_"): report[k] for k in judged if k in report}
        rows.append(
            {
                **{n: defaults[n] for n in space},
                **config,
                "score": score,
                "diverged": result.diverged,
                "seconds": result.seconds,
                **measured,
            }
        )
        if score < best_score:
            best, best_score = params, score
        bar.update()
        bar.set_postfix(best=f"{best_score:.4g}")
    bar.close()
    if best is None:
        raise RuntimeError(f"every {method} trial diverged; widen the search space towards smaller steps")
    full = {**defaults, **best}
    return TuneResult(
        method,
        objective if isinstance(objective, str) else getattr(objective, "__name__", "custom"),
        {k: full[k] for k in sorted({*space, *fixed})},
        best_score,
        pd.DataFrame(rows),
        time.perf_counter() - start,
    )
