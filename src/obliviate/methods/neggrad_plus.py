"""``neggrad+``: descend on the retain set while ascending on the forget set."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from ..data.loading import endless_batches
from .base import Context, Method, OptimParams, register
from .common import ForgetStepParams, ascent_at, ascent_loss, epochs, forget_step, forward_losses


@register
class NegGradPlus(Method["NegGradPlus.Params"]):
    """Loss ``beta * CE(D_r batch) - (1 - beta) * CE(D_f batch)``, one step per retain batch with the
    forget batches cycled (Kurmanji et al. 2023, SCRUB repo ``train_negrad``; reference §3.3).

    Papers: beta 0.95-0.9999, SGD lr 0.01, 5-10 epochs. The forget term is capped per example at
    ``loss_cap`` nats (see :func:`~obliviate.methods.common.ascent_loss`): uncapped, class
    forgetting collapses the model or goes NaN (reference/calibration.md). The cap makes a larger
    forget weight safe, which our 1-epoch default needs: beta 0.8, lr 0.03. Measured: on digits
    beta >= 0.9 left a forgotten class at 55-85% accuracy after one epoch, while on the
    Fashion-MNIST CNN beta 0.8-0.95 over-forgets a *random* forget set (forget accuracy 1-4 points
    below the oracle's, test -2 to -4 points): tune beta for random forgetting.

    ``sam_rho > 0`` smooths the forget term only (Fan et al. 2025's SAM+GradDiff form, see
    :func:`~obliviate.methods.common.forget_step`): the ascent gradient is taken at the worst point of
    a ρ-ball, the retain gradient at θ.
    """

    name = "neggrad+"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    search_space = {"beta": (0.8, 0.9, 0.95, 0.99), "lr": (0.01, 0.03)}

    @dataclass(frozen=True)
    class Params(ForgetStepParams, OptimParams):
        _unit_interval = ("beta",)
        beta: float = 0.8
        lr: float = 0.03
        epochs: int = 1
        forget_batch_size: int = 64
        loss_cap: float | None = 5.0

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        opt = p.make_optimizer(model)
        forget_batches = endless_batches(ctx.forget, p.forget_batch_size, ctx.generator)
        steps = max(1, -(-len(ctx.retain) // p.batch_size))

        def epoch(_epoch: int) -> dict[str, float]:
            r_total = f_total = 0.0
            for _, batch in ctx.task.batches(ctx.retain, p.batch_size, shuffle=True, generator=ctx.generator):
                _, r_losses = forward_losses(model, ctx, batch)
                f_batch = next(forget_batches)[1]
                _, f_losses = forward_losses(model, ctx, f_batch)
                forget_step(
                    model,
                    opt,
                    p,
                    ctx,
                    "neggrad+",
                    (1 - p.beta) * ascent_loss(f_losses, p.loss_cap),
                    forget_again=partial(ascent_at, model, ctx, f_batch, p.loss_cap, 1 - p.beta),
                    retain_loss=p.beta * r_losses.mean(),
                    grad_clip=p.grad_clip,
                )
                r_total += float(r_losses.detach().mean())
                f_total += float(f_losses.detach().mean())
            return {"retain_loss": r_total / steps, "forget_loss": f_total / steps}

        epochs(model, ctx, p.epochs, "neggrad+", epoch)
        return model
