"""``ssd``: Selective Synaptic Dampening, a training-free unlearner (Foster et al., AAAI 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data.datasets import SizedDataset
from .base import Context, Method, register
from .base import Params as BaseParams


@register
class SSD(Method["SSD.Params"]):
    """Shrink the weights that matter far more to D_f than to D (repo if-loops/
    selective-synaptic-dampening ``ssd.py``, ``ParameterPerturber``; reference §3.8).

    Importances are the diagonal-Fisher approximation, the mean over mini-batches of the squared
    batch gradient of CE: I_D on the full training set, I_f on D_f, with the model in eval mode
    (BatchNorm statistics untouched). Every parameter with I_f > alpha * I_D is multiplied by
    min(lambda_ * I_D / I_f, 1); the rest are unchanged, so weights only shrink, keeping their
    sign. No optimiser steps. ``label_free=True`` is LF-SSD: the loss is the squared L2 norm of the
    logits and importances average |grad| instead of grad^2; ratios of |grad| are roughly the
    square roots of ratios of grad^2, so use a smaller alpha (digits: 3-5).

    One departure: each set is cut into equal-sized batches of at most ``batch_size`` (the paper's
    loader leaves a short last batch). A short batch's mean gradient is noisier, so it inflates
    the importance: on a 135-example digits forget set (batches of 128 + 7) it alone made SSD
    dampen 10% of the weights on a *random* forget set and cost 12 test points at alpha 10.

    Paper: alpha 10, lambda 1 (ResNet-18), batch 128. On small models alpha 10 dampens too much
    (digits MLP, one-class forgetting over 3 originals x 10 classes: test accuracy on the other
    classes -8 to -10 points on average, down to -34). Default alpha 30, measured on digits: mean
    forget accuracy 0.10-0.18 (oracle 0), other-class test -1 to -2 points (worst -7); alpha 100
    leaves half the classes untouched. lambda_ barely matters once alpha >= 10 (the factor is
    <= lambda_/alpha). No single alpha fits every model or class: on the Fashion-MNIST CNN,
    class 3 forgets cleanly at alpha 100 (test +1) but costs 7 test points at 30, and across
    classes the dampened fraction jumps between 0% (class untouched) and 10-22% (test -23 to -61
    points; the collapse guard rolls those back) with few values between. On random forgetting
    SSD is inert: a random subset's I_f is close to I_D (0 weights dampened on Fashion-MNIST at
    any alpha >= 10; digits forget accuracy unchanged at 0.978, oracle 0.970). Tune alpha
    (``search_space``).
    """

    name = "ssd"
    search_space = {"alpha": (10.0, 30.0, 100.0, 300.0), "lambda_": (0.1, 1.0, 10.0)}

    @dataclass(frozen=True)
    class Params(BaseParams):
        #: selection weighting: dampen a weight only where I_f > alpha * I_D
        alpha: float = 30.0
        #: dampening constant: the weight is scaled by min(lambda_ * I_D / I_f, 1)
        lambda_: float = 1.0
        batch_size: int = 128
        label_free: bool = False

        def __post_init__(self) -> None:
            super().__post_init__()
            for name in ("alpha", "lambda_"):
                v = getattr(self, name)
                if not (isinstance(v, (int, float)) and v > 0):
                    raise ValueError(f"{name} must be > 0, got {v!r}")

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        model.eval()
        named = [(n, w) for n, w in model.named_parameters() if w.requires_grad]
        imp_f = self.importances(model, named, ctx.forget, ctx)
        imp_d = self.importances(model, named, ctx.train, ctx)
        dampened = total = 0
        shrink_sum = 0.0
        with torch.no_grad():
            for (_, w), i_f, i_d in zip(named, imp_f, imp_d):
                selected = i_f > p.alpha * i_d  # False where I_f == 0: nothing to dampen
                factor = (p.lambda_ * i_d / i_f.clamp_min(torch.finfo(i_f.dtype).tiny)).clamp(max=1.0)
                factor = torch.where(selected, factor, torch.ones_like(factor))
                w.mul_(factor)
                dampened += int(selected.sum())
                total += w.numel()
                shrink_sum += float((1 - factor).sum())
        ctx.notes.append(f"ssd dampened {dampened} of {total} weights ({dampened / max(total, 1):.2%})")
        ctx.end_epoch(model, 0, dampened_fraction=dampened / max(total, 1), mean_shrink=shrink_sum / max(dampened, 1))
        return model

    def importances(
        self, model: nn.Module, named: list[tuple[str, nn.Parameter]], data: SizedDataset, ctx: Context
    ) -> list[torch.Tensor]:
        """Mean over mini-batches of grad^2 of the mean batch CE (|grad| of the mean squared logit
        norm when ``label_free``), one tensor per parameter in ``named``."""
        params = [w for _, w in named]
        acc = [torch.zeros_like(w) for w in params]
        n_batches = 0
        n = len(data)
        size = -(-n // -(-n // self.params.batch_size))  # ceil(n / #batches): near-equal batches
        for _, batch in ctx.task.batches(data, size):
            batch = ctx.task.to(batch, ctx.device)
            logits = ctx.task.logits(model, batch)
            if self.params.label_free:
                loss = logits.pow(2).sum(-1).mean()
            else:
                loss = ctx.task.losses(logits, batch).mean()
            ctx.check_loss(loss, "ssd importances")
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a += g.abs() if self.params.label_free else g.pow(2)
            n_batches += 1
        return [a / max(n_batches, 1) for a in acc]
