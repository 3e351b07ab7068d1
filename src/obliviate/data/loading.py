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
        yield idx, _collated(dataset, idx)


def _collated(dataset: SizedDataset, rows: torch.Tensor) -> Any:
    """Tensor datasets are sliced directly, others collated per item."""
    if isinstance(dataset, ArrayDataset):
        return dataset.x[rows], dataset.y[rows]
    return default_collate([dataset[i] for i in rows.tolist()])


def batch_of(dataset: SizedDataset, rows: torch.Tensor) -> Any:
    """The batch of ``rows`` (positions, in any order, repeats allowed) in the task's format: text
    datasets batch themselves (trimming shared padding), the others as :func:`iterate_batches` does."""
    batch = getattr(dataset, "batch", None)
    return batch(rows) if callable(batch) else _collated(dataset, rows)


def endless_batches(
    dataset: SizedDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, Any]]:
    """Reshuffled passes over ``dataset`` forever: the 'cycled forget loader' of NegGrad+ and SCRUB."""
    while True:
        yield from iterate_batches(dataset, batch_size, shuffle=True, generator=generator)
