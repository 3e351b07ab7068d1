"""Mini-batch iteration shared by training, unlearning and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import default_collate

from .datasets import ArrayDataset, SizedDataset


def iterate_batches(
    dataset: SizedDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield ``(positions, batch)``; tensor datasets are sliced directly, others collated per item.

    Positions are the examples' indices in ``dataset``: the training loop needs them to log
    per-example learning events.
    """
    n = len(dataset)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        if isinstance(dataset, ArrayDataset):
            yield idx, (dataset.x[idx], dataset.y[idx])
        else:
            yield idx, default_collate([dataset[i] for i in idx.tolist()])


def endless_batches(
    dataset: SizedDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, Any]]:
    """Reshuffled passes over ``dataset`` forever: the 'cycled forget loader' of NegGrad+ and SCRUB."""
    while True:
        yield from iterate_batches(dataset, batch_size, shuffle=True, generator=generator)
