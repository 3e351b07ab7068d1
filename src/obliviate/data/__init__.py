"""Datasets and forget-set selection."""

from .datasets import ArrayDataset, Data, available, from_arrays, from_npz, labels_of, load
from .splits import ForgetSplit, parse_forget_spec

__all__ = [
    "ArrayDataset",
    "Data",
    "ForgetSplit",
    "available",
    "from_arrays",
    "from_npz",
    "labels_of",
    "load",
    "parse_forget_spec",
]
