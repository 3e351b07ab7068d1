"""``grad-diff``: ascent on the forget set, descent on the retain set ("GA+GDR" in MUSE)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import register
from .ga import GA
from .lm_common import LMParams


@register
class GradDiff(GA):
    """``L = −avgNLL(D_f) + α · avgNLL(D_r)`` with γ_f = α = 1 (OpenUnlearning's GradDiff; reference
    A2). The retain term repairs the damage ascent does to text sharing the forget set's templates.
    Stops per sequence (c(D_f) = 0) by default."""

    name = "grad-diff"
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "alpha": (0.5, 1.0, 2.0)}

    @dataclass(frozen=True)
    class Params(LMParams):
        alpha: float = 1.0
        retain: str = "nll"
