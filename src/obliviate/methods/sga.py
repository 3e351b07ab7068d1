"""``sga``: selective gradient ascent, only on sequences still above γ (Barbulescu & Triantafillou 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import register
from .ga import GA
from .lm_common import LMParams


@register
class SGA(GA):
    """Each step scores every forget sequence of the batch (MA from the step's own forward pass),
    ascends only on those with g(x) > γ, and stops when none is left (c(D_f) = 0). Sequences already
    at the unseen-text level are not pushed further down, which is what keeps their memorization
    distribution from becoming an over-unlearning outlier (A1.2, A1.4).

    Paper-inspired: the paper's full text was not available (reference A1.0); this follows its
    abstract ("GA on the data points whose memorization exceeds the threshold"). Variants the
    reference lists (top-k active set, ascent weighted by g − γ) are not implemented."""

    name = "sga"

    @dataclass(frozen=True)
    class Params(LMParams):
        stop: str = "sequence"
        selective: bool = True
