"""Training originals and oracles."""

from .loop import NonFiniteLoss, run_epochs, train
from .recipe import Recipe, make_optimizer, make_scheduler

__all__ = ["NonFiniteLoss", "Recipe", "make_optimizer", "make_scheduler", "run_epochs", "train"]
