"""``cf-k``: fine-tune only the last k layers on the retain set (catastrophic forgetting of k layers)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..train.loop import run_epochs
from .base import Context, Method, OptimParams, register

#: normalisation layers count as part of the layer before them (see :func:`parametrised_layers`)
NORMS: tuple[type[nn.Module], ...] = tuple(
    getattr(nn, name)
    for name in (
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "SyncBatchNorm",
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "GroupNorm",
        "LayerNorm",
        "RMSNorm",
    )
    if hasattr(nn, name)
)


def parametrised_layers(model: nn.Module) -> list[list[nn.Module]]:
    """The model's layers, first to last: each is a module owning parameters directly (Linear,
    Conv, ...), with any normalisation layer that follows it folded in.

    Order is registration order (``model.modules()``), which is forward order for ``nn.Sequential``
    and the built-in architectures (ResNet-18: ..., last block's conv2+bn2, fc). A norm layer is
    not a layer of its own because it only rescales its conv's output: "the last k layers" then
    means the same for a network with or without normalisation, and re-initialising a conv never
    leaves its old BatchNorm statistics behind.
    """
    layers: list[list[nn.Module]] = []
    for module in model.modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if isinstance(module, NORMS) and layers:
            layers[-1].append(module)
        else:
            layers.append([module])
    return layers


def split_last(model: nn.Module, k: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """(modules of the last ``k`` layers, modules of all earlier layers)."""
    layers = parametrised_layers(model)
    if k > len(layers):
        raise ValueError(f"k={k} but the model has only {len(layers)} parametrised layers")
    return [m for layer in layers[-k:] for m in layer], [m for layer in layers[:-k] for m in layer]


@register
class CatastrophicForgettingK(Method["CatastrophicForgettingK.Params"]):
    """CF-k (Goel et al. 2022, "Towards adversarial evaluation of unlearning algorithms"; a SCRUB
    baseline, meghdadk/SCRUB ``MIA_experiments.ipynb``; reference §3.10): freeze every layer but
    the last ``k`` (see :func:`parametrised_layers`) and fine-tune those on D_r with CE.

    Frozen layers are bit-identical afterwards: their parameters get no gradient and their norm
    layers stay in eval mode, so BatchNorm statistics do not drift either. Only the last layers
    can forget, so a random forget set whose memorisation lives in the features is barely touched.

    Papers: k = the last block/stage (ResNet ``layer4``), SGD lr 0.01-0.1, the remaining epochs of
    the original schedule. Default: k=1 (the classifier head), Adam lr 1e-2, 2 epochs, measured on
    digits (MLP / small CNN): a forgotten class goes to forget accuracy 0.007 / 0.000 with test
    0.893 / 0.862 (oracles 0.000 and 0.889 / 0.871); a random 10% set stays at forget 1.000 /
    0.978 with test 0.978 / 0.987 (oracles 0.978 and 0.987). Adam lr 3e-3 left the class at 59% /
    31%; k=2 was no better on the CNN and is the whole 2-layer MLP.
    """

    name = "cf-k"
    reads = frozenset({"retain"})
    search_space = {"k": (1, 2), "lr": (3e-3, 1e-2, 3e-2), "epochs": (1, 2, 3)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        k: int = 1
        optimizer: str = "adam"
        lr: float = 1e-2
        weight_decay: float = 0.0
        epochs: int = 2

        def __post_init__(self) -> None:
            super().__post_init__()
            if not (isinstance(self.k, int) and self.k >= 1):
                raise ValueError(f"k must be an integer >= 1, got {self.k!r}")

    def prepare(self, model: nn.Module, trained: list[nn.Module], ctx: Context) -> None:
        """Hook run on the last-k modules before training (EU-k re-initialises them)."""

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        trained, frozen = split_last(model, p.k)
        self.prepare(model, trained, ctx)
        flags = [q.requires_grad for q in model.parameters()]
        # Frozen norm layers must not update their statistics: a pre-hook keeps them in eval mode
        # even when something (the collapse probe) calls ``model.train()`` mid-run. Not recursive.
        hooks = [m.register_forward_pre_hook(_eval_mode) for m in frozen]
        try:
            model.requires_grad_(False)
            for module in trained:
                for q in module.parameters(recurse=False):
                    q.requires_grad_(True)
            run_epochs(
                model,
                ctx.task,
                ctx.retain,
                p.make_optimizer(model),  # the trainable parameters only
                epochs=p.epochs,
                batch_size=p.batch_size,
                generator=ctx.generator,
                progress=ctx.progress,
                desc=self.name,
                grad_clip=p.grad_clip,
                on_step=ctx.after_step,
                on_epoch=lambda e, loss: ctx.end_epoch(model, e, retain_loss=loss),
            )
        finally:
            for hook in hooks:
                hook.remove()
            for q, flag in zip(model.parameters(), flags):
                q.requires_grad_(flag)
        return model


def _eval_mode(module: nn.Module, args: tuple) -> None:
    module.training = False
