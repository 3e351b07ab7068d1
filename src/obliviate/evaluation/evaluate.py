"""``ob.evaluate``: one model against the forget / retain / test splits, next to the oracle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import Data, labels_of, subset
from ..data.splits import ForgetSplit
from ..metrics import accuracy, loss_mia
from ..objectives import ClassificationTask

#: metric -> (description, ideal). Every ideal here is "equal to the oracle's value".
METRICS: dict[str, str] = {
    "forget_acc": "accuracy on the forget set D_f",
    "retain_acc": "accuracy on the retain set D_r",
    "test_acc": "accuracy on the test set (class forgetting: without the forgotten classes)",
    "forgotten_class_test_acc": "class forgetting only: test accuracy on the forgotten classes",
    "mia": "starting-kit loss MIA: CV accuracy telling D_f from test by loss (~0.5 ideal)",
}


class Report(Mapping):
    """Metric name -> value, with the oracle's values and gaps when an oracle was given."""

    def __init__(self, values: dict[str, float], oracle: dict[str, float] | None = None) -> None:
        self.values = values
        self.oracle = oracle

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def gap(self, key: str) -> float:
        """|value - oracle value| (NaN without an oracle)."""
        if self.oracle is None or key not in self.oracle:
            return float("nan")
        return abs(self.values[key] - self.oracle[key])

    def to_frame(self) -> pd.DataFrame:
        rows = [
            {"metric": k, "value": v, "oracle": (self.oracle or {}).get(k, float("nan")), "gap": self.gap(k)}
            for k, v in self.values.items()
        ]
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"Report({self.values})"


def split_views(data: Data, split: ForgetSplit) -> dict[str, torch.utils.data.Dataset]:
    """The evaluation sets of a split: forget, retain, test (minus forgotten classes) and,
    for class forgetting, the forgotten classes' test examples."""
    views = {"forget": split.forget_set(data.train), "retain": split.retain_set(data.train), "test": data.test}
    if split.classes:
        y = labels_of(data.test)
        gone = torch.isin(y, torch.tensor(split.classes))
        views["test"] = subset(data.test, torch.nonzero(~gone).flatten())
        views["forgotten_class_test"] = subset(data.test, torch.nonzero(gone).flatten())
    return views


def model_metrics(
    model: nn.Module, data: Data, split: ForgetSplit, *, device: torch.device | None = None, seed: int = 0
) -> dict[str, float]:
    """Accuracies on every split view and the loss MIA (forget vs the full test set)."""
    task = ClassificationTask(data.num_classes)
    out = {name: task.predict(model, ds, device=device) for name, ds in split_views(data, split).items()}
    values = {f"{name}_acc": accuracy(*out[name]) for name in out}
    full_test = task.predict(model, data.test, device=device) if split.classes else out["test"]
    forget_loss = F.cross_entropy(*out["forget"], reduction="none")
    test_loss = F.cross_entropy(*full_test, reduction="none")
    values["mia"] = loss_mia(forget_loss, test_loss, seed=seed)
    return values


def evaluate(
    model: nn.Module,
    data: Data,
    split: ForgetSplit,
    *,
    oracle: nn.Module | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> Report:
    """Evaluate ``model`` on ``split`` of ``data``; with ``oracle``, report its values and the gaps."""
    dev = torch.device(device) if device is not None else None
    values = model_metrics(model, data, split, device=dev, seed=seed)
    ref = model_metrics(oracle, data, split, device=dev, seed=seed) if oracle is not None else None
    return Report(values, ref)
