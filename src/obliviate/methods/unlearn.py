"""``ob.unlearn``: validate, copy, run a registered method under a seed, guard, time, record."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from ..data.datasets import SizedDataset
from ..data.splits import ForgetSplit
from ..models.log import training_log
from ..objectives import CausalLMTask, DiffusionTask, Task, task_for
from ..train.loop import NonFiniteLoss
from ..train.recipe import Recipe
from ..utils import seeded
from .base import Context, Diverged, Method, OutOfBudget, frozen_copy, get
from .result import UnlearningResult


def unlearn(
    model: nn.Module,
    train: SizedDataset,
    split: ForgetSplit,
    method: str | Method = "scrub",
    *,
    seed: int = 0,
    val: SizedDataset | None = None,
    recipe: Recipe | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    task: Task | None = None,
    collapse_drop: float | None = 0.25,
    budget: float | None = None,
    inplace: bool = False,
    **overrides: Any,
) -> UnlearningResult:
    """Remove the effect of ``split``'s forget set from ``model`` (trained on ``train``).

    Returns an :class:`UnlearningResult`; the input model is never modified unless
    ``inplace=True``. ``overrides`` set the method's hyper-parameters (``epochs=3``, ``lr=...``).
    Inputs are validated before any work. A non-finite loss, or a retain-accuracy drop larger than
    ``collapse_drop`` (on a fixed 512-example probe; None disables it), stops the method and returns
    the last safe checkpoint with ``diverged=True``.
    ``budget`` (seconds) stops a training-based method after the first optimiser step past it and
    keeps the weights reached, with a note (``result.notes``).
    ``val`` is a held-out set (SCRUB+R); ``recipe`` the training recipe (``retrain``; by default the
    one recorded when obliviate trained the model).
    """
    if overrides and not isinstance(method, str):
        raise ValueError("pass hyper-parameters either in the Method instance or as overrides, not both")
    m = get(method)(**overrides) if isinstance(method, str) else method
    if not isinstance(split, ForgetSplit):
        raise TypeError(f"split must be a ForgetSplit, got {type(split).__name__}")
    if len(train) != split.n:
        raise ValueError(f"split was made for {split.n} training examples but train has {len(train)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    task = task or task_for(model, train)
    modality = "lm" if isinstance(task, CausalLMTask) else "classification"
    modality = "diffusion" if isinstance(task, DiffusionTask) else modality
    if modality not in m.modalities:
        raise ValueError(f"method {m.name!r} is written for {sorted(m.modalities)} models, not {modality}")
    if budget is not None and not budget > 0:
        raise ValueError(f"budget must be > 0 seconds, got {budget!r}")
    log = training_log(model)
    if recipe is None and log is not None:
        try:
            recipe = Recipe.from_dict(log.recipe)
        except ValueError:  # a custom model factory cannot be rebuilt from its name; retrain says so
            recipe = None

    start = time.perf_counter()
    # The training log describes the original, not the result, and may hold gigabytes of logged
    # updates: the memo maps it to None so deepcopy never copies it.
    work = model if inplace else copy.deepcopy(model, {id(log): None} if log is not None else None)
    work.__dict__.pop("obliviate_log", None)
    work.to(device)
    with seeded(seed, device) as generator:
        ctx = Context(
            task=task,
            train=train,
            split=split,
            retain=split.retain_set(train),
            forget=split.forget_set(train),
            original=frozen_copy(work),
            device=device,
            seed=seed,
            generator=generator,
            progress=progress,
            val=val,
            recipe=recipe,
            log=log,
            deadline=None if budget is None or not m.honours_budget else start + budget,
            collapse_drop=collapse_drop,
            check_every=25 if m.guard_steps else 0,
        )
        ctx.checkpoint(work)
        diverged = False
        try:
            out = m.run(work, ctx)
        except (NonFiniteLoss, Diverged) as e:
            diverged, out = True, work
            if ctx.safe_state is None:  # unreachable: ctx.checkpoint(work) ran before m.run
                raise RuntimeError("no safe checkpoint to roll back to") from e
            out.load_state_dict(ctx.safe_state)
            ctx.notes.append(f"stopped early and rolled back to the last safe checkpoint: {e}")
        except OutOfBudget as e:
            out = work
            ctx.notes.append(f"stopped early: {e} ({budget:g} s)")
    out.eval()
    return UnlearningResult(
        model=out,
        method=m.name,
        params=m.param_dict(),
        seconds=time.perf_counter() - start,
        seed=seed,
        split_hash=split.hash,
        history=ctx.history,
        diverged=diverged,
        notes=ctx.notes,
    )
