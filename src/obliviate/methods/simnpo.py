"""``simnpo``: reference-free, length-normalised NPO (Fan et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import Context, register
from .lm_common import LMMethod, LMParams


@register
class SimNPO(LMMethod["SimNPO.Params"]):
    """Per sequence ``−(2/β) · log σ(−(β/|y|) · log π_θ(y|x) − γ_m)``: NPO with the reference model
    replaced by a margin and the log-likelihood divided by the answer length, which removes NPO's
    bias towards long sequences (reference A2). Defaults are OpenUnlearning's TOFU ones: β = 4.5,
    margin δ = 0 (γ_m = β·δ), forget weight γ_f = 0.125, α = 1 (retain NLL). Sensitive to tuning."""

    name = "simnpo"
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "beta": (2.5, 4.5, 6.5)}

    @dataclass(frozen=True)
    class Params(LMParams):
        beta: float = 4.5
        delta: float = 0.0
        forget_weight: float = 0.125
        alpha: float = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if not self.beta > 0:
                raise ValueError(f"beta must be > 0, got {self.beta}")

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        p = self.params
        mean_logp = -ctx.task.losses(logits, batch)  # (1/|y|) log π_θ(y|x)
        return -2.0 / p.beta * F.logsigmoid(-p.beta * mean_logp - p.beta * p.delta)
