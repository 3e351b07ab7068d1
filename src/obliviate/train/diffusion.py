"""Training a class-conditional denoiser: the original on D, the oracle on D_r, same recipe and seed policy.

Objective: L_simple = ‖ε − ε_θ(x_t, c)‖² at t ~ U{0..T−1} (Ho et al. 2020), with class dropout: each
label is replaced by ∅ with probability ``p_uncond`` so one network also learns ε(x_t, ∅) for
classifier-free guidance (Ho & Salimans 2022; p = 0.1 and gradient clipping at 1.0 as SalUn's
``DDPM/configs/cifar10_train.yml``). Adam at lr 1e-3 (the diffusers course's MNIST recipe), counted
in optimiser steps, not epochs, so the original and the oracle get the same compute whatever the
size of D_r. No EMA: over a few hundred steps a 0.9999 average is mostly the initial weights
(reference/diffusion-unlearning.md §1).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from ..data.datasets import SizedDataset, labels_of
from ..data.loading import endless_batches
from ..models.architectures import spec
from ..models.diffusion import Denoiser, DenoiserConfig, config_of
from ..models.log import TrainingLog
from ..objectives.diffusion import DiffusionTask
from ..utils import progress_bar, resolve_device, seeded
from .errors import NonFiniteLoss
from .recipe import DENOISER_ARCHITECTURE, Recipe


@dataclass(frozen=True)
class DiffusionRecipe:
    """Everything needed to (re)train a denoiser; ``config`` is a name of ``CONFIGS`` or a config."""

    config: DenoiserConfig | str = "digits-demo"
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    p_uncond: float = 0.1
    grad_clip: float | None = 1.0
    #: per-step multiplicative lr decay to lr·final_lr at the last step (cosine); 1 = constant
    final_lr: float = 0.1
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {self.p_uncond}")

    def denoiser_config(self) -> DenoiserConfig:
        return config_of(self.config, **self.overrides)

    def replace(self, **changes: Any) -> DiffusionRecipe:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.denoiser_config().to_dict()
        d.pop("overrides")
        return d


def train_diffusion(
    recipe: DiffusionRecipe,
    dataset: SizedDataset,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> Denoiser:
    """Train a denoiser from scratch under ``seed`` (initialisation, batch order, t, ε and dropout).

    ``num_classes`` defaults to the config's; it is the conditioning width, so an oracle trained on
    D_r keeps the original's embedding table (the forgotten class's row stays at its random init).
    Returns the model in eval mode (time the call for retraining cost).
    """
    cfg = recipe.denoiser_config()
    if num_classes is not None:
        cfg = replace(cfg, num_classes=num_classes)
    if cfg.num_classes is None:
        raise ValueError("train_diffusion trains class-conditional denoisers: the config has num_classes=None")
    labels = labels_of(dataset)
    if len(labels) == 0:
        raise ValueError("dataset is empty")
    if int(labels.max()) >= cfg.num_classes or int(labels.min()) < 0:
        raise ValueError(f"labels span {int(labels.min())}..{int(labels.max())} but num_classes={cfg.num_classes}")
    if recipe.p_uncond > 0 and not cfg.null:
        raise ValueError("class dropout (p_uncond > 0) needs a null class: the config has null=False")
    dev = resolve_device(device)
    with seeded(seed, dev) as gen:
        model = Denoiser(cfg).to(dev)
        task = DiffusionTask.of(model, seed)
        task.check(model, dataset)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.steps, eta_min=recipe.lr * recipe.final_lr)
        batches = endless_batches(dataset, recipe.batch_size, gen)
        bar = progress_bar(recipe.steps, "denoiser", progress)
        model.train()
        try:
            for step in range(recipe.steps):
                _, (x, y) = next(batches)
                if recipe.p_uncond > 0:
                    drop = torch.rand(len(y), generator=gen) < recipe.p_uncond
                    y = torch.where(drop, torch.full_like(y, model.null_label), y)  # type: ignore[arg-type]
                batch = task.to(task.complete(x, y, gen), dev)
                loss = task.losses(task.logits(model, batch), batch).mean()
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"denoiser training: non-finite loss at step {step}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                opt.step()
                sched.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        finally:
            bar.close()
    model.null_trained.fill_(recipe.p_uncond > 0)
    return model.eval()


#: a :class:`Recipe`'s schedule -> DiffusionRecipe's ``final_lr`` (cosine decays to 0.1 of the lr)
_FINAL_LR = {"cosine": 0.1, "constant": 1.0}


def diffusion_recipe(recipe: Recipe) -> DiffusionRecipe:
    """The :class:`DiffusionRecipe` a denoiser :class:`Recipe` stands for (``ob.train``, bench grids).

    ``arch_kwargs`` hold the config name (``config``, default ``digits-demo``) and field overrides;
    image size, channels and class count come from the recipe's ``input_shape`` and ``num_classes``.
    ``steps``, ``batch_size`` and ``lr`` carry over; the optimiser is Adam without weight decay and
    the schedule constant or cosine (to 0.1·lr); class dropout (0.1) and gradient clipping (1.0) are
    DiffusionRecipe's defaults. Anything else is refused rather than silently ignored.
    """
    if recipe.architecture != DENOISER_ARCHITECTURE:
        raise ValueError(f"not a denoiser recipe (architecture {recipe.architecture!r})")
    if recipe.steps is None:
        raise ValueError("a denoiser recipe counts optimiser steps: set steps")
    if recipe.optimizer != "adam" or recipe.weight_decay:
        raise ValueError("denoisers train with Adam without weight decay (optimizer: adam, weight_decay: 0)")
    if recipe.schedule not in _FINAL_LR:
        raise ValueError(f"a denoiser recipe's schedule is constant or cosine, got {recipe.schedule!r}")
    kwargs = dict(recipe.arch_kwargs)
    name = kwargs.pop("config", "digits-demo")
    c, h = recipe.input_shape[0], recipe.input_shape[-1]
    return DiffusionRecipe(
        config=name,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        final_lr=_FINAL_LR[recipe.schedule],
        overrides={**kwargs, "channels": c, "image_size": h, "num_classes": recipe.num_classes},
    )


def train_recipe(
    recipe: Recipe,
    dataset: SizedDataset,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> Denoiser:
    """``ob.train`` for a denoiser recipe: :func:`train_diffusion` of :func:`diffusion_recipe`, with the
    architecture spec (so ``save_model`` / ``load_model`` rebuild it) and the training log (recipe,
    seed, seconds: ``retrain`` reads the recipe from it)."""
    start = time.perf_counter()
    model = train_diffusion(
        diffusion_recipe(recipe), dataset, seed=seed, num_classes=recipe.num_classes, device=device, progress=progress
    )
    model.obliviate_spec = spec(DENOISER_ARCHITECTURE, recipe.input_shape, recipe.num_classes, recipe.arch_kwargs)  # type: ignore[assignment]  # torch types Module.__setattr__ as Tensor | Module only
    model.obliviate_log = TrainingLog(  # type: ignore[assignment]
        recipe=recipe.to_dict(), seed=seed, seconds=time.perf_counter() - start, n_examples=len(dataset)
    )
    return model
