"""Pieces several methods share, written once: the epoch loop, bounded ascent loss, guarded steps."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.loading import endless_batches
from ..train.memorization import learning_event_proxy
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


def retain_probe(model: nn.Module, ctx: Context, batch_size: int) -> Callable[[], torch.Tensor]:
    """A callable giving the mean loss of the next retain batch at the model's current weights: the
    retain direction GRU's projection (:func:`forget_step`) steers by in methods without a retain term."""
    batches = endless_batches(ctx.retain, batch_size, ctx.generator)
    return lambda: forward_losses(model, ctx, next(batches)[1])[1].mean()


def ascent_at(model: nn.Module, ctx: Context, batch, cap: float | None, weight: float = 1.0) -> torch.Tensor:
    """``weight * ascent_loss`` of a batch at the model's current weights: what a SAM step
    (:func:`forget_step`) recomputes at the perturbed point θ + ε."""
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
    and every loop-driven LM method (``ga``, ``grad-diff``, ``npo``, ...). Both options are off by
    default, and then the method's plain step runs, bit for bit. See :func:`forget_step`.

    ``sam_rho``: the sharpness-aware forget step of Fan et al. (ICML 2025, "Towards LLM unlearning
    resilient to relearning attacks: a sharpness-aware minimization perspective", arXiv 2502.05374;
    code OPTML-Group/Unlearn-Smooth). The paper's ρ is 0.1 (WMDP) and 0.01 (MUSE) on 7B models;
    ρ is a distance in weight space measured with the global gradient norm, so re-tune it for
    small models.

    ``grad_projection``: GRU's retain-preserving projection (Wang et al. 2025, "GRU: mitigating the
    trade-off between unlearning and retention", arXiv 2503.09117; OpenUnlearning PR #83, not
    merged), the EMA weight γ of the retain gradient (the paper's 0.8; search {0.8, 0.9, 0.95});
    0 is off.
    """

    sam_rho: float = 0.0
    grad_projection: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        rho = self.sam_rho
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (math.isfinite(rho) and rho >= 0):
            raise ValueError(f"sam_rho must be a finite number >= 0 (0 = off), got {rho!r}")
        g = self.grad_projection
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= 1:
            raise ValueError(f"grad_projection must be an EMA weight in (0, 1] (0 = off), got {g!r}")


def forget_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    p: ForgetStepParams,
    ctx: Context,
    where: str,
    forget_loss: torch.Tensor,
    *,
    forget_again: Callable[[], torch.Tensor] | None = None,
    retain_loss: torch.Tensor | None = None,
    retain_probe: Callable[[], torch.Tensor] | None = None,
    grad_clip: float | None = None,
) -> None:
    """One guarded step on ``forget_loss (+ retain_loss)``; with neither option of ``p`` set, exactly
    :func:`step`. ``forget_loss`` and ``retain_loss`` come from separate forward passes at θ.

    ``p.sam_rho > 0`` (Fan et al. 2025, §4; ``Unlearn-Smooth`` ``WMDP/src/unlearn/base.py``):
    g_f = ∇ forget_loss at θ; ε = ρ · g_f / ‖g_f‖ (global norm over the optimiser's parameters);
    ``forget_again()`` recomputes the forget loss on the same batch at θ + ε, and its gradient
    replaces g_f; θ is restored exactly (a saved copy, not θ + ε − ε, which rounds). Why: a forget
    loss minimised at a sharp point is undone by a small fine-tune (relearning); minimising the worst
    forget loss within a ρ-ball seeks a flat region where nearby weights forget too. Cost: one extra
    forward/backward on the forget batch.

    ``p.grad_projection = γ > 0`` (GRU): the retain gradient g_r (of ``retain_loss``, or of
    ``retain_probe()`` on a retain batch for methods without a retain term) is kept as an EMA
    g̃_r ← γ·g_r + (1−γ)·g̃_r in ``ctx.state``; when ⟨g_f, g̃_r⟩ < 0 the forget gradient loses its
    component along g̃_r, g_f ← g_f − (⟨g_f, g̃_r⟩/‖g̃_r‖²)·g̃_r, so the forget step does not, to
    first order, raise the retain loss. The update is the projected g_f, plus g_r only where the
    method has a retain term (a probe only steers). Cost: one retain forward/backward per step for
    methods without a retain term.

    ``grad_clip`` clips the combined gradient, as :func:`step`.
    """
    if not p.sam_rho and not p.grad_projection:
        step(model, optimizer, forget_loss if retain_loss is None else forget_loss + retain_loss, ctx, where, grad_clip)
        return
    ctx.check_loss(forget_loss if retain_loss is None else forget_loss + retain_loss, where)
    params = [q for group in optimizer.param_groups for q in group["params"] if q.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    g_f: list[torch.Tensor | None] = list(torch.autograd.grad(forget_loss, params, allow_unused=True))
    g_r: list[torch.Tensor | None] | None = None
    if retain_loss is not None:
        g_r = list(torch.autograd.grad(retain_loss, params, allow_unused=True))
    elif p.grad_projection:
        if retain_probe is None:
            raise ValueError(f"{where}: grad_projection needs the retain set's gradient (no retain probe given)")
        probe = retain_probe()
        ctx.check_loss(probe, f"{where} (retain probe)")
        g_r = list(torch.autograd.grad(probe, params, allow_unused=True))
    if p.sam_rho:
        if forget_again is None:
            raise ValueError(f"{where}: sam_rho needs the forget loss recomputed at the perturbed point")
        g_f = _at_sam_point(params, g_f, forget_again, p.sam_rho, ctx, where)
    if p.grad_projection:
        assert g_r is not None
        g_f = _project(params, g_f, g_r, p.grad_projection, ctx)
    applied = [g_f] if retain_loss is None else [g_f, g_r]
    with torch.no_grad():
        for i, q in enumerate(params):
            parts = [t for g in applied if g is not None and (t := g[i]) is not None]
            q.grad = sum(parts[1:], parts[0]) if parts else None
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    ctx.after_step(model)


def _at_sam_point(
    params: list[torch.Tensor],
    g_f: list[torch.Tensor | None],
    forget_again: Callable[[], torch.Tensor],
    rho: float,
    ctx: Context,
    where: str,
) -> list[torch.Tensor | None]:
    """The forget gradient at θ + ρ·g_f/‖g_f‖ (θ restored exactly afterwards)."""
    used = [(q, g) for q, g in zip(params, g_f) if g is not None]
    saved = [q.detach().clone() for q, _ in used]
    with torch.no_grad():
        norms = [torch.linalg.vector_norm(g.float()) for _, g in used]
        scale = rho / (torch.linalg.vector_norm(torch.stack(norms)) + 1e-12) if norms else 0.0
        for q, g in used:
            q.add_((g * scale).to(q.dtype))
    try:
        adversarial = forget_again()
        ctx.check_loss(adversarial, f"{where} (SAM point)")
        return list(torch.autograd.grad(adversarial, params, allow_unused=True))
    finally:
        with torch.no_grad():
            for (q, _), s in zip(used, saved):
                q.copy_(s)


def _project(
    params: list[torch.Tensor],
    g_f: list[torch.Tensor | None],
    g_r: list[torch.Tensor | None],
    gamma: float,
    ctx: Context,
) -> list[torch.Tensor | None]:
    """GRU's projection of g_f against the EMA of g_r (kept per run in ``ctx.state["gru_ema"]``)."""
    flat_r = torch.cat([(g if g is not None else torch.zeros_like(q)).flatten().float() for q, g in zip(params, g_r)])
    ema = ctx.state.get("gru_ema")
    ema = flat_r if ema is None else gamma * flat_r + (1 - gamma) * ema
    ctx.state["gru_ema"] = ema
    flat_f = torch.cat([(g if g is not None else torch.zeros_like(q)).flatten().float() for q, g in zip(params, g_f)])
    dot, sq = torch.dot(flat_f, ema), torch.dot(ema, ema)
    ctx.state["gru_projected"] = ctx.state.get("gru_projected", 0) + int(dot < 0)
    if dot >= 0 or sq <= 0:
        return g_f
    flat_f = flat_f - (dot / sq) * ema
    out: list[torch.Tensor | None] = []
    offset = 0
    for q, g in zip(params, g_f):
        part = flat_f[offset : offset + q.numel()]
        out.append(None if g is None and not part.any() else part.view_as(q).to(q.dtype))
        offset += q.numel()
    return out


def memorization_scores(ctx: Context, scores: Sequence[float] | None, proxy: str, who: str) -> torch.Tensor:
    """[N] float64 memorization score per training row (higher = more memorized): ``scores=`` as given,
    else the original's training-log proxy (``proxy``). Either must describe the rows as they are now
    and be finite; ``who`` names the method in the errors (RUM and heldout-distill read them)."""
    if scores is not None:
        s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        if s.shape != (ctx.split.n,):
            raise ValueError(
                f"scores must have one value per training example: got {tuple(s.shape)}, "
                f"the training set has {ctx.split.n}"
            )
    elif ctx.log is None:
        raise ValueError(
            f"{who} needs memorization scores: pass scores=, or an original trained by ob.train "
            "(its training log holds the learning-event proxies)"
        )
    else:
        s = learning_event_proxy(ctx.log, proxy).double()
        if s.shape != (ctx.split.n,):
            raise ValueError(
                f"the training log describes {len(s)} rows, the training set has {ctx.split.n} "
                "(rows removed since training?): pass scores= for the rows as they are now"
            )
    if not torch.isfinite(s).all():
        raise ValueError("memorization scores must be finite")
    return s
