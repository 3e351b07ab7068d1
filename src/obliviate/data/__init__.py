"""Datasets and forget-set selection."""

from .datasets import ArrayDataset, Data, available, from_arrays, from_npz, labels_of, load, register
from .splits import ForgetSplit, parse_forget_spec
from .text import TextData, TextDataset, from_texts
from .user import Source, TableEncoder, from_file, from_run, load_encoder, save_source

__all__ = [
    "ArrayDataset",
    "Data",
    "ForgetSplit",
    "Source",
    "TableEncoder",
    "TextData",
    "TextDataset",
    "available",
    "from_arrays",
    "from_file",
    "from_npz",
    "from_run",
    "from_texts",
    "labels_of",
    "load_encoder",
    "load",
    "parse_forget_spec",
    "register",
    "save_source",
]
