"""``ga``: gradient ascent on the forget sequences (Jang et al. 2022, "Knowledge Unlearning")."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, register
from .lm_common import LMMethod, LMParams


@register
class GA(LMMethod[LMParams]):
    """Maximise the mean token NLL of D_f: loss ``−avgNLL`` (reference A1.3). Jang's recipe: the
    whole forget set as one batch, Adam(0.9, 0.98), stop once the forget set's *mean* MA is below
    the unseen-text threshold (``stop="aggregate"``, the default here, so the method reproduces
    the baseline whose outliers A1 is about; use ``stop="sequence"`` for c(D_f) = 0).
    Jang's lr 5e-5 is for GPT-Neo at fp16; the tiny GPT here needs ~1e-3 (measured in lm-demo).
    Works on classifiers too (ascent on cross-entropy)."""

    name = "ga"
    search_space = {"lr": (3e-4, 1e-3, 3e-3)}

    # typed as LMParams, not GA.Params: ga-kl, grad-diff and sga derive from GA with their own
    # LMParams subclasses (GA's code reads only LMParams fields)
    @dataclass(frozen=True)
    class Params(LMParams):
        stop: str = "aggregate"

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        return -ctx.task.losses(logits, batch)
