"""``random-label``: train the forget set towards random labels, then repair on the retain set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, Method, OptimParams, register
from .common import epochs, forward_losses, step


@register
class RandomLabel(Method["RandomLabel.Params"]):
    """Each epoch: one pass over D_f with labels drawn uniformly over all classes (the true label
    is not excluded), minimising CE, then one pass over D_r with true labels (SalUn's ``RL.py``;
    reference §3.4). Papers: lr 0.01-0.1, 10 epochs of a 160-epoch schedule. Default SGD lr 3e-3,
    1 epoch: measured, it forgets a class on digits and Fashion-MNIST with test within 1 point;
    on random Fashion-MNIST forget sets it over-forgets (test -3 points), where lr 0.01 with
    ``grad_clip=1`` matched the oracle within 1.3 points.
    """

    name = "random-label"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    search_space = {"lr": (1e-3, 3e-3, 1e-2), "epochs": (1, 2)}
    guard_steps = False  # the forget pass degrades the model by design; the retain pass repairs it

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 3e-3
        epochs: int = 1

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        random_label_epochs(model, ctx, self.params.make_optimizer(model), self.params, self.name)
        return model


def random_label_epochs(model: nn.Module, ctx: Context, opt: torch.optim.Optimizer, p: OptimParams, name: str) -> None:
    """``random-label``'s loop (reference §3.4): each epoch one pass over D_f with uniformly random
    labels, then one pass over D_r with true labels; every step through :func:`common.step`."""

    def epoch(_epoch: int) -> dict[str, float]:
        f_total = r_total = 0.0
        for _, batch in ctx.task.batches(ctx.forget, p.batch_size, shuffle=True, generator=ctx.generator):
            _, losses = forward_losses(model, ctx, ctx.task.relabel(batch, ctx.generator))
            step(model, opt, losses.mean(), ctx, f"{name} forget pass", p.grad_clip)
            f_total += float(losses.detach().sum())
        for _, batch in ctx.task.batches(ctx.retain, p.batch_size, shuffle=True, generator=ctx.generator):
            _, losses = forward_losses(model, ctx, batch)
            step(model, opt, losses.mean(), ctx, f"{name} retain pass", p.grad_clip)
            r_total += float(losses.detach().sum())
        return {"forget_loss": f_total / len(ctx.forget), "retain_loss": r_total / len(ctx.retain)}

    epochs(model, ctx, p.epochs, name, epoch)
