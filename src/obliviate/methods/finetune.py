"""``finetune``: continue training on the retain set only ("catastrophic forgetting")."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..train.loop import run_epochs
from .base import Context, Method, OptimParams, register


@register
class Finetune(Method["Finetune.Params"]):
    """Minimise CE on D_r from the original (reference §3.2).

    Papers: SGD lr 0.01, momentum 0.9, wd 5e-4, 10 epochs of a 160-epoch schedule (lineage) or
    lr 0.1, 5 epochs (NeurIPS starting kit). Our schedules are 12-40 epochs, so the default is
    2 epochs of Adam at lr 3e-3 (measured on digits: SGD at lr <= 0.05 left the forget set
    untouched); fine-tuning is very sensitive to both — tune them for your recipe.
    """

    name = "finetune"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    search_space = {"lr": (1e-3, 3e-3, 1e-2), "epochs": (1, 2, 3)}
    reads = frozenset({"retain"})

    @dataclass(frozen=True)
    class Params(OptimParams):
        optimizer: str = "adam"
        lr: float = 3e-3
        weight_decay: float = 0.0
        epochs: int = 2

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        run_epochs(
            model,
            ctx.task,
            ctx.retain,
            p.make_optimizer(model),
            epochs=p.epochs,
            batch_size=p.batch_size,
            generator=ctx.generator,
            progress=ctx.progress,
            desc="finetune",
            grad_clip=p.grad_clip,
            on_epoch=lambda e, loss: ctx.end_epoch(model, e, retain_loss=loss),
            on_step=ctx.after_step,
        )
        return model
