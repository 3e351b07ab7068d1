"""``boundary-expand``: send D_f to an extra "shadow" class, then delete it (Chen et al., CVPR 2023,
Boundary Unlearning)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..train.recipe import make_optimizer
from .base import Context, Method, OptimParams, register
from .common import ascent_batch_size, epochs, step


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier head: the last ``nn.Linear`` in ``model.modules()``."""
    head = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            head = module
    if head is None:
        raise ValueError(
            f"boundary-expand widens the model's last nn.Linear layer, but {type(model).__name__} has none"
        )
    return head


def shadow_row(head: nn.Linear, generator: torch.Generator, device: torch.device) -> nn.Linear:
    """A 1-output ``nn.Linear`` initialised like ``head`` (the default init depends only on
    in_features), under a seed drawn from ``generator``: the widened head's extra row."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        row = nn.Linear(head.in_features, 1, bias=head.bias is not None)
    return row.to(device=head.weight.device, dtype=head.weight.dtype)


@register
class BoundaryExpand(Method["BoundaryExpand.Params"]):
    """Boundary Expanding (repo OPTML-Group/Unlearn-Saliency ``unlearn/boundary_ex.py``, after
    Chen et al.'s code; reference §3.9): widen the head (the last ``nn.Linear``) from K to K + 1
    outputs, the old rows copied and a new "shadow" row initialised like the layer; minimise CE
    towards the shadow class K on every D_f example (labels unused), training all weights; then
    delete the shadow neuron, as the paper does (SalUn's port leaves it in).

    The widened head is realised without replacing the module: a forward hook reads the head's
    input and the shadow logit is computed from it and appended to the K logits — the same
    function as a (K + 1)-row layer whose first K rows are the head's own parameters. Deleting the
    shadow neuron is removing the hook, so the returned head is the original ``nn.Linear`` with
    its original shape, and the model's state dict never changes shape, which keeps the guard's
    checkpoints (and a rollback) valid mid-run.

    Paper code: SGD (momentum 0.9, wd 5e-4), lr ~1e-5 on ResNet-18, ~10 epochs. ``batch_size=None``
    gives ~10 steps per epoch whatever |D_f| (:func:`~obliviate.methods.common.ascent_batch_size`).
    Default SGD lr 1e-3, 3 epochs, measured on digits (2 originals): class forgetting, forget
    accuracy <= 0.01 (worst class 0.05), other-class test within 2 points; random 10%, forget
    0.98 (oracle ~0.97), test within 0.4 points. lr 3e-3 x 2-3 epochs cost up to 7 test points
    on random sets. **Class forgetting only**: on Fashion-MNIST (CNN) the default forgets class 3
    with test -1.3 points but takes a random 10% set's test accuracy from 0.90 to 0.54 (the
    collapse guard rolls that back): the shadow class absorbs the typical data a random forget
    set consists of.
    """

    name = "boundary-expand"
    reads = frozenset({"forget"})
    search_space = {"lr": (1e-4, 3e-4, 1e-3, 3e-3), "epochs": (1, 2, 3)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 1e-3
        epochs: int = 3
        #: None: ~10 steps per pass over D_f, whatever its size (see ``ascent_batch_size``)
        # None: the whole forget set (ascent); widens OptimParams' int, which only code typed on
        # these Params reads
        batch_size: int | None = None  # type: ignore[assignment]

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        head = last_linear(model)
        shadow = shadow_row(head, ctx.generator, ctx.device)
        features: list[torch.Tensor] = []
        hook = head.register_forward_hook(lambda _m, inp, _out: features.append(inp[0]))
        opt = make_optimizer(p.optimizer, [*model.parameters(), *shadow.parameters()], p.lr, p.momentum, p.weight_decay)
        batch_size = ascent_batch_size(len(ctx.forget), p.batch_size)

        def epoch(_epoch: int) -> dict[str, float]:
            total = 0.0
            for _, batch in ctx.task.batches(ctx.forget, batch_size, shuffle=True, generator=ctx.generator):
                x, _ = ctx.task.to(batch, ctx.device)
                features.clear()
                logits = ctx.task.logits(model, (x, None))
                wide = torch.cat([logits, F.linear(features[-1], shadow.weight, shadow.bias)], dim=-1)
                shadow_class = torch.full(wide.shape[:-1], logits.shape[-1], dtype=torch.long, device=wide.device)
                losses = ctx.task.losses(wide, (x, shadow_class))
                step(model, opt, losses.mean(), ctx, "boundary-expand", p.grad_clip)
                total += float(losses.detach().sum())
            features.clear()
            return {"shadow_loss": total / len(ctx.forget)}

        try:
            epochs(model, ctx, p.epochs, "boundary-expand", epoch)
        finally:
            hook.remove()  # deletes the shadow neuron: the model is K-way again
        return model
