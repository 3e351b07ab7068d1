"""Accuracy-family metrics: pure functions over logits and labels."""

from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose argmax equals the label (NaN for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(-1) == labels).float().mean())
