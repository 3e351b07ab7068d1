"""``esd``: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023), for a class label."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, Method, frozen_copy, register
from .diffusion_common import DiffusionParams, denoiser_of, forgotten_classes, regress


@register
class ESD(Method["ESD.Params"]):
    """Regress ε_θ(x_t, f) onto a negatively guided target from the frozen original ε*:
    ε*(x_t, ∅) − η·(ε*(x_t, f) − ε*(x_t, ∅)) (rohitgandikota/erasing, legacy
    ``train-scripts/train-esd.py``; reference/diffusion-unlearning.md §2). The model learns to
    denoise "f" the way guidance *away* from f would, so guided sampling of f follows ∅ pushed away
    from f.

    Class-conditional adaptation: the concept is the forgotten label f and ∅ the null label, so the
    model must have been trained with class dropout. x_t comes from noising real D_f images at
    uniform t (the data-based variant, cheaper on a CPU than ESD's partial DDIM trajectories).
    ``params="class"`` trains only the class-embedding table, ESD-x's analogue (the conditioning
    path): only row f receives gradient, so every other class and ∅ stay bit-identical (with
    ``alpha=0``); ``params="all"`` is ESD-u's analogue, with an ε-MSE retain term (weight ``alpha``)
    because the resnets' shared weights serve every class. Paper: Adam lr 1e-5, 1000 iterations,
    batch 1, η = 1 on Stable Diffusion; the tiny denoisers here need larger steps: lr 1e-3, 100
    steps of 32. With several forgotten classes each example's target uses its own label.
    """

    name = "esd"
    modalities = frozenset({"diffusion"})
    search_space = {"eta": (0.5, 1.0, 2.0), "lr": (3e-4, 1e-3, 3e-3)}

    @dataclass(frozen=True)
    class Params(DiffusionParams):
        #: negative-guidance strength η (> 0)
        eta: float = 1.0

        def __post_init__(self) -> None:
            super().__post_init__()
            if not (isinstance(self.eta, (int, float)) and self.eta > 0):
                raise ValueError(f"eta must be > 0, got {self.eta!r}")

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        den, _ = denoiser_of(model, ctx, self.name)
        null = den.require_null("ESD")
        forgotten_classes(ctx, self.name)
        frozen = frozen_copy(ctx.original)
        eta = self.params.eta

        def target(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            both = frozen(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, null)]))
            cond, uncond = both.chunk(2)
            return y, uncond - eta * (cond - uncond)

        regress(den, ctx, self.params, ctx.forget, target, self.name)
        return model
