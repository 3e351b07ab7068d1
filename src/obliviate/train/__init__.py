"""Training originals and oracles."""

from .ensemble import Ensemble, train_ensemble
from .loop import NonFiniteLoss, run_epochs, train
from .recipe import Recipe, make_optimizer, make_scheduler

__all__ = [
    "Ensemble",
    "NonFiniteLoss",
    "Recipe",
    "make_optimizer",
    "make_scheduler",
    "run_epochs",
    "train",
    "train_ensemble",
]
