"""The :class:`Report` every evaluation returns, and the evaluation views of a split.

Kept apart from ``evaluate.py`` so protocols (which build Reports) and ``ob.evaluate`` (which
dispatches to protocols) import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import torch

from ..data.datasets import Data, SizedDataset, labels_of, subset
from ..data.splits import ForgetSplit
from ..metrics.catalogue import ORACLE, Modality, spec_of


class Report(Mapping):
    """Metric name -> value; with an oracle also ``.oracle``, ``.gap(name)`` and ``.floor``.

    ``.to_frame()`` gives one row per metric: value, oracle, gap, floor, ideal, direction.
    ``modality`` says which catalogue entries the rows are (a name can mean different things per
    modality: NeurIPS 2023's ``forget_quality`` is not TOFU's).
    """

    #: the metric dict; as an instance attribute it shadows ``Mapping.values()`` (kept: public name)
    values: dict[str, float]  # type: ignore[assignment]

    def __init__(
        self,
        values: dict[str, float],
        oracle: dict[str, float] | None = None,
        floor: dict[str, float] | None = None,
        details: dict[str, Any] | None = None,
        modality: Modality = Modality.CLASSIFICATION,
    ) -> None:
        self.values = values
        self.oracle = oracle
        self.floor = floor or {}
        self.details = details or {}
        self.modality = modality

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def gap(self, key: str) -> float:
        """How far from ideal: |value − oracle| (model metrics), |value − the fixed ideal| (pair
        metrics and composites); NaN where the ideal is the oracle and there is none."""
        spec = spec_of(key, self.modality)
        ref = (self.oracle or {}).get(key)
        if spec is not None and spec.ideal != ORACLE:
            return spec.gap(self.values[key])
        return float("nan") if ref is None else abs(self.values[key] - ref)

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for k, v in self.values.items():
            spec = spec_of(k, self.modality)
            rows.append(
                {
                    "metric": k,
                    "value": v,
                    "oracle": (self.oracle or {}).get(k, float("nan")),
                    "gap": self.gap(k),
                    "floor": self.floor.get(k, float("nan")),
                    "ideal": spec.ideal_label if spec else "",
                    "higher_is_better": spec.higher_is_better if spec else None,
                    "direction": spec.direction.value if spec else "",
                }
            )
        return pd.DataFrame(rows)

    def compare(self, other: Report, names: tuple[str, str] = ("self", "other")) -> pd.DataFrame:
        """Side-by-side values and gaps of two reports on their common metrics."""
        a, b = self.to_frame().set_index("metric"), other.to_frame().set_index("metric")
        common = [m for m in a.index if m in b.index]
        return pd.DataFrame(
            {
                f"{names[0]}": a.loc[common, "value"],
                f"{names[1]}": b.loc[common, "value"],
                f"{names[0]}_gap": a.loc[common, "gap"],
                f"{names[1]}_gap": b.loc[common, "gap"],
                "floor": a.loc[common, "floor"],
            }
        )

    def __repr__(self) -> str:
        return f"Report({ {k: round(v, 4) for k, v in self.values.items()} })"


def split_views(data: Data, split: ForgetSplit) -> dict[str, SizedDataset]:
    """Evaluation sets of a split: forget, retain, test (minus forgotten classes), test_all and,
    for class forgetting, the forgotten classes' test examples."""
    views = {
        "forget": split.forget_set(data.train),
        "retain": split.retain_set(data.train),
        "test": data.test,
        "test_all": data.test,
    }
    if split.classes:
        gone = torch.isin(labels_of(data.test), torch.tensor(split.classes))
        views["test"] = subset(data.test, torch.nonzero(~gone).flatten())
        views["forgotten_class_test"] = subset(data.test, torch.nonzero(gone).flatten())
    return views
