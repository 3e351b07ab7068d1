"""``retrain``: exact unlearning by retraining from scratch on the retain set (the oracle)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..train.loop import train
from .base import Context, Method, register
from .base import Params as BaseParams


@register
class Retrain(Method["Retrain.Params"]):
    """Re-initialise and train on D_r with the original recipe (reference §3.1); cost 1x by definition.

    The recipe comes from ``unlearn(..., recipe=...)`` or from the training log of a model trained
    by :func:`obliviate.train`. ``epochs`` overrides the recipe's epoch count when given (a causal-LM
    recipe counts ``steps`` instead: the oracle of a language model is the same number of steps on D_r).
    """

    name = "retrain"
    reads = frozenset({"retain"})
    needs = frozenset({"recipe"})
    honours_budget = False  # a half-trained oracle is not an oracle
    modalities = frozenset({"classification", "lm", "diffusion"})

    @dataclass(frozen=True)
    class Params(BaseParams):
        epochs: int | None = None

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        if ctx.recipe is None:
            raise ValueError("retrain needs the training recipe: pass recipe= to unlearn()")
        if self.params.epochs is not None and ctx.recipe.steps is not None:
            raise ValueError("a causal-LM recipe trains for steps, not epochs: leave retrain's epochs unset")
        recipe = ctx.recipe if self.params.epochs is None else ctx.recipe.replace(epochs=self.params.epochs)
        return train(recipe, ctx.retain, seed=ctx.seed, device=ctx.device, progress=ctx.progress, task=ctx.task)
