"""``ga-kl``: ascent on the forget set, KL to the original on the retain set ("GA_KLR" in MUSE)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import register
from .ga import GA
from .lm_common import LMParams


@register
class GAKL(GA):
    """``L = −avgNLL(D_f) + α · KL(p_original ‖ p_θ)`` on retain batches, token-level, batch mean
    (OpenUnlearning computes ``kl_div(log p_θ, log p_ref, log_target=True)``; reference A2). Keeps
    the retained output *distribution* rather than only its likelihood; costs one extra forward of
    the frozen original per step."""

    name = "ga-kl"
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "alpha": (0.5, 1.0, 2.0)}

    @dataclass(frozen=True)
    class Params(LMParams):
        alpha: float = 1.0
        retain: str = "kl"
