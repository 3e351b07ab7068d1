"""The training loop used for originals, oracles and retain fine-tuning."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from ..models.log import TrainingLog
from ..objectives import ClassificationTask, Task
from ..utils import progress_bar, resolve_device, seeded
from .recipe import Recipe, make_scheduler

BatchHook = Callable[[torch.Tensor, object, torch.Tensor, int], None]


class NonFiniteLoss(FloatingPointError):
    """Raised when a training or unlearning loss becomes NaN or infinite."""


def run_epochs(
    model: nn.Module,
    task: Task,
    dataset: Dataset,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool | None = None,
    desc: str = "train",
    on_batch: BatchHook | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    on_step: Callable[[nn.Module], None] | None = None,
) -> list[float]:
    """Minimise the mean per-example loss for ``epochs`` shuffled passes; returns epoch mean losses.

    ``on_batch(positions, batch, logits, epoch)`` sees every training forward pass (learning
    events); ``on_epoch(epoch, mean_loss)`` runs after each epoch (checkpoints, early stopping);
    ``on_step(model)`` after each optimiser step (unlearning's time budget and collapse guard).
    """
    device = next(model.parameters()).device
    steps = math.ceil(len(dataset) / batch_size)
    means = []
    bar = progress_bar(epochs * steps, desc, progress)
    try:
        for epoch in range(epochs):
            model.train()
            total, count = 0.0, 0
            for idx, batch in task.batches(dataset, batch_size, shuffle=True, generator=generator):
                batch = task.to(batch, device)
                logits = task.logits(model, batch)
                loss = task.losses(logits, batch).mean()
                if not torch.isfinite(loss):
                    raise NonFiniteLoss(f"{desc}: non-finite loss at epoch {epoch}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if on_batch is not None:
                    on_batch(idx, batch, logits.detach(), epoch)
                if on_step is not None:
                    on_step(model)
                total += loss.item() * len(idx)
                count += len(idx)
                bar.update()
            means.append(total / max(count, 1))
            bar.set_postfix(loss=f"{means[-1]:.4f}")
            if on_epoch is not None:
                on_epoch(epoch, means[-1])
    finally:
        bar.close()
    model.eval()
    return means


def train(
    recipe: Recipe,
    dataset: Dataset,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    task: Task | None = None,
) -> nn.Module:
    """Train a fresh model of ``recipe`` on ``dataset``; deterministic under ``seed`` on CPU.

    The returned model (in eval mode) carries a :class:`TrainingLog` (``model.obliviate_log``):
    recipe, seed, seconds and each example's true-class confidence per epoch.
    """
    device = resolve_device(device)
    task = task or ClassificationTask(recipe.num_classes)
    start = time.perf_counter()
    with seeded(seed, device) as generator:
        model = recipe.build().to(device)
        task.check(model, dataset)
        optimizer = recipe.make_optimizer(model.parameters())
        steps = recipe.epochs * math.ceil(len(dataset) / recipe.batch_size)
        scheduler = make_scheduler(recipe.schedule, optimizer, steps)
        confidence = torch.zeros(recipe.epochs, len(dataset))

        def log_events(idx: torch.Tensor, batch, logits: torch.Tensor, epoch: int) -> None:
            confidence[epoch, idx] = task.confidence(logits, batch).float().cpu()

        run_epochs(
            model, task, dataset, optimizer, epochs=recipe.epochs, batch_size=recipe.batch_size,
            generator=generator, scheduler=scheduler, progress=progress, desc="train", on_batch=log_events,
        )
    model.obliviate_log = TrainingLog(
        recipe=recipe.to_dict(), seed=seed, seconds=time.perf_counter() - start,
        n_examples=len(dataset), confidence=confidence,
    )
    return model
