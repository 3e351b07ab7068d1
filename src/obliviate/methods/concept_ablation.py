"""``concept-ablation``: Ablating Concepts in Text-to-Image Diffusion Models (Kumari et al., ICCV 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.datasets import labels_of, subset
from .base import Context, Method, register
from .diffusion_common import DiffusionParams, denoiser_of, forgotten_classes, regress


@register
class ConceptAblation(Method["ConceptAblation.Params"]):
    """Make the forgotten label f denoise like an anchor class a: on x_t noised from anchor images,
    regress ε_θ(x_t, f) onto sg[ε_θ(x_t, a)] (nupurkmr9/concept-ablation, model-based
    ``loss_type_reverse``, the default: the same network under no-grad, not a frozen copy;
    reference/diffusion-unlearning.md §2). The retain term (weight ``alpha``, the ε-MSE on D_r
    batches) plays the paper's prior-preservation loss.

    Class-conditional adaptation: anchor images are real retained images of class a (the paper
    generates them from anchor prompts; D_r has them for free), so the method never reads D_f.
    ``anchor=None`` draws a per-example random retained class, so f maps onto a mixture rather than
    one class; a fixed anchor makes f produce a's images, a spike the oracle does not have. The
    anchor is never ∅: the original's ∅ still models f. Paper: lr 2e-6 (×batch), 100 steps,
    cross-attention weights, on Stable Diffusion; here Adam lr 1e-3, 100 steps of 32, all weights.
    """

    name = "concept-ablation"
    modalities = frozenset({"diffusion"})
    reads = frozenset({"retain"})
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "steps": (50, 100, 200)}

    @dataclass(frozen=True)
    class Params(DiffusionParams):
        #: the retained class f is mapped to; None = a random retained class per example
        anchor: int | None = None

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        den, _ = denoiser_of(model, ctx, self.name)
        forget = forgotten_classes(ctx, self.name)
        retained = sorted(set(labels_of(ctx.retain).tolist()))
        anchor = self.params.anchor
        if anchor is not None and anchor not in retained:
            raise ValueError(f"anchor class {anchor} is not a retained class of the data ({retained})")
        anchors = (
            ctx.retain
            if anchor is None
            else subset(ctx.retain, torch.nonzero(labels_of(ctx.retain) == anchor).flatten())
        )
        # one forgotten label per anchor example (with several forgotten classes, drawn per batch)
        forget_t = torch.tensor(forget)

        def target(x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pick = torch.randint(0, len(forget_t), y.shape, generator=ctx.generator).to(y.device)
            return forget_t.to(y.device)[pick], den(x_t, t, y)

        regress(den, ctx, self.params, anchors, target, self.name)
        return model
