"""Pieces several methods share, written once: the epoch loop, bounded ascent loss, guarded steps."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..utils import progress_bar
from .base import Context, Params


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


def ascent_at(model: nn.Module, ctx: Context, batch, cap: float | None, weight: float = 1.0) -> torch.Tensor:
    """``weight * ascent_loss`` of a batch at the model's current weights: what a SAM step
    (:func:`sam_step`) recomputes at the perturbed point θ + ε."""
    return weight * ascent_loss(forward_losses(model, ctx, batch)[1], cap)


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


@dataclass(frozen=True)
class ForgetStepParams(Params):
    """How an ascent method takes its forget step; mixed into the Params of ``neggrad``, ``neggrad+``
    and every loop-driven LM method (``ga``, ``grad-diff``, ``npo``, ...).

    ``sam_rho``: the sharpness-aware forget step of Fan et al. (ICML 2025, "Towards LLM unlearning
    resilient to relearning attacks: a sharpness-aware minimization perspective", arXiv 2502.05374;
    code OPTML-Group/Unlearn-Smooth), see :func:`sam_step`. 0 (the default) is off and runs the
    method's plain step, bit for bit. The paper's ρ is 0.1 (WMDP) and 0.01 (MUSE) on 7B models;
    ρ is a distance in weight space measured with the global gradient norm, so re-tune it for
    small models.
    """

    sam_rho: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        rho = self.sam_rho
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (math.isfinite(rho) and rho >= 0):
            raise ValueError(f"sam_rho must be a finite number >= 0 (0 = off), got {rho!r}")


def sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    forget_loss: torch.Tensor,
    forget_again: Callable[[], torch.Tensor],
    rho: float,
    ctx: Context,
    where: str,
    grad_clip: float | None = None,
    retain_loss: torch.Tensor | None = None,
) -> None:
    """One guarded sharpness-aware step on ``forget_loss (+ retain_loss)`` (Fan et al. 2025, §4;
    ``Unlearn-Smooth`` ``WMDP/src/unlearn/base.py``):

    1. g_f = ∇ forget_loss at θ; ε = ρ · g_f / ‖g_f‖ (global norm over the optimiser's parameters);
    2. the forget loss again at θ + ε (``forget_again()`` recomputes it on the same batch);
    3. θ restored exactly (a saved copy, not θ + ε − ε, which rounds);
    4. the update uses ∇ forget_loss(θ + ε) + ∇ retain_loss(θ): only the forget side is smoothed.

    Why: a forget loss minimised at a sharp point is undone by a small fine-tune (relearning);
    minimising the worst forget loss within a ρ-ball seeks a flat region where nearby weights
    forget too. Cost: one extra forward/backward on the forget batch per step.

    ``forget_loss`` and ``retain_loss`` must come from separate forward passes at θ (the retain
    gradient is taken before θ moves). ``grad_clip`` clips the combined gradient, as :func:`step`.
    """
    ctx.check_loss(forget_loss if retain_loss is None else forget_loss + retain_loss, where)
    params = [q for group in optimizer.param_groups for q in group["params"] if q.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    grads = torch.autograd.grad(forget_loss, params, allow_unused=True)
    if retain_loss is not None:
        retain_loss.backward()
    used = [(q, g) for q, g in zip(params, grads) if g is not None]
    saved = [q.detach().clone() for q, _ in used]
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(g.float()) for _, g in used]
        scale = rho / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-12) if norms else 0.0
        for q, g in used:
            q.add_((g * scale).to(q.dtype))
    try:
        adversarial = forget_again()
        ctx.check_loss(adversarial, f"{where} (SAM point)")
        adversarial.backward()
    finally:
        with torch.no_grad():
            for (q, _), s in zip(used, saved):
                q.copy_(s)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    ctx.after_step(model)
