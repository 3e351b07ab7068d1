"""Deletion requests that arrive one after another, each a predicate, each judged against its own oracle.

The learned-database setting (Kurmanji, E. Triantafillou, P. Triantafillou, SIGMOD 2024; reference
C7): requests like "everyone with a chronic-disease score above 40" arrive in sequence. Each step
unlearns the new rows from the model the previous step produced (not from the original), and is
compared with an oracle retrained on everything not deleted so far, so errors that accumulate
across steps show up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..data.datasets import Data, subset
from ..data.splits import ForgetSplit, table_of
from ..methods.unlearn import unlearn
from ..metrics.accuracy import accuracy
from ..objectives import ClassificationTask
from ..train.loop import train
from ..train.recipe import Recipe
from .evaluate import evaluate


def sequential_requests(
    original: nn.Module,
    data: Data,
    predicates: Sequence[str],
    *,
    method: str | Sequence[str] | dict = "finetune",
    recipe: Recipe | None = None,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    **params: Any,
) -> pd.DataFrame:
    """Apply SQL ``predicates`` (over ``data.train_table`` or ``id``/``label``/``x0..``) in order.

    Step k: the rows matching predicate k among those still present are unlearned with each
    ``method`` (a name, a list, or name -> parameters) from that method's step k−1 model; one oracle
    per step is trained on what remains and judges every method. One row per (step, method): rows
    deleted, the step's metrics against its oracle, accuracy on everything deleted so far for both,
    seconds for unlearning and for the oracle. Every predicate is checked before any work.
    """
    recipe = recipe or Recipe.default_for(data)
    plans = (
        {method: params}
        if isinstance(method, str)
        else dict(method)
        if isinstance(method, dict)
        else {m: params for m in method}
    )
    table = table_of(data.train, data.train_table)
    n = len(table)
    matches = []
    for k, pred in enumerate(predicates):  # all errors (syntax, unknown column, nothing matched) up front
        try:
            matches.append(ForgetSplit.where(table, pred).forget_ids)
        except ValueError as e:
            raise ValueError(f"request {k + 1}: {e}") from None
    alive = torch.ones(n, dtype=torch.bool)
    for k, (pred, ids) in enumerate(zip(predicates, matches)):  # sequence-level checks, still before work
        new = ids[alive[ids]]
        if len(new) == 0:
            raise ValueError(f"request {k + 1} ({pred!r}) matches only rows deleted by earlier requests")
        if len(new) == int(alive.sum()):
            raise ValueError(f"request {k + 1} ({pred!r}) would delete every remaining row")
        alive[new] = False
    task = ClassificationTask(data.num_classes)
    alive = torch.ones(n, dtype=torch.bool)
    models = {m: original for m in plans}
    rows = []
    for k, (pred, ids) in enumerate(zip(predicates, matches)):
        new = ids[alive[ids]]
        keep = torch.nonzero(alive).flatten()
        step_train = subset(data.train, keep)
        split = ForgetSplit(torch.searchsorted(keep, new), len(keep), kind=f"request{k + 1}")
        alive[new] = False
        start = time.perf_counter()
        oracle = train(
            recipe, subset(data.train, torch.nonzero(alive).flatten()), seed=seed + k, device=device, progress=False
        )
        oracle_s = time.perf_counter() - start
        step_data = Data(data.name, step_train, data.test, data.num_classes, data.input_shape, data.val)
        gone = subset(data.train, torch.nonzero(~alive).flatten())
        oracle_gone = accuracy(*task.predict(oracle, gone))
        cache: dict = {}
        for m, extra in plans.items():
            res = unlearn(
                models[m],
                step_train,
                split,
                method=m,
                seed=seed + k,
                recipe=recipe,
                device=device,
                progress=False,
                **extra,
            )
            report = evaluate(
                res, step_data, split, oracle=oracle, metrics=metrics, seed=seed, device=device, cache=cache
            )
            rows.append(
                {
                    "step": k + 1,
                    "method": m,
                    "predicate": pred,
                    "deleted": len(new),
                    "deleted_total": int((~alive).sum()),
                    "remaining": int(alive.sum()),
                    **report.values,
                    **{f"oracle_{name}": v for name, v in (report.oracle or {}).items()},
                    "all_deleted_acc": accuracy(*task.predict(res.model, gone)),
                    "oracle_all_deleted_acc": oracle_gone,
                    "unlearn_seconds": res.seconds,
                    "oracle_seconds": oracle_s,
                    "diverged": res.diverged,
                }
            )
            models[m] = res.model
    return pd.DataFrame(rows)
