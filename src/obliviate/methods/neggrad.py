"""``neggrad``: gradient ascent on the forget set only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import nn

from .base import Context, Method, OptimParams, register
from .common import (
    ForgetStepParams,
    ascent_at,
    ascent_batch_size,
    ascent_loss,
    epochs,
    forget_step,
    forward_losses,
    retain_probe,
)


@register
class NegGrad(Method["NegGrad.Params"]):
    """Maximise CE on D_f (reference §3.3; "GA"). Lineage: SGD lr 1e-4, 5 epochs over D_f of a
    CIFAR ResNet. Here: 2 passes of ~10 steps each (batch |D_f|/10, see
    :func:`~obliviate.methods.common.ascent_batch_size`), SGD lr 1e-3, gradients clipped at norm 1.
    Measured: on the Fashion-MNIST CNN 20 such steps at lr 3e-3 already cost 20 test points on a
    random forget set, while on the digits MLP lr 3e-3 barely moves it — NegGrad has no safe
    learning rate across models, which is why it needs a retain term (``neggrad+``) or tuning.

    Unstable by nature (no retain term); per-example losses are capped at ``loss_cap`` nats so
    ascent stops pushing an example once p_y <= exp(-cap) (``loss_cap=None`` = the paper's form).
    ``sam_rho > 0`` takes each ascent step at the worst point of a ρ-ball (Fan et al. 2025), and
    ``grad_projection > 0`` projects it away from the retain gradient of a retain batch drawn per step
    (GRU; see :func:`~obliviate.methods.common.forget_step`).
    """

    name = "neggrad"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    search_space = {"lr": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "epochs": (1, 2)}

    @dataclass(frozen=True)
    class Params(ForgetStepParams, OptimParams):
        lr: float = 1e-3
        epochs: int = 2
        # None: the whole forget set (ascent); widens OptimParams' int, which only code typed on
        # these Params reads
        batch_size: int | None = None  # type: ignore[assignment]
        loss_cap: float | None = 5.0
        grad_clip: float | None = 1.0

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        opt = p.make_optimizer(model)
        batch_size = ascent_batch_size(len(ctx.forget), p.batch_size)
        probe = retain_probe(model, ctx, batch_size) if p.grad_projection else None

        def epoch(_epoch: int) -> dict[str, float]:
            total = 0.0
            for _, batch in ctx.task.batches(ctx.forget, batch_size, shuffle=True, generator=ctx.generator):
                _, losses = forward_losses(model, ctx, batch)
                loss = ascent_loss(losses, p.loss_cap)
                again = partial(ascent_at, model, ctx, batch, p.loss_cap)
                forget_step(
                    model, opt, p, ctx, "neggrad", loss, forget_again=again, retain_probe=probe, grad_clip=p.grad_clip
                )
                total += float(losses.detach().sum())
            return {"forget_loss": total / len(ctx.forget)}

        epochs(model, ctx, p.epochs, "neggrad", epoch)
        return model
