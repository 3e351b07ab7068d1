"""The training log kept with a trained model: recipe, seed, cost, per-example learning events and,
when asked for, the per-batch parameter updates that Amnesiac unlearning subtracts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class UpdateLog:
    """Parameter updates of the optimiser steps whose batch held a logged example.

    ``deltas`` [B, P] float32: row b is θ_after − θ_before of one step, all of
    ``model.parameters()`` flattened in order (buffers such as BatchNorm statistics are not
    included). Batch b held the training-set ids ``batch_ids[offsets[b]:offsets[b + 1]]`` (the
    whole batch, logged or not). ``logged_ids`` (sorted) is the set the log was asked to cover:
    every batch holding one of them is here, so it is exactly the ids that can be unlearned.
    """

    deltas: torch.Tensor
    batch_ids: torch.Tensor
    offsets: torch.Tensor
    logged_ids: torch.Tensor

    def touching(self, ids: torch.Tensor) -> torch.Tensor:
        """Bool [B]: which logged batches hold any of ``ids`` (one vectorised ``isin``)."""
        hit = torch.isin(self.batch_ids, torch.as_tensor(ids, dtype=torch.long))
        hits_before = torch.cat([torch.zeros(1, dtype=torch.long), hit.long().cumsum(0)])
        return hits_before[self.offsets[1:]] > hits_before[self.offsets[:-1]]

    def uncovered(self, ids: torch.Tensor) -> torch.Tensor:
        """The ``ids`` the log was not asked to cover (their batches may be missing)."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        return ids[~torch.isin(ids, self.logged_ids)]

    def to_state(self) -> dict[str, torch.Tensor]:
        return {
            "deltas": self.deltas,
            "batch_ids": self.batch_ids,
            "offsets": self.offsets,
            "logged_ids": self.logged_ids,
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> UpdateLog:
        """Rebuild from :meth:`to_state`'s tensors; an inconsistent file is refused."""
        missing = {"deltas", "batch_ids", "offsets", "logged_ids"} - set(state)
        if missing:
            raise ValueError(f"update log is missing {sorted(missing)}")
        log = cls(state["deltas"], state["batch_ids"], state["offsets"], state["logged_ids"])
        if (
            log.deltas.dim() != 2
            or log.offsets.shape != (len(log.deltas) + 1,)
            or (len(log.offsets) and int(log.offsets[-1]) != len(log.batch_ids))
        ):
            raise ValueError("update log is inconsistent: deltas, offsets and batch_ids do not match")
        return log


@dataclass
class TrainingLog:
    """What :func:`obliviate.train` records about a model it trained.

    ``events`` maps a statistic to an [epochs, N] tensor of what each training example looked like
    in the training forward pass of every epoch: ``confidence`` (true-class probability),
    ``max_conf``, ``entropy`` and ``correct`` for classification. They are free to record, and
    RUM's learning-event memorization proxies average them over epochs. ``updates`` holds the
    per-batch parameter updates when training was asked to log them
    (``ob.train(..., log_updates=ids)``), else None.
    """

    recipe: dict[str, Any]
    seed: int
    seconds: float
    #: training-set size; None where unknown (an ``Ensemble`` built without ``n_examples``)
    n_examples: int | None
    dataset: str | None = None
    events: dict[str, torch.Tensor] = field(default_factory=dict)
    updates: UpdateLog | None = None

    @property
    def confidence(self) -> torch.Tensor:
        """[epochs, N] true-class probability per epoch (empty when not logged)."""
        return self.events.get("confidence", torch.empty(0))


def training_log(model: torch.nn.Module) -> TrainingLog | None:
    """The :class:`TrainingLog` attached to a model trained (or loaded) by obliviate, if any."""
    return getattr(model, "obliviate_log", None)
