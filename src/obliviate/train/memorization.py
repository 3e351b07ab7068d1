"""Memorization proxies read off the training log: what RUM orders its forget set by.

They live beside the training loop that records them, so a method can use them without importing
``evaluation/`` (``obliviate.evaluation.memorization`` re-exports them with the costlier estimators).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.log import TrainingLog, training_log


def learning_event_proxy(model: nn.Module | TrainingLog, kind: str = "confidence") -> torch.Tensor:
    """A learning-event proxy from a model's training log (``ob.train`` records it for free)."""
    flips = {
        "confidence": ("confidence", True),
        "max_conf": ("max_conf", True),
        "entropy": ("entropy", False),
        "bi_acc": ("correct", True),
    }
    if kind not in flips:
        raise ValueError(f"unknown learning-event proxy {kind!r}; use one of {sorted(flips)}")
    log = model if isinstance(model, TrainingLog) else training_log(model)
    name, flip = flips[kind]
    if log is None or name not in log.events:
        raise ValueError(
            f"the model carries no {name!r} learning events: train it with ob.train "
            "(or load it with ob.load_model from a folder ob.save_model wrote)"
        )
    mean = log.events[name].mean(0)
    return 1 - mean if flip else mean
