"""``tau``: selective ascent, then task arithmetic (Barbulescu & Triantafillou, ICML 2024), as released.

Released code: github.com/GeorgeOctavian/selective_unlearning, ``llmu-py/llmu/interfaces/gpt_neo_av.py``
(``NeoAV``: ``training_step``, the switch in ``validation_epoch_end``, the edit in
``artm_edit_before_val``) run with ``experiments/configs/tau_config/config_13b_16_0.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from .base import Context, register
from .lm_common import LMParams, threshold
from .sga import SGA
from .task_vector import TaskVector, apply, smallest_lambda, task_vector

ORDERS = ("released", "ta-sga", "sga-ta")


@register
class TAU(SGA):
    """``order="released"`` (default): SGA as released (``sga.py``, same defaults) until the forget
    set's mean MA, refreshed each epoch, is below ``first_threshold`` (0.5). The weights then, θ_s,
    are kept and training turns to gradient *descent* on every forget row (same optimiser and
    batches), re-memorizing D_f: θ − θ_s is a task vector. From then on each refresh scores
    θ_s + ``first_coef``·(θ − θ_s) (−1: the vector negated); the run stops once that model's mean MA
    is below 0.33 and returns it. The release restores the fine-tuned θ after every validation, the
    last one too, but reports the edited model's metrics: the edited model is what is returned here.

    ``order="ta-sga"`` / ``"sga-ta"``: obliviate's pipelines (not in the release), γ calibrated on
    ``val``: negate a task vector fine-tuned from the original (``ft_steps``, ``ft_lr``) with the
    smallest λ bringing the forget set's mean MA to γ, then per-sequence SGA until c(D_f) = 0; or
    per-sequence SGA first, then the smallest λ giving c(D_f) = 0."""

    name = "tau"

    @dataclass(frozen=True)
    class Params(SGA.Params):
        order: str = "released"
        first_threshold: float = 0.5
        first_coef: float = -1.0
        ft_steps: int = 10
        ft_lr: float = 1e-3
        grid: tuple[float, ...] = TaskVector.Params.grid
        refine: int = 4

        def released(self) -> bool:
            return self.order == "released" and super().released()

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.order not in ORDERS:
                raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
            if self.order == "released" and (self.first_coef >= 0 or self.refresh != "epoch"):
                raise ValueError("order='released' needs first_coef < 0 and refresh='epoch'")

    params: TAU.Params  # narrows GA's LMParams

    def setup(self, model: nn.Module, ctx: Context) -> None:
        ctx.state["switched"] = None  # θ_s, once ascent gave way to task arithmetic

    def active(self, scores: torch.Tensor, ctx: Context) -> torch.Tensor:
        if ctx.state["switched"] is None:
            return super().active(scores, ctx)
        return torch.ones_like(scores, dtype=torch.bool)

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        nll = ctx.task.losses(logits, batch)
        return -nll if ctx.state["switched"] is None else nll

    @torch.no_grad()
    def _edit(self, model: nn.Module, ctx: Context) -> dict[str, torch.Tensor]:
        """Write θ_s + first_coef·(θ − θ_s) into ``model``; returns θ."""
        theta_s, coef = ctx.state["switched"], self.params.first_coef
        assert theta_s is not None
        live = {k: q.detach().clone() for k, q in model.named_parameters() if k in theta_s}
        apply(model, theta_s, {k: v - theta_s[k] for k, v in live.items()}, -coef)
        return live

    def forget_scores(self, model: nn.Module, ctx: Context) -> torch.Tensor:
        if ctx.state["switched"] is None:
            scores = super().forget_scores(model, ctx)
            if float(scores.mean()) < self.params.first_threshold:
                ctx.state["switched"] = {k: q.detach().clone() for k, q in model.named_parameters()}
                ctx.history.append({"switch": "task arithmetic", "forget_ma_mean": float(scores.mean())})
            return scores
        live = self._edit(model, ctx)
        try:
            return super().forget_scores(model, ctx)
        finally:
            with torch.no_grad():
                for k, q in model.named_parameters():
                    q.copy_(live[k])

    def finish(self, model: nn.Module, ctx: Context) -> nn.Module:
        if ctx.state["switched"] is not None:
            self._edit(model, ctx)
        return model

    def _sga(self, gamma: float) -> SGA:
        shared = {f.name for f in fields(LMParams)}
        return SGA(**{k: v for k, v in self.param_dict().items() if k in shared} | {"stop": "sequence", "gamma": gamma})

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        if p.order == "released":
            return super().run(model, ctx)
        if len(ctx.forget) == 0:
            raise ValueError("the forget set is empty")
        gamma = threshold(ctx, p)
        assert gamma is not None
        if p.order == "sga-ta":
            model = self._sga(gamma).run(model, ctx)
        tau = task_vector(model, ctx, p.ft_steps, p.ft_lr, p.batch_size)
        rule = "aggregate" if p.order == "ta-sga" else "sequence"
        lam, met, trials = smallest_lambda(model, ctx, tau, gamma, rule, p.grid, p.refine)
        ctx.history.extend(trials)
        ctx.history.append({"lambda": lam, "rule": rule, "rule_met": met})
        if p.order == "ta-sga":
            model = self._sga(gamma).run(model, ctx)
        return model
