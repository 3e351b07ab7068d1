"""``rmu``: representation misdirection (Li et al. 2024, WMDP)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .base import Context, register
from .lm_common import LMMethod, LMParams


def blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's block list (GPT-2 ``transformer.h``, Llama ``model.layers``, ...): the
    longest ``nn.ModuleList`` in the model."""
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ValueError("rmu needs a model with a list of transformer blocks (nn.ModuleList)")
    return max(lists, key=lambda nm: len(nm[1]))


class _Capture:
    """Forward hook keeping a block's output hidden states [B, T, H]."""

    def __init__(self, module: nn.Module) -> None:
        self.h: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self)

    def __call__(self, module, args, output) -> None:
        self.h = output[0] if isinstance(output, tuple) else output


@register
class RMU(LMMethod["RMU.Params"]):
    """Forget loss: per sequence, the mean over tokens and hidden dims of ``(h_ℓ(x_f) − c·u)²``, with u a
    fixed random unit vector (uniform [0, 1) then normalised, drawn once per run) and h_ℓ the output
    of block ℓ; retain term ``α · (h_ℓ(x_r) − h_ℓ^original(x_r))²``, the same averages (reference A2).
    Only ``params`` are updated: by default the MLP weights of block ℓ and the two blocks before it
    (WMDP updates the MLP down-projections of layers 5-7 with ℓ = 7; all MLP weights here, since
    GPT-2's and Llama's projections are named differently).

    ``layer`` None = the middle block; ``coeff`` None = 4 x the mean activation norm at ℓ on the
    forget set (the reference: c must scale with that norm; WMDP's c = 6.5 is for Zephyr-7B)."""

    name = "rmu"
    modalities = frozenset({"lm"})
    search_space = {"lr": (3e-4, 1e-3, 3e-3), "alpha": (10.0, 100.0, 1000.0)}

    @dataclass(frozen=True)
    class Params(LMParams):
        layer: int | None = None
        coeff: float | None = None
        alpha: float = 100.0

    def setup(self, model: nn.Module, ctx: Context) -> None:
        p = self.params
        prefix, blist = blocks(model)
        layer = (len(blist) - 1) // 2 if p.layer is None else p.layer
        if not 0 <= layer < len(blist):
            raise ValueError(f"layer must be in 0..{len(blist) - 1}, got {p.layer}")
        lays = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
        ctx.state["pattern"] = p.params or rf"^{re.escape(prefix)}\.({lays})\.mlp\."
        ctx.state["cap"] = _Capture(blist[layer])
        ref_cap = ctx.state["ref_cap"] = _Capture(blocks(ctx.original)[1][layer])
        g = torch.Generator().manual_seed(ctx.seed)
        width = None
        with torch.no_grad():
            norms = []
            for _, batch in ctx.task.batches(ctx.forget, 64):
                batch = ctx.task.to(batch, ctx.device)
                ctx.task.logits(ctx.original, batch)
                h, m = ref_cap.h, batch[1].bool()
                if h is None:
                    raise RuntimeError("rmu's forward hook captured no hidden states")
                width = h.shape[-1]
                norms.append(h[m].norm(dim=-1))
        if width is None:  # unreachable: LMMethod.run refuses an empty forget set
            raise ValueError("the forget set is empty")
        u = torch.rand(width, generator=g)
        ctx.state["control"] = ((p.coeff or 4.0 * float(torch.cat(norms).mean())) * u / u.norm()).to(ctx.device)

    def param_pattern(self, ctx: Context) -> str | None:
        return ctx.state["pattern"]

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        try:
            return super().run(model, ctx)
        finally:
            for c in ("cap", "ref_cap"):
                if c in ctx.state:
                    ctx.state[c].handle.remove()

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:
        return _token_mean((ctx.state["cap"].h - ctx.state["control"]).pow(2).mean(-1), batch[1])

    def retain_loss(self, model: nn.Module, batch, ctx: Context) -> torch.Tensor:
        ctx.task.logits(model, batch)
        h = ctx.state["cap"].h
        with torch.no_grad():
            ctx.task.logits(ctx.original, batch)
        return _token_mean((h - ctx.state["ref_cap"].h).pow(2).mean(-1), batch[1]).mean()


def _token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum(1) / m.sum(1).clamp_min(1)
