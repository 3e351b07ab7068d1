"""Task adapter for class-conditional diffusion models: per-example loss = the denoising MSE.

A batch is ``(x, y, t, noise, ref)``: images in [0, 1], class labels, timesteps, the noise added
and ``ref``, the regression target's class (−1: the true noise ε; c ≥ 0: the model's own
stop-gradient prediction ε_θ(x_t, c)). ``logits`` returns prediction and target stacked,
[B, 2, C, H, W], so ``losses``, ``correct`` and ``kd_loss`` read everything from the outputs, as
they do for classifiers. With this, every method written against :class:`~obliviate.objectives.Task`
runs on a denoiser:

* descent on D_r (fine-tuning) and ascent on D_f (NegGrad+) are ascent/descent on the ε-MSE;
* ``relabel`` gives the batch *another class's target*: x_t from the forget images and label f,
  regressed onto sg[ε_θ(x_t, c′)] with c′ ≠ f uniform. That is SalUn's forget loss for diffusion
  ("rl", OPTML-Group/Unlearn-Saliency ``DDPM/runners/diffusion.py`` ``saliency_unlearn``: the
  current model under stop-gradient, no frozen copy), with the paper's random c′ instead of the
  code's fixed (f + 1) mod 10, which would plant an f → f+1 spike the oracle lacks. So
  ``random-label`` is SalUn's RL baseline and ``salun`` SalUn itself.

Randomness (timesteps and noise) is seeded: training batches (``shuffle=True``) draw it from the
caller's generator; evaluation batches (no generator) give example i of a dataset the same t and ε
on every call (seeded blocks of positions), so a retain probe scores every model on the same noise;
a raw ``(x, y)`` batch from a plain loader gets its draws from the global RNG in :meth:`to`, which
``ob.unlearn`` seeds. Timesteps are uniform over 0..T−1 (DDPM's L_simple, Ho et al. 2020).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..data.datasets import SizedDataset, labels_of
from ..data.loading import iterate_batches
from ..models.diffusion import Denoiser
from ..utils import eval_mode

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
#: ``ref`` of a batch whose target is the true noise
TRUE_NOISE = -1
#: evaluation draws are made per block of this many dataset positions
BLOCK = 1024


class DiffusionTask:
    """ε-prediction MSE of a :class:`~obliviate.models.diffusion.Denoiser` over ``num_classes`` classes."""

    def __init__(self, num_classes: int, timesteps: int, shape: tuple[int, ...], seed: int = 0) -> None:
        self.num_classes = num_classes
        self.timesteps = timesteps
        self.shape = shape
        self.seed = seed
        self._blocks: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def of(cls, model: nn.Module, seed: int = 0) -> DiffusionTask:
        """The task of a conditional denoiser; a clear error for anything else."""
        if not isinstance(model, Denoiser):
            raise ValueError(f"a diffusion task needs an obliviate Denoiser, got {type(model).__name__}")
        if model.num_classes is None:
            raise ValueError(
                "the denoiser has no class conditioning (num_classes=None): class forgetting needs a "
                "class-conditional model"
            )
        c = model.config
        return cls(model.num_classes, model.timesteps, (c.channels, c.image_size, c.image_size), seed)

    # --- randomness -------------------------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps [n] and noise [n, C, H, W] from ``generator`` (None: the global RNG)."""
        t = torch.randint(0, self.timesteps, (n,), generator=generator)
        return t, torch.randn(n, *self.shape, generator=generator)

    def fixed(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same (t, ε) for dataset position i on every call, whatever the batch: positions come
        in blocks of :data:`BLOCK`, each drawn at once from its own seeded generator (cached)."""
        blocks = positions // BLOCK
        t = torch.empty(len(positions), dtype=torch.long)
        noise = torch.empty(len(positions), *self.shape)
        for b in blocks.unique().tolist():
            rows = blocks == b
            bt, bn = self._block(b)
            t[rows], noise[rows] = bt[positions[rows] % BLOCK], bn[positions[rows] % BLOCK]
        return t, noise

    def _block(self, block: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (self.seed, block)
        if key not in self._blocks:
            if len(self._blocks) >= 16:  # bounded: 16 blocks of 32x32 images are 64 MB
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[key] = self.draw(BLOCK, torch.Generator().manual_seed(self.seed * 1_000_003 + block))
        return self._blocks[key]

    def complete(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> Batch:
        t, noise = self.draw(len(y), generator)
        return x, y, t, noise, torch.full_like(y, TRUE_NOISE)

    # --- the Task protocol ------------------------------------------------------------------------
    def batches(
        self, dataset: SizedDataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, Batch]]:
        for idx, (x, y) in iterate_batches(dataset, batch_size, shuffle=shuffle, generator=generator):
            if generator is not None:
                yield idx, self.complete(x, y, generator)
            else:
                t, noise = self.fixed(idx)
                yield idx, (x, y, t, noise, torch.full_like(y, TRUE_NOISE))

    def to(self, batch: Any, device: torch.device) -> Batch:
        """Move to ``device``; a raw ``(x, y)`` batch (a plain loader's) gets t and ε from the global RNG."""
        if len(batch) == 2:
            batch = self.complete(*batch)
        x, y, t, noise, ref = (b.to(device, non_blocking=True) for b in batch)
        return x, y, t, noise, ref

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """[B, 2, C, H, W]: the prediction ε_θ(x_t, y, t) and its regression target."""
        if not isinstance(model, Denoiser):
            raise TypeError(f"a diffusion task needs an obliviate Denoiser, got {type(model).__name__}")
        x, y, t, noise, ref = batch
        x_t = model.noisy(model.encode(x), t, noise)
        pred = model(x_t, t, y)
        target = noise
        relabelled = ref >= 0
        if bool(relabelled.any()):
            with torch.no_grad():
                other = model(x_t[relabelled], t[relabelled], ref[relabelled])
            target = noise.clone()
            target[relabelled] = other
        return torch.stack([pred, target], 1)

    def losses(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] mean squared error between predicted and target noise (per pixel)."""
        return (logits[:, 0] - logits[:, 1]).pow(2).flatten(1).mean(1)

    def logprob(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] −MSE: the ELBO's ε-term up to scale and constant (the likelihood surrogate of
        Diffusion-DPO, Wallace et al. 2023), so NPO-style losses have something to compare."""
        return -self.losses(logits, batch)

    def correct(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] share of the noise variance explained, 1 − MSE/E[ε²] clipped to [0, 1] (E[ε²] = 1):
        a trained denoiser scores well above 0, a collapsed one near 0, which is what the retain
        probe's collapse alarm needs."""
        return (1 - self.losses(logits, batch)).clamp(0, 1)

    def events(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"loss": self.losses(logits.detach(), batch), "correct": self.correct(logits.detach(), batch)}

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
        """[B] MSE between the student's and the teacher's noise predictions: distillation of a
        regression output (there is no softmax to soften, so ``temperature`` is not used)."""
        return (student[:, 0] - teacher[:, 0]).pow(2).flatten(1).mean(1)

    def relabel(self, batch: Any, generator: torch.Generator) -> Batch:
        """The batch with another class's target: c′ = (y + U{1..C−1}) mod C (SalUn's RL for diffusion)."""
        if len(batch) == 2:
            batch = self.complete(batch[0], batch[1], generator)
        x, y, t, noise, _ = batch
        other = (y + torch.randint(1, self.num_classes, y.shape, generator=generator).to(y.device)) % self.num_classes
        return x, y, t, noise, other

    @torch.no_grad()
    def predict(
        self, model: nn.Module, dataset: SizedDataset, batch_size: int = 256, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prediction/target pairs [N, 2, C, H, W] at each example's fixed (t, ε), and labels, on CPU."""
        device = device or next(model.parameters()).device
        outs, ys = [], []
        with eval_mode(model):
            for _, batch in self.batches(dataset, batch_size):
                batch = self.to(batch, device)
                outs.append(self.logits(model, batch).float().cpu())
                ys.append(batch[1].cpu())
        return torch.cat(outs), torch.cat(ys)

    def check(self, model: nn.Module, dataset: SizedDataset) -> None:
        """The model must be a class-conditional denoiser whose image shape and classes fit the data."""
        ref = DiffusionTask.of(model)
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        _, (x, _) = next(iter(iterate_batches(dataset, 1)))
        if tuple(x.shape[1:]) != ref.shape:
            raise ValueError(
                f"the denoiser makes images of shape {ref.shape} but the dataset's are {tuple(x.shape[1:])}"
            )
        labels = labels_of(dataset)
        if int(labels.min()) < 0 or int(labels.max()) >= ref.num_classes:
            raise ValueError(
                f"dataset labels span {int(labels.min())}..{int(labels.max())} but the denoiser is "
                f"conditioned on {ref.num_classes} classes"
            )


def task_for(model: nn.Module, dataset: SizedDataset, seed: int = 0) -> DiffusionTask:
    """The diffusion task of a denoiser, checked against the dataset."""
    task = DiffusionTask.of(model, seed)
    task.check(model, dataset)
    return task
