"""Unlearning methods: one file each, one registry (``available()``), one entry point (``unlearn``)."""

from . import finetune, neggrad, neggrad_plus, none, random_label, retrain, scrub  # noqa: F401  (register)
from .base import Context, Diverged, Method, Params, available, get, register
from .result import UnlearningResult
from .unlearn import unlearn

__all__ = ["Context", "Diverged", "Method", "Params", "UnlearningResult", "available", "get", "register", "unlearn"]
