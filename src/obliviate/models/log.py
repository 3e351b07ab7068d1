"""The training log kept with a trained model: recipe, seed, cost and per-example learning events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class TrainingLog:
    """What :func:`obliviate.train` records about a model it trained.

    ``confidence`` [epochs, N] holds each training example's true-class probability seen in the
    training forward pass of every epoch (free to record; the learning-event memorization proxies
    of RUM average it over epochs).
    """

    recipe: dict[str, Any]
    seed: int
    seconds: float
    n_examples: int
    dataset: str | None = None
    confidence: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def training_log(model: torch.nn.Module) -> TrainingLog | None:
    """The :class:`TrainingLog` attached to a model trained (or loaded) by obliviate, if any."""
    return getattr(model, "obliviate_log", None)
