"""A training recipe: everything needed to (re)train a model, so the oracle uses the same one."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..data.datasets import Data
from ..models.architectures import build

#: the causal-LM architecture a recipe can name (``models.gpt.tiny_gpt2``)
LM_ARCHITECTURE = "tiny-gpt2"
#: the diffusion architecture a recipe can name (``models.architectures.denoiser``): trained for
#: ``steps`` by :func:`obliviate.train.diffusion.train_recipe`
DENOISER_ARCHITECTURE = "denoiser"


@dataclass(frozen=True)
class Recipe:
    """Architecture (registered name + kwargs, or a user ``factory``), optimiser and schedule.

    ``schedule`` is ``constant``, ``cosine`` (per step, to 0) or ``step`` (x0.1 at 50% and 75%).
    Causal LMs (``architecture="tiny-gpt2"``, ``num_classes`` = vocabulary size, ``input_shape`` =
    ``(context,)``) train for ``steps`` batches sampled by row weight instead of ``epochs`` passes:
    a memorized secret is one row of weight 10, not ten rows (see :mod:`obliviate.train.lm`).
    Class-conditional denoisers (``architecture="denoiser"``, ``arch_kwargs={"config": name, ...}``)
    also count ``steps`` (see :func:`obliviate.train.diffusion.train_recipe`).
    """

    architecture: str = "mlp"
    input_shape: tuple[int, ...] = ()
    num_classes: int = 10
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 64
    schedule: str = "cosine"
    steps: int | None = None
    factory: Callable[[], nn.Module] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use sgd, adam or adamw")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use constant, cosine or step")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be positive, got {self.steps}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(
                f"epochs, batch_size and lr must be positive (got {self.epochs}, {self.batch_size}, {self.lr})"
            )
        object.__setattr__(self, "input_shape", tuple(self.input_shape))

    def build(self, seed: int | None = None) -> nn.Module:
        """A freshly initialised model. Initialisation follows the global torch seed, except the tiny
        GPT-2, which draws from its own generator seeded with ``seed`` (default 0), as ``models.gpt`` does."""
        if self.factory is not None:
            return self.factory()
        if self.architecture == LM_ARCHITECTURE:  # initialised from its own generator (models.gpt)
            return build(self.architecture, self.input_shape, self.num_classes, **self.arch_kwargs, seed=seed or 0)
        return build(self.architecture, self.input_shape, self.num_classes, **self.arch_kwargs)

    def make_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer, params, self.lr, self.momentum, self.weight_decay)

    def replace(self, **changes: Any) -> Recipe:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("factory")
        if self.steps is None:  # classifier recipes keep the fingerprints they had before LM recipes existed
            d.pop("steps")
        d["input_shape"] = list(self.input_shape)
        if self.factory is not None:
            d["architecture"] = f"custom:{getattr(self.factory, '__qualname__', 'factory')}"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recipe:
        if str(d.get("architecture", "")).startswith("custom:"):
            raise ValueError("this recipe used a custom model factory; rebuild it with Recipe(factory=...)")
        return cls(**{**d, "input_shape": tuple(d["input_shape"])})

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def default_for(cls, data: Data) -> Recipe:
        """Defaults measured to train to ~100% train accuracy on the built-in sets on a CPU.

        Text data get the lm-demo's tiny GPT-2 (2 x 128, 4 heads, no dropout; AdamW 3e-3 constant,
        batch 32, 800 steps: reference/calibration.md, enough to memorize the people's secrets).

        Images 28x28 and smaller get the small CNN (Fashion-MNIST: the calibration recipe, Adam 1e-3
        cosine, batch 128, 12 epochs), except 8x8 digits, where an MLP trains in a fraction of a second;
        3x32x32 images get the CIFAR ResNet-18 recipe of RUM (SGD 0.1, cosine, 30 epochs);
        tabular data an MLP.
        """
        shape, c = tuple(data.input_shape), data.num_classes
        tokenizer = getattr(data, "tokenizer", None)
        if tokenizer is not None:
            return cls(
                LM_ARCHITECTURE,
                shape,
                c,
                {"layers": 2, "width": 128, "heads": 4, "eos_token_id": tokenizer.eos_token_id},
                "adamw",
                3e-3,
                0.9,
                0.0,
                epochs=1,
                batch_size=32,
                schedule="constant",
                steps=800,
            )
        if data.name == "digits" or len(shape) == 1:
            return cls("mlp", shape, c, {"hidden": [256]}, "adam", 3e-3, epochs=40, batch_size=64)
        if len(shape) == 3 and shape[0] == 3 and shape[1] >= 32:
            return cls("resnet18", shape, c, {}, "sgd", 0.1, 0.9, 5e-4, epochs=30, batch_size=256)
        return cls("cnn", shape, c, {}, "adam", 1e-3, epochs=12, batch_size=128)


def make_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.9, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """The optimisers recipes and methods use: ``sgd`` (with momentum), ``adam``, ``adamw``."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; use sgd, adam or adamw")


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step LR schedule over ``total_steps``."""
    total = max(1, total_steps)
    if name == "cosine":
        f = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))  # noqa: E731
    elif name == "step":
        f = lambda s: 0.1 ** ((s >= 0.5 * total) + (s >= 0.75 * total))  # noqa: E731
    else:
        f = lambda s: 1.0  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
