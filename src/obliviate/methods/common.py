"""Pieces several methods share, written once: bounded ascent loss, paired retain/forget steps."""

from __future__ import annotations

import torch
from torch import nn

from .base import Context


def ascent_loss(losses: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Loss to *minimise* for gradient ascent on the forget set: ``-mean(min(loss_i, cap))``.

    Plain ascent (``cap=None``, the papers' form) is unbounded: once an example is forgotten its
    cross-entropy keeps growing and drives the model to constant outputs or NaN (measured in
    reference/calibration.md). Capping each example's loss zeroes its gradient once it is
    forgotten "enough" (p_y <= exp(-cap)), which makes ascent self-limiting.
    """
    if cap is not None:
        losses = losses.clamp(max=cap)
    return -losses.mean()


def forward_losses(model: nn.Module, ctx: Context, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device, return (logits, per-example losses)."""
    batch = ctx.task.to(batch, ctx.device)
    logits = ctx.task.logits(model, batch)
    return logits, ctx.task.losses(logits, batch)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, ctx: Context, where: str) -> None:
    """One guarded optimiser step (a non-finite loss raises before any weight changes)."""
    ctx.check_loss(loss, where)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
