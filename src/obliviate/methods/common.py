"""Pieces several methods share, written once: the epoch loop, bounded ascent loss, guarded steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from ..utils import progress_bar
from .base import Context


def epochs(
    model: nn.Module,
    ctx: Context,
    n: int,
    desc: str,
    body: Callable[[int], Mapping[str, float]],
    *,
    first: int = 0,
    after: Callable[[int], None] | None = None,
) -> None:
    """The training-based methods' one epoch loop: for epochs ``first .. first + n - 1``, put the
    model in train mode (an eval-mode probe may have run in between), run ``body(epoch)`` (the
    method's passes, returning the epoch's metrics), hand those to ``ctx.end_epoch`` (history,
    divergence and collapse check, safe checkpoint), advance the progress bar, then call
    ``after(epoch)`` (SCRUB+R keeps its rewind candidates there)."""
    bar = progress_bar(n, desc, ctx.progress)
    try:
        for epoch in range(first, first + n):
            model.train()
            metrics = body(epoch)
            ctx.end_epoch(model, epoch, **metrics)
            bar.update()
            if after is not None:
                after(epoch)
    finally:
        bar.close()


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


def step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    ctx: Context,
    where: str,
    grad_clip: float | None = None,
) -> None:
    """One guarded optimiser step: a non-finite loss raises before any weight changes, gradients
    are norm-clipped when ``grad_clip`` is set, and the context's periodic collapse check runs.

    Clipping matters for ascent: near the original, an ascent direction grows exponentially at a
    rate set by the loss curvature (lr x sharpness); a bounded gradient makes the drift at most
    linear in the number of steps.
    """
    ctx.check_loss(loss, where)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    ctx.after_step(model)


def ascent_batch_size(n_forget: int, batch_size: int | None, steps: int = 10) -> int:
    """Forget-set batch size for ascent passes; ``None`` gives ~``steps`` steps per pass.

    Ascent drift grows with the number of ascent steps, not with |D_f|, so a fixed batch size makes
    one pass harmless on a 100-example forget set and destructive on a 6,000-example one. The
    papers' own settings give ~10 steps per pass (SCRUB's notebook: 4,500 examples at batch 512;
    its 100-example runs at batch 16), so the default keeps that number.
    """
    return batch_size if batch_size is not None else max(1, -(-n_forget // steps))
