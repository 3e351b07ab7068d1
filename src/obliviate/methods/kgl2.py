"""``kgl-2``: second place of the NeurIPS 2023 unlearning challenge (gradient-guided re-initialisation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from ..data.datasets import subset
from ..train.loop import run_epochs
from ..utils import eval_mode
from .base import Context, Method, OptimParams, register
from .common import forward_losses


def reinit_layers(model: nn.Module) -> list[_ConvNd] | list[nn.Linear]:
    """The layers kgl-2 re-initialises: every convolution; in a model without any (an MLP), every
    ``nn.Linear`` but the last one in module order (the head), or the only one if there is one."""
    convs = [m for m in model.modules() if isinstance(m, _ConvNd)]
    if convs:
        return convs
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("kgl-2 needs a model with convolutions or linear layers")
    return linears[:-1] or linears


def accumulate_gradients(model: nn.Module, ctx: Context, batch_size: int) -> None:
    """Sum into ``.grad`` the batch-mean CE gradients of a random D_r subset of |D_f| examples
    and the negated ones of D_f (the entry's SNIP-like score), in eval mode (no BatchNorm
    statistics move)."""
    ids = torch.randperm(len(ctx.retain), generator=ctx.generator)[: len(ctx.forget)]
    model.zero_grad(set_to_none=True)
    with eval_mode(model):
        for data, sign in ((subset(ctx.retain, ids), 1.0), (ctx.forget, -1.0)):
            for _, batch in ctx.task.batches(data, batch_size):
                _, losses = forward_losses(model, ctx, batch)
                (sign * losses.mean()).backward()


@torch.no_grad()
def reinit_smallest(layer: _ConvNd | nn.Linear, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Re-initialise (Kaiming normal, fan-out, ReLU gain: torchvision's ResNet init, as the entry)
    the ``round(fraction * n)`` weights of ``layer`` with the smallest |gradient|; return the
    boolean mask of re-initialised weights."""
    w = layer.weight
    grad = w.grad if w.grad is not None else torch.zeros_like(w)
    k = round(fraction * w.numel())
    mask = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    mask[torch.topk(grad.abs().flatten(), k, largest=False).indices] = True
    mask = mask.view_as(w)
    fresh = nn.init.kaiming_normal_(torch.empty(w.shape), mode="fan_out", nonlinearity="relu", generator=generator)
    w[mask] = fresh.to(w.device, w.dtype)[mask]
    return mask


