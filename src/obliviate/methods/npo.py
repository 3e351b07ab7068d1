"""``npo``: negative preference optimisation (Zhang et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Context, register
from .lm_common import LMMethod, LMParams


@register
class NPO(LMMethod["NPO.Params"]):
    """Per sequence ``(2/β) · log(1 + (π_θ/π_ref)^β) = −(2/β) · log σ(−β (log π_θ − log π_ref))`` with
    π the *sequence* likelihood (summed token log-probs) and π_ref the frozen original (reference A2,
    the original paper's formula, not MUSE's variant). β = 0.1. The weight of a sequence's gradient
    falls as π_θ drops below π_ref, so forgotten sequences stop being pushed: NPO degrades slowly
    where GA collapses. With α = 1 the retain NLL term makes it NPO+RT.

    The reference log-likelihoods of the forget set are computed once (the original and the forget
    set are both fixed), so NPO costs no more per step than GA."""

    name = "npo"
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "beta": (0.05, 0.1, 0.5)}

    @dataclass(frozen=True)
    class Params(LMParams):
        beta: float = 0.1
        alpha: float = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.beta > 0:
                raise ValueError(f"beta must be > 0, got {self.beta}")

    @torch.no_grad()
    def setup(self, model: nn.Module, ctx: Context) -> None:
        ref = ctx.state["ref"] = torch.empty(len(ctx.forget), device=ctx.device)
        for rows, batch in ctx.task.batches(ctx.forget, 64):
            batch = ctx.task.to(batch, ctx.device)
            ref[rows.to(ctx.device)] = ctx.task.logprob(ctx.task.logits(ctx.original, batch), batch).float()

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        beta = self.params.beta
        ratio = ctx.task.logprob(logits, batch) - ctx.state["ref"][rows.to(ctx.device)]
        return -2.0 / beta * F.logsigmoid(-beta * ratio)
