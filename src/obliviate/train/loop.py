"""The training loop used for originals, oracles and retain fine-tuning."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..data.datasets import SizedDataset
from ..models.log import TrainingLog, UpdateLog
from ..objectives import ClassificationTask, Task
from ..utils import progress_bar, resolve_device, seeded
from .errors import NonFiniteLoss
from .recipe import DENOISER_ARCHITECTURE, LM_ARCHITECTURE, Recipe, make_scheduler

BatchHook = Callable[[torch.Tensor, object, torch.Tensor, int], None]


def run_epochs(
    model: nn.Module,
    task: Task,
    dataset: SizedDataset,
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
    before_step: Callable[[torch.Tensor], None] | None = None,
    grad_clip: float | None = None,
) -> list[float]:
    """Minimise the mean per-example loss for ``epochs`` shuffled passes; returns epoch mean losses.

    ``on_batch(positions, batch, logits, epoch)`` sees every training forward pass (learning
    events); ``on_epoch(epoch, mean_loss)`` runs after each epoch (checkpoints, early stopping);
    ``on_step(model)`` after each optimiser step (unlearning's time budget and collapse guard);
    ``before_step(positions)`` just before it (the update logger snapshots the weights there).
    ``grad_clip`` norm-clips the gradients before each step.
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
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if before_step is not None:
                    before_step(idx)
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
    dataset: SizedDataset,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    task: Task | None = None,
    log_updates: torch.Tensor | Sequence[int] | bool | None = None,
) -> nn.Module:
    """Train a fresh model of ``recipe`` on ``dataset``; deterministic under ``seed`` on CPU.

    An LM recipe (``Recipe.default_for(text_data)``) trains by :func:`obliviate.train.lm.train_causal_lm`,
    a denoiser recipe (``architecture="denoiser"``) by :func:`obliviate.train.diffusion.train_recipe`.

    The returned model (in eval mode) carries a :class:`TrainingLog` (``model.obliviate_log``):
    recipe, seed, seconds and each example's learning events per epoch (true-class and max
    confidence, entropy, correctness: the inputs of RUM's memorization proxies).

    ``log_updates`` makes Amnesiac unlearning possible later (``method="amnesiac"``): the ids
    (positions in ``dataset``) that may be deleted, or True for all. Each optimiser step whose
    batch holds one of them records its update θ_after − θ_before (every parameter, float32, on
    the CPU) in the log's ``updates``; the trained weights are bit-identical to training without
    it. Memory: 4 bytes x parameters per logged step. A small id set still touches about one batch
    per id per epoch, and True logs every step (digits MLP, 19k parameters x 880 steps: 68 MB; a
    CIFAR ResNet-18 recipe would need ~260 GB), so name the ids that may be deleted.
    """
    if recipe.architecture == DENOISER_ARCHITECTURE:
        if log_updates:
            raise ValueError("log_updates is for epoch-trained classifiers, not denoisers")
        from .diffusion import train_recipe

        return train_recipe(recipe, dataset, seed, device=device, progress=progress)
    if recipe.architecture == LM_ARCHITECTURE or recipe.steps is not None:
        if log_updates:
            raise ValueError("log_updates is for epoch-trained classifiers, not LM recipes")
        from ..data.text import TextDataset
        from .lm import train_causal_lm  # accelerate loads only for language models

        if not isinstance(dataset, TextDataset):
            raise TypeError(f"an LM recipe trains on an obliviate TextDataset, got {type(dataset).__name__}")
        return train_causal_lm(recipe, dataset, seed, device=device, progress=progress)
    device = resolve_device(device)
    logged = _logged_ids(log_updates, len(dataset))
    task = task or ClassificationTask(recipe.num_classes)
    start = time.perf_counter()
    with seeded(seed, device) as generator:
        model = recipe.build().to(device)
        task.check(model, dataset)
        optimizer = recipe.make_optimizer(model.parameters())
        steps = recipe.epochs * math.ceil(len(dataset) / recipe.batch_size)
        scheduler = make_scheduler(recipe.schedule, optimizer, steps)
        events: dict[str, torch.Tensor] = {}

        def log_events(idx: torch.Tensor, batch, logits: torch.Tensor, epoch: int) -> None:
            for name, value in task.events(logits, batch).items():
                if name not in events:
                    events[name] = torch.zeros(recipe.epochs, len(dataset))
                events[name][epoch, idx] = value.float().cpu()

        updates = None if logged is None else _UpdateLogger(model, logged)
        run_epochs(
            model,
            task,
            dataset,
            optimizer,
            epochs=recipe.epochs,
            batch_size=recipe.batch_size,
            generator=generator,
            scheduler=scheduler,
            progress=progress,
            desc="train",
            on_batch=log_events,
            before_step=None if updates is None else updates.before_step,
            on_step=None if updates is None else updates.after_step,
        )
    model.obliviate_log = TrainingLog(  # type: ignore[assignment]  # torch types Module.__setattr__ as Tensor | Module only
        recipe=recipe.to_dict(),
        seed=seed,
        seconds=time.perf_counter() - start,
        n_examples=len(dataset),
        events=events,
        updates=None if updates is None else updates.result(),
    )
    return model


def _logged_ids(log_updates: torch.Tensor | Sequence[int] | bool | None, n: int) -> torch.Tensor | None:
    """``log_updates`` as sorted unique ids in ``[0, n)`` (all of them for True), or None."""
    if log_updates is None or log_updates is False:
        return None
    if log_updates is True:
        return torch.arange(n)
    ids = torch.as_tensor(log_updates)
    if ids.numel() == 0:
        raise ValueError("log_updates is empty: pass the ids that may be deleted, True for all, or None")
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex() or ids.dim() != 1:
        raise ValueError(
            f"log_updates must be True or a 1-D sequence of integer ids, got {ids.dtype} of shape {tuple(ids.shape)}"
        )
    ids = ids.long().unique()
    if int(ids[0]) < 0 or int(ids[-1]) >= n:
        raise ValueError(f"log_updates ids must be in [0, {n}) for this dataset, got {int(ids[0])}..{int(ids[-1])}")
    return ids


class _UpdateLogger:
    """Records θ_after − θ_before of every optimiser step whose batch holds a logged id.

    Weights are copied only before logged steps: the cost is one flat copy and one subtraction
    per logged step, and nothing at all when logging is off.
    """

    def __init__(self, model: nn.Module, logged: torch.Tensor) -> None:
        self.params = list(model.parameters())
        self.logged = logged
        self.before: torch.Tensor | None = None
        self.idx = torch.zeros(0, dtype=torch.long)
        self.deltas: list[torch.Tensor] = []
        self.batches: list[torch.Tensor] = []

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).float() for p in self.params])

    def before_step(self, idx: torch.Tensor) -> None:
        if bool(torch.isin(idx, self.logged).any()):
            self.before, self.idx = self._flat(), idx

    def after_step(self, model: nn.Module) -> None:
        if self.before is not None:
            self.deltas.append((self._flat() - self.before).cpu())
            self.batches.append(self.idx.long().cpu())
            self.before = None

    def result(self) -> UpdateLog:
        n_params = sum(p.numel() for p in self.params)
        return UpdateLog(
            deltas=torch.stack(self.deltas) if self.deltas else torch.zeros(0, n_params),
            batch_ids=torch.cat(self.batches) if self.batches else torch.zeros(0, dtype=torch.long),
            offsets=torch.tensor([0] + [len(b) for b in self.batches]).cumsum(0),
            logged_ids=self.logged,
        )