@register
class Kgl2(Method["Kgl2.Params"]):
    """NeurIPS 2023 challenge, 2nd place; re-implemented after DeepUnlearn's
    ``munl/unlearning/kgltop2.py`` (xcadet/deepunlearn); reference §4.6.

    Accumulate the gradients of CE on a random retain subset of |D_f| examples plus -CE on D_f
    (:func:`accumulate_gradients`). In every targeted layer (:func:`reinit_layers`: the convs; in
    an MLP, the hidden Linear layers, since the entry's "conv layers" are its feature extractor
    and the head is left alone there too), re-initialise the ``reinit_fraction`` of weights with
    the smallest |gradient| — those least needed by D_r and least tied to forgetting D_f — and
    scale the other weights' gradients by ``kept_grad_scale`` for the whole fine-tune (a gradient
    hook, removed at the end), so the fine-tune mostly rebuilds the re-initialised weights.
    Fine-tune on D_r: SGD, momentum 0.9, wd 5e-4, batch 64, LR warmed up linearly to ``lr`` at
    mid-run then decayed linearly towards 0 (per step; the entry steps it per epoch).

    The gradient pass runs in eval mode, so forget examples never enter BatchNorm statistics.

    Entry: 30% re-initialised per conv layer, gradient scale 0.1, SGD lr 1e-3, 5 epochs, for a
    30-epoch original. Ours, measured on the digits MLP (40-epoch recipe, 3 seeds) and the
    Fashion-MNIST CNN (12-epoch recipe, seed 0): lr 0.1 (at 1e-3 nothing changed on digits: class
    3 kept 100% forget accuracy after 5 epochs), 3 epochs (8% of a digits retrain, 15% of a
    Fashion-MNIST one), and ``reinit_fraction`` 0.3 for convolutions but 0.7 for an MLP's Linear
    layers: re-initialising its one hidden layer's 30% least-needed weights barely changes the
    MLP (digits class 3 forget accuracy 0.79; 0.5: 0.49; 0.7: 0.00). Forget / retain / test
    accuracy with the defaults: digits random 10%: 0.983 / 0.985 / 0.972 (oracle 0.978 / 0.997 /
    0.987); class 3: 0.000 / 0.986 / 0.884 (oracle 0.000 / 0.997 / 0.889); Fashion-MNIST random
    10%: 0.906 / 0.923 / 0.904 (oracle 0.909 / 0.925 / 0.904); class 3: 0.000 / 0.928 / 0.821
    (oracle 0.000 / 0.929 / 0.821). The fraction for a ResNet-18 is the entry's, not re-measured.

    The re-initialisation drops retain accuracy before any step, so the collapse guard judges
    epoch ends only; after the first epoch the retain probe was 6-7 points under the original's
    on digits (0.7) and 5 on Fashion-MNIST, well inside the guard's 25.
    """

    name = "kgl-2"
    guard_steps = False
    search_space = {"reinit_fraction": (0.3, 0.5, 0.7), "lr": (0.03, 0.1), "epochs": (2, 3, 5)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 0.1
        epochs: int = 3
        #: share of each targeted layer's weights to re-initialise; None: 0.3 (the entry's) for
        #: convolutions, 0.7 for the Linear layers of an MLP (measured, see the class docstring)
        reinit_fraction: float | None = None
        kept_grad_scale: float = 0.1

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.reinit_fraction is not None and not 0 <= self.reinit_fraction <= 1:
                raise ValueError(f"reinit_fraction must be in [0, 1], got {self.reinit_fraction!r}")
            if not 0 <= self.kept_grad_scale <= 1:
                raise ValueError(f"kept_grad_scale must be in [0, 1], got {self.kept_grad_scale!r}")

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        layers = reinit_layers(model)
        fraction = p.reinit_fraction
        if fraction is None:
            fraction = 0.3 if isinstance(layers[0], _ConvNd) else 0.7
        accumulate_gradients(model, ctx, p.batch_size)
        masks = {layer: reinit_smallest(layer, fraction, ctx.generator) for layer in layers}
        model.zero_grad(set_to_none=True)
        ctx.history.append(
            {
                "reinit_fraction": fraction,
                "reinitialised": sum(int(m.sum()) for m in masks.values()),
                "targeted": sum(m.numel() for m in masks.values()),
            }
        )
        scales = [(layer, torch.where(m, 1.0, p.kept_grad_scale).to(layer.weight.dtype)) for layer, m in masks.items()]
        hooks = [layer.weight.register_hook(lambda g, s=s: g * s) for layer, s in scales]
        try:
            self._finetune(model, ctx)
        finally:
            for h in hooks:
                h.remove()
        return model

    def _finetune(self, model: nn.Module, ctx: Context) -> None:
        p = self.params
        opt = p.make_optimizer(model)
        total = p.epochs * -(-len(ctx.retain) // p.batch_size)
        peak = max(1, total // 2)

        def warm_decay(s: int) -> float:
            return (s + 1) / peak if s < peak else max(0.0, (total - s) / (total - peak + 1))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warm_decay)
        run_epochs(
            model,
            ctx.task,
            ctx.retain,
            opt,
            epochs=p.epochs,
            batch_size=p.batch_size,
            generator=ctx.generator,
            scheduler=sched,
            progress=ctx.progress,
            desc="kgl-2 fine-tune",
            grad_clip=p.grad_clip,
            on_step=ctx.after_step,
            on_epoch=lambda e, loss: ctx.end_epoch(model, e, retain_loss=loss),
        )
