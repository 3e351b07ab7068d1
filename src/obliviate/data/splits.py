"""Forget / retain splits of a training set, validated up front and identified by a content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import labels_of, subset


def _check_ids(ids: torch.Tensor, n: int, what: str = "forget ids") -> torch.Tensor:
    """Reject ids that are empty, out of range, duplicated or cover the whole training set."""
    if ids.dim() != 1:
        raise ValueError(f"{what} must be a 1-D list of integers, got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{what} must be integers, got dtype {ids.dtype}")
    if len(ids) == 0:
        raise ValueError(f"{what} are empty: there is nothing to forget")
    bad = ids[(ids < 0) | (ids >= n)]
    if len(bad):
        raise ValueError(
            f"{what} out of range for a training set of {n} examples: {bad[:5].tolist()}"
            + (" ..." if len(bad) > 5 else "")
        )
    uniq, counts = torch.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{what} contain duplicates: {uniq[counts > 1][:5].tolist()}")
    if len(uniq) == n:
        raise ValueError(
            f"{what} cover the whole training set ({n} examples): nothing would be retained; "
            "re-initialise the model instead"
        )
    return uniq  # sorted


@dataclass(frozen=True)
class ForgetSplit:
    """Which training examples to forget (``forget_ids``) out of ``n``; the rest are retained.

    ``kind`` records how the split was made (``random:0.1``, ``class:3``, ``ids``); ``classes`` is
    set for class forgetting, where test accuracy is measured without the forgotten classes.
    """

    forget_ids: torch.Tensor
    n: int
    kind: str = "ids"
    classes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "forget_ids", _check_ids(torch.as_tensor(self.forget_ids), self.n))

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def random(
        cls, dataset: Dataset, fraction: float | None = None, *, count: int | None = None, seed: int = 0
    ) -> "ForgetSplit":
        """A uniformly random forget set of ``fraction`` of the data or exactly ``count`` examples."""
        n = len(dataset)
        if (fraction is None) == (count is None):
            raise ValueError("give exactly one of fraction= or count=")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            count = max(1, round(fraction * n))
        if not 0 < count < n:
            raise ValueError(f"count must be in [1, {n - 1}], got {count}")
        g = torch.Generator().manual_seed(seed)
        ids = torch.randperm(n, generator=g)[:count]
        kind = f"random:{fraction}" if fraction is not None else f"random:{count}"
        return cls(ids, n, kind=kind)

    @classmethod
    def by_class(cls, dataset: Dataset, classes: int | Iterable[int]) -> "ForgetSplit":
        """All training examples of the given classes."""
        classes = (classes,) if isinstance(classes, int) else tuple(int(c) for c in classes)
        y = labels_of(dataset)
        present = set(torch.unique(y).tolist())
        unknown = [c for c in classes if c not in present]
        if unknown:
            raise ValueError(f"classes {unknown} have no training examples (labels: {sorted(present)})")
        ids = torch.nonzero(torch.isin(y, torch.tensor(classes))).flatten()
        return cls(ids, len(y), kind="class:" + ",".join(map(str, classes)), classes=classes)

    @classmethod
    def from_ids(cls, dataset: Dataset | int, ids: Sequence[int] | np.ndarray | torch.Tensor) -> "ForgetSplit":
        """An explicit id list (positions in ``dataset``), validated against the dataset's size."""
        n = dataset if isinstance(dataset, int) else len(dataset)
        ids = torch.as_tensor(np.asarray(ids)) if not isinstance(ids, torch.Tensor) else ids
        if ids.dtype.is_floating_point and bool((ids == ids.round()).all()):
            ids = ids.long()  # e.g. an empty list, or ids read back as whole floats
        return cls(ids, n, kind="ids")

    # ---- views --------------------------------------------------------------------------------
    @property
    def retain_ids(self) -> torch.Tensor:
        mask = torch.ones(self.n, dtype=torch.bool)
        mask[self.forget_ids] = False
        return torch.nonzero(mask).flatten()

    def forget_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.n, dtype=torch.bool)
        mask[self.forget_ids] = True
        return mask

    def _subset(self, dataset: Dataset, ids: torch.Tensor) -> Dataset:
        if len(dataset) != self.n:
            raise ValueError(f"split was made for {self.n} examples but the dataset has {len(dataset)}")
        return subset(dataset, ids)

    def retain_set(self, dataset: Dataset) -> Dataset:
        return self._subset(dataset, self.retain_ids)

    def forget_set(self, dataset: Dataset) -> Dataset:
        return self._subset(dataset, self.forget_ids)

    @property
    def hash(self) -> str:
        """Content hash of (n, sorted forget ids): equal splits hash equally, whatever their kind."""
        h = hashlib.sha256(str(self.n).encode())
        h.update(self.forget_ids.numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.forget_ids)

    def __repr__(self) -> str:
        return f"ForgetSplit(kind={self.kind!r}, forget={len(self)}, n={self.n}, hash={self.hash})"

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "kind": self.kind,
            "classes": list(self.classes),
            "hash": self.hash,
            "forget_ids": self.forget_ids.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ForgetSplit":
        split = cls(torch.tensor(d["forget_ids"]), int(d["n"]), d.get("kind", "ids"), tuple(d.get("classes", ())))
        if "hash" in d and d["hash"] != split.hash:
            raise ValueError(f"split hash mismatch: file says {d['hash']}, content gives {split.hash}")
        return split

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "ForgetSplit":
        return cls.from_dict(json.loads(Path(path).read_text()))


def parse_forget_spec(spec: str, dataset: Dataset, seed: int = 0) -> ForgetSplit:
    """Parse the CLI forms ``random:0.1``, ``random:100`` (a count), ``class:3`` or ``class:3,5``."""
    kind, _, arg = spec.partition(":")
    if kind == "random" and arg:
        value = float(arg)
        if value >= 1 and value == int(value):
            return ForgetSplit.random(dataset, count=int(value), seed=seed)
        return ForgetSplit.random(dataset, fraction=value, seed=seed)
    if kind == "class" and arg:
        return ForgetSplit.by_class(dataset, [int(c) for c in arg.split(",")])
    raise ValueError(f"bad forget spec {spec!r}: use random:FRACTION, random:COUNT or class:C[,C...]")
