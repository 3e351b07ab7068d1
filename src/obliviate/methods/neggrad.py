"""``neggrad``: gradient ascent on the forget set only."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..utils import progress_bar
from .base import Context, Method, OptimParams, register
from .common import ascent_loss, forward_losses, step


@register
class NegGrad(Method):
    """Maximise CE on D_f (reference §3.3; "GA"). Lineage: SGD lr 1e-4, 5 epochs over D_f of a
    CIFAR ResNet; on our small models lr 0.01, 3 passes (lr 0.03 already costs ~5-10 test points).

    Unstable by nature (no retain term); per-example losses are capped at ``loss_cap`` nats so
    ascent stops pushing an example once p_y <= exp(-cap) (``loss_cap=None`` = the paper's form).
    """

    name = "neggrad"

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 0.01
        epochs: int = 3
        batch_size: int = 32
        loss_cap: float | None = 5.0

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        opt = p.make_optimizer(model)
        bar = progress_bar(p.epochs, "neggrad", ctx.progress)
        for epoch in range(p.epochs):
            model.train()
            total = 0.0
            for _, batch in ctx.task.batches(ctx.forget, p.batch_size, shuffle=True, generator=ctx.generator):
                _, losses = forward_losses(model, ctx, batch)
                loss = ascent_loss(losses, p.loss_cap)
                step(opt, loss, ctx, "neggrad")
                total += float(losses.detach().sum())
            ctx.end_epoch(model, epoch, forget_loss=total / len(ctx.forget))
            bar.update()
        bar.close()
        return model
