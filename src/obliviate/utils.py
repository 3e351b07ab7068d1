"""Small shared helpers: device choice, seeded RNG scopes, eval-mode scopes, progress bars and a
cache kept across evaluation calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm


def default_device() -> torch.device:
    """CUDA when present, else CPU; every entry point accepts ``device=`` to override."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    return default_device() if device is None else torch.device(device)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[torch.Generator]:
    """Run a block under ``torch.manual_seed(seed)`` without disturbing the caller's global RNG.

    Yields a CPU generator (seeded from ``seed``) for data order and random labels, so shuffling
    does not depend on how many random numbers the model's initialisation consumed.
    """
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed + 7919)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run a block with ``model`` in eval mode, then give every submodule its own previous training
    flag back. A blanket ``model.train(was_training)`` would also switch on modules the caller had
    deliberately left in eval mode (frozen norm layers, a frozen teacher inside the model)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def progress_bar(total: int, desc: str, progress: bool | None) -> tqdm:
    """A tqdm bar: ``progress=None`` shows it only on a terminal, True/False force it on/off."""
    return tqdm(total=total, desc=desc, disable=None if progress is None else not progress, leave=False)


def cached(cache: dict | None, key: tuple, owner: object, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per ``key`` in a cache kept across calls (a grid's cells); no cache, no
    memo. The entry holds ``owner`` (the object the key's ``id()`` names), so a recycled id never
    returns another object's entry."""
    if cache is None:
        return compute()
    if key not in cache or cache[key][0] is not owner:
        cache[key] = (owner, compute())
    return cache[key][1]
