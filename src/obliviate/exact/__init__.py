"""Exact and certified unlearning: SISA sharded ensembles and certified removal for linear models."""

from .certified import CertifiedLogistic, Removal
from .sisa import SISA, Deletion, slice_epochs

__all__ = ["SISA", "CertifiedLogistic", "Deletion", "Removal", "slice_epochs"]
