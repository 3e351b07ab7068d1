"""``none``: do nothing — the stale baseline every method must beat."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import Context, Method, register
from .base import Params as BaseParams


@register
class Nothing(Method["Nothing.Params"]):
    """Return an unchanged copy of the original (cost 0); its gap to the oracle is the problem size."""

    name = "none"
    reads = frozenset()
    modalities = frozenset({"classification", "lm", "diffusion"})

    @dataclass(frozen=True)
    class Params(BaseParams):
        pass

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        return model
