"""What the diffusion-only methods (ESD, concept ablation) share: class-split validation and the
step-counted, stop-gradient regression loop they both run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..data.datasets import SizedDataset, labels_of
from ..models.diffusion import Denoiser
from ..objectives import Task
from ..objectives.diffusion import DiffusionTask
from ..utils import progress_bar
from .base import Context, Params
from .common import step

#: which parameters a diffusion method trains: the class-embedding table only (other classes' rows
#: get zero gradient, and Adam without weight decay leaves them bit-identical) or every weight
PARAM_SETS = ("class", "all")


@dataclass(frozen=True)
class DiffusionParams(Params):
    """Step-counted Adam fine-tuning of a denoiser (ESD and CA count iterations, not epochs)."""

    lr: float = 1e-3
    steps: int = 100
    batch_size: int = 32
    #: "class": only the class-embedding table (ESD-x's analogue: the conditioning path); "all"
    params: str = "all"
    #: weight of the ε-MSE on D_r batches added to every step (0: none)
    alpha: float = 1.0
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.steps, int) and self.steps >= 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.params not in PARAM_SETS:
            raise ValueError(f"params must be one of {PARAM_SETS}, got {self.params!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


def denoiser_of(model: nn.Module, ctx: Context, method: str) -> tuple[Denoiser, DiffusionTask]:
    if not isinstance(model, Denoiser) or not isinstance(ctx.task, DiffusionTask):
        raise ValueError(f"{method} unlearns class-conditional diffusion models (an obliviate Denoiser)")
    return model, ctx.task


def forgotten_classes(ctx: Context, method: str) -> list[int]:
    """The classes of D_f, which must be whole classes: none of them in D_r, and not all of D's."""
    forget = sorted(set(labels_of(ctx.forget).tolist()))
    retain = set(labels_of(ctx.retain).tolist())
    shared = sorted(set(forget) & retain)
    if shared:
        raise ValueError(
            f"{method} forgets whole classes, but the forget set's classes {shared} also occur in the retain "
            "set: use a class split (ForgetSplit.by_class)"
        )
    if not retain:
        raise ValueError(f"{method}: the forget set holds every class of the training data; nothing would be left")
    return forget


def trainable(model: Denoiser, which: str) -> list[nn.Parameter]:
    if which == "class":
        emb = model.unet.class_embedding
        assert emb is not None  # a conditional denoiser (checked by the task)
        return [emb.weight]
    return list(model.parameters())


def cycle(task: Task, dataset: SizedDataset, batch_size: int, generator: torch.Generator) -> Iterator:
    """Shuffled, seeded (x, y, t, ε, ref) batches forever."""
    while True:
        for _, batch in task.batches(dataset, batch_size, shuffle=True, generator=generator):
            yield batch


def regress(
    model: Denoiser,
    ctx: Context,
    p: DiffusionParams,
    source: SizedDataset,
    target: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    name: str,
) -> None:
    """``p.steps`` Adam steps of MSE(ε_θ(x_t, y′), target) on batches of ``source`` (+ α · ε-MSE on D_r).

    ``target(x_t, t, y)`` returns the labels y′ the model is queried under and the (gradient-free)
    target noise; x_t is built from the batch's own seeded t and ε.
    """
    task = ctx.task
    params = trainable(model, p.params)
    chosen = {id(q) for q in params}
    flags = [(q, q.requires_grad) for q in model.parameters()]
    for q in model.parameters():  # gradients (and their clipping norm) only where the optimiser steps
        q.requires_grad_(id(q) in chosen)
    opt = torch.optim.Adam(params, lr=p.lr)
    batches = cycle(task, source, p.batch_size, ctx.generator)
    retain = cycle(task, ctx.retain, p.batch_size, ctx.generator) if p.alpha > 0 else None
    bar = progress_bar(p.steps, name, ctx.progress)
    model.train()
    total = r_total = 0.0
    try:
        for _ in range(p.steps):
            x, y, t, noise, _ = task.to(next(batches), ctx.device)
            x_t = model.noisy(model.encode(x), t, noise)
            with torch.no_grad():
                labels, goal = target(x_t, t, y)
            loss = (model(x_t, t, labels) - goal).pow(2).mean()
            total += float(loss.detach())
            if retain is not None:
                r = task.to(next(retain), ctx.device)
                r_loss = task.losses(task.logits(model, r), r).mean()
                r_total += float(r_loss.detach())
                loss = loss + p.alpha * r_loss
            step(model, opt, loss, ctx, name, p.grad_clip)
            bar.update()
    finally:
        bar.close()
        for q, flag in flags:
            q.requires_grad_(flag)
    ctx.end_epoch(model, 0, forget_loss=total / p.steps, retain_loss=r_total / p.steps)
