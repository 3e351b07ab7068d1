"""``salun``: random-label unlearning restricted to the weights most salient for the forget set.

Also holds the pieces ``salun-soft`` shares: the saliency pass, the global top-fraction mask and
the random-label epoch loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..utils import eval_mode
from .base import Context, Method, OptimParams, register
from .common import forward_losses
from .random_label import random_label_epochs


def saliency(model: nn.Module, ctx: Context, batch_size: int) -> dict[str, torch.Tensor]:
    """|g| per parameter, g = sum over one pass of D_f of grad[-CE(theta; B_f)] (mean CE per batch).

    Computed in eval mode (as SalUn's ``generate_mask.py``: no dropout, batch-norm statistics
    untouched) with ``autograd.grad``, so ``.grad`` fields and the optimiser are not involved. The
    sum does not depend on batch order, so the forget set is read unshuffled and the context's
    generator is not consumed.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    with eval_mode(model):
        for _, batch in ctx.task.batches(ctx.forget, batch_size):
            _, losses = forward_losses(model, ctx, batch)
            loss = -losses.mean()
            ctx.check_loss(loss, "saliency pass")
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for t, g in zip(total.values(), grads):
                if g is not None:
                    t.add_(g)
    return {n: t.abs_() for n, t in total.items()}


def flat(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([s.flatten() for s in scores.values()])


def unflat(vector: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n, s in like.items():
        out[n] = vector[i : i + s.numel()].view_as(s)
        i += s.numel()
    return out


def top_fraction_mask(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean mask of the ``int(n * fraction)`` largest scores, ranked globally over all tensors.

    Ties (e.g. the many exact zeros of weights fed by always-zero inputs) are broken by position,
    so the count is exact and the mask deterministic.
    """
    v = flat(scores)
    keep = torch.zeros(v.numel(), dtype=torch.bool, device=v.device)
    keep[torch.argsort(v, descending=True, stable=True)[: int(v.numel() * fraction)]] = True
    return unflat(keep, scores)


@contextmanager
def frozen_outside(
    model: nn.Module, opt: torch.optim.Optimizer, mask: dict[str, torch.Tensor], reference: nn.Module
) -> Iterator[None]:
    """While active, weights where ``mask`` is False stay bit-identical to ``reference``'s.

    Gradients are masked by tensor hooks (so gradient clipping and momentum only see salient
    coordinates); an optimiser post-step hook then copies the frozen coordinates back from
    ``reference`` and zeroes their optimiser state (momentum, Adam moments), so weight decay and
    momentum cannot move them either (SalUn's ``_restore_masked_params``). The hook runs inside
    ``opt.step()``, before ``ctx.after_step`` can stop the run, so the invariant holds after every
    step, including a run stopped by its time budget. All hooks are removed on exit.
    """
    params = dict(model.named_parameters())
    ref = dict(reference.named_parameters())
    weights = {n: m.to(params[n].dtype) for n, m in mask.items()}
    handles = [params[n].register_hook(lambda g, w=w: g * w) for n, w in weights.items()]

    @torch.no_grad()
    def restore(optimizer: torch.optim.Optimizer, *_: object) -> None:
        for n, m in mask.items():
            p = params[n]
            p.copy_(torch.where(m, p, ref[n]))
            for v in optimizer.state.get(p, {}).values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    v.mul_(weights[n])

    handles.append(opt.register_step_post_hook(restore))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")


@register
class SalUn(Method["SalUn.Params"]):
    """SalUn (Fan et al., ICLR 2024; repo OPTML-Group/Unlearn-Saliency, ``Classification/
    generate_mask.py`` and ``unlearn/RL.py``; reference §3.7, §3.4).

    1. Saliency: |sum over one pass of D_f of grad[-CE(theta_o; B_f)]| per weight; every parameter
       tensor (biases included, as the repo masks every tensor) is ranked *globally*; the top
       ``threshold`` fraction is salient (mask 1).
    2. Random-label unlearning (``random-label``'s loop) with gradients multiplied by the mask;
       after every step the non-salient weights are copied back from theta_o and their momentum
       zeroed, so they end bit-identical to the original.

    Paper: SGD lr 0.013, momentum 0.9, wd 5e-4, batch 256, 10 epochs (of a 160-epoch schedule),
    threshold 0.5. Our schedules are 12-40 epochs, so the default is 1 epoch at batch 64 (as
    ``random-label``), threshold 0.5, SGD lr 0.01. Measured on digits (MLP, 10 seeds, originals of
    20 and 40 epochs): class 3 forget accuracy 0 (oracle 0) with test 0.3 point below the
    oracle's; random 10% forget accuracy 98.96 vs oracle 97.33 and original 99.85 (40 epochs),
    test 1.1 points below the oracle's. With half the weights frozen it needs a larger lr than
    ``random-label`` (3e-3, where SalUn leaves a random forget set at the original's accuracy);
    lr >= 0.02 or 2 epochs cost 1.5-3 test points. On the digits MLP the threshold (0.1-1.0)
    barely changes the outcome; ``threshold=1`` is ``random-label``.
    """

    name = "salun"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    guard_steps = False  # the forget pass degrades the model by design; the retain pass repairs it
    search_space = {"lr": (3e-4, 1e-3, 3e-3, 0.01), "threshold": (0.3, 0.5, 0.7)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 0.01
        epochs: int = 1
        threshold: float = 0.5

        def __post_init__(self) -> None:
            super().__post_init__()
            check_threshold(self.threshold)

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        mask = top_fraction_mask(saliency(model, ctx, p.batch_size), p.threshold)
        opt = p.make_optimizer(model)
        with frozen_outside(model, opt, mask, ctx.original):
            random_label_epochs(model, ctx, opt, p, self.name)
        return model
