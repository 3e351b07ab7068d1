"""Unlearning methods: one file each, one registry (``available()``), one entry point (``unlearn``)."""

import importlib
import pkgutil

from .base import Context, Diverged, Method, Params, available, get, register
from .result import UnlearningResult
from .unlearn import unlearn

_SUPPORT = {"base", "common", "diffusion_common", "lm_common", "result", "unlearn"}
# Every other module in this package is one method that registers itself on import: adding a
# method is adding a file.
for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _SUPPORT and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Context", "Diverged", "Method", "Params", "UnlearningResult", "available", "get", "register", "unlearn"]
