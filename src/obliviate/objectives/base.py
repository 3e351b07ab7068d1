"""The task-adapter interface: the one place that knows what a batch and an output are.

Methods and metrics are written against :class:`Task`, so the same NegGrad+, SCRUB or NPO code
drives an image classifier (logits over classes) or a causal LM (logits over the vocabulary per
token) once an adapter for that modality exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn

from ..data.datasets import SizedDataset

Batch = Any


class Task(Protocol):
    def batches(
        self, dataset: SizedDataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, Batch]]:
        """``(positions, batch)`` pairs over a dataset."""

    def to(self, batch: Batch, device: torch.device) -> Batch:
        """Move a batch to a device."""

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Model outputs that define the predictive distribution(s) of a batch."""

    def losses(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-example training loss [B] (no reduction)."""

    def logprob(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-example log-likelihood of the target (summed over a sequence's scored tokens) [B]."""

    def correct(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-example correctness in [0, 1] [B]."""

    def events(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-example learning events of one training forward pass, name -> [B] (logged per epoch)."""

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
        """Per-example distillation KL(teacher || student) at a temperature, T^2-scaled [B]."""

    def relabel(self, batch: Batch, generator: torch.Generator) -> Batch:
        """The batch with uniformly random targets (random-label unlearning)."""

    def predict(
        self, model: nn.Module, dataset: SizedDataset, batch_size: int = 1024, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode outputs and targets of a whole dataset, on CPU."""

    def check(self, model: nn.Module, dataset: SizedDataset) -> None:
        """Raise ValueError when the dataset does not fit the model (shapes, label range)."""
