"""Datasets and forget-set selection."""

from .datasets import ArrayDataset, Data, available, from_arrays, from_npz, labels_of, load, register
from .splits import ForgetSplit, parse_forget_spec
from .text import TextData, TextDataset, from_texts

__all__ = [
    "ArrayDataset",
    "Data",
    "ForgetSplit",
    "TextData",
    "TextDataset",
    "available",
    "from_arrays",
    "from_npz",
    "from_texts",
    "labels_of",
    "load",
    "parse_forget_spec",
    "register",
]
