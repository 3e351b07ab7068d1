"""``task-vector``: negate the direction fine-tuning on D_f moves the weights (Ilharco et al. 2023)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, Method, correct_scores, register
from .base import Params as BaseParams
from .lm_common import STOPS, cycle, stop_met, threshold, trainable


def task_vector(
    model: nn.Module, ctx: Context, steps: int, lr: float, batch_size: int | None
) -> dict[str, torch.Tensor]:
    """τ = θ_ft − θ_0 after ``steps`` Adam steps of *descent* on D_f, which makes the model memorize
    the forget set even more; only floating-point parameters that require grad are included."""
    ft = copy.deepcopy(model)
    ft.eval()
    opt = torch.optim.Adam(trainable(ft, None), lr=lr, betas=(0.9, 0.98))
    n = len(ctx.forget)
    batches = cycle(ctx.task, ctx.forget, n if batch_size is None else min(batch_size, n), ctx.generator)
    for _ in range(steps):
        _, batch = next(batches)
        batch = ctx.task.to(batch, ctx.device)
        loss = ctx.task.losses(ctx.task.logits(ft, batch), batch).mean()
        ctx.check_loss(loss, "task-vector fine-tuning")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    base = dict(model.named_parameters())
    return {k: (v.detach() - base[k].detach()) for k, v in ft.named_parameters() if v.requires_grad}


@torch.no_grad()
def apply(model: nn.Module, theta0: dict[str, torch.Tensor], tau: dict[str, torch.Tensor], lam: float) -> None:
    params = dict(model.named_parameters())
    for k, t in tau.items():
        params[k].copy_(theta0[k] - lam * t)


@torch.no_grad()
def smallest_lambda(
    model: nn.Module,
    ctx: Context,
    tau: dict[str, torch.Tensor],
    gamma: float,
    rule: str,
    grid: tuple[float, ...],
    refine: int,
) -> tuple[float, bool, list[dict]]:
    """The smallest λ on ``grid`` whose θ_0 − λτ meets the stopping rule, refined by ``refine``
    bisection steps between it and the last grid value that failed; the model ends at that λ.
    Each trial costs one no-grad pass over D_f."""
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters() if k in tau}
    trials: list[dict] = []

    def ok(lam: float) -> bool:
        apply(model, theta0, tau, lam)
        s = correct_scores(model, ctx.task, ctx.forget, ctx.device)
        trials.append({"lambda": lam, "forget_ma_mean": float(s.mean()), "above_gamma": int((s > gamma).sum())})
        return stop_met(s, gamma, rule)

    lo, hi = 0.0, None
    for lam in grid:
        if ok(lam):
            hi = lam
            break
        lo = lam
    if hi is None:
        return grid[-1], False, trials
    for _ in range(refine):
        mid = (lo + hi) / 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    apply(model, theta0, tau, hi)
    return hi, True, trials


@register
class TaskVector(Method["TaskVector.Params"]):
    """Fine-tune a copy on D_f for ``ft_steps`` (Adam, ``lr``), take τ = θ_ft − θ_0 and return
    θ_0 − λτ with λ the smallest value meeting the stopping rule: c(D_f) = 0 (``stop="sequence"``,
    the reference's per-example tuning) or forget mean ≤ γ (``"aggregate"``); searched on ``grid``
    then bisected. ``lam`` fixes λ instead (MUSE's baseline). No ascent: the cost is the fine-tune
    plus one forward pass over D_f per trial. Reference A1.3 ("TA")."""

    name = "task-vector"
    modalities = frozenset({"classification", "lm"})
    listed = frozenset({"lm"})

    @dataclass(frozen=True)
    class Params(BaseParams):
        lr: float = 1e-3
        ft_steps: int = 10
        batch_size: int | None = None
        lam: float | None = None
        grid: tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
        refine: int = 4
        stop: str = "sequence"
        gamma: float | None = None
        gamma_stat: str = "mean"

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.stop not in STOPS[:2] and self.lam is None:
                raise ValueError(f"stop must be 'aggregate' or 'sequence' (or give lam); got {self.stop!r}")

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        if len(ctx.forget) == 0:
            raise ValueError("the forget set is empty")
        tau = task_vector(model, ctx, p.ft_steps, p.lr, p.batch_size)
        if p.lam is not None:
            apply(model, {k: v.detach().clone() for k, v in model.named_parameters()}, tau, p.lam)
            ctx.history.append({"lambda": p.lam})
            return model
        gamma = threshold(ctx, p)
        if gamma is None:  # unreachable: Params refuses stop="none" without lam
            raise ValueError(f"stop={p.stop!r} sets no threshold; give lam")
        lam, met, trials = smallest_lambda(model, ctx, tau, gamma, p.stop, p.grid, p.refine)
        ctx.history.extend(trials)
        ctx.history.append({"lambda": lam, "rule_met": met, "gamma": gamma})
        if not met:
            ctx.notes.append(f"task-vector: no λ up to {lam} met the {p.stop} rule; returned λ = {lam}")
        return model
