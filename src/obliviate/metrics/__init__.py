"""Metrics as pure functions over logits, losses and labels. Imports nothing above this layer."""

from .accuracy import accuracy
from .mia import loss_mia

__all__ = ["accuracy", "loss_mia"]
