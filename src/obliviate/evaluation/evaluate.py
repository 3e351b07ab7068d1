"""``ob.evaluate``: one model against the forget / retain / test splits, next to the oracle.

Every metric is reported with the oracle's value, the gap, and the **noise floor** — the same
gap between two oracles of different seeds — because the oracle is itself random: a gap below the
floor cannot be told from retraining.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Iterator

import pandas as pd
import torch
from torch import nn

from ..data.datasets import Data, labels_of, subset
from ..data.splits import ForgetSplit
from ..methods.result import UnlearningResult
from ..metrics.catalogue import METRICS, Metric, Outputs
from ..models.architectures import build
from ..objectives import ClassificationTask
from ..utils import seeded

#: metrics computed unless ``metrics=`` says otherwise
DEFAULT_METRICS = [
    "forget_acc", "retain_acc", "test_acc", "forgotten_class_test_acc", "mia", "mia_efficacy", "entropy_mia",
    "loss_auc", "loss_tpr@1%fpr", "zrf", "kl_forget", "js_forget", "disagreement_forget", "disagreement_test",
    "activation_distance", "avg_gap", "tow", "tow_mia",
]


class Report(Mapping):
    """Metric name -> value; with an oracle also ``.oracle``, ``.gap(name)`` and ``.floor``.

    ``.to_frame()`` gives one row per metric: value, oracle, gap, floor, ideal, direction.
    """

    def __init__(
        self,
        values: dict[str, float],
        oracle: dict[str, float] | None = None,
        floor: dict[str, float] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.values = values
        self.oracle = oracle
        self.floor = floor or {}
        self.details = details or {}

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def gap(self, key: str) -> float:
        """How far from ideal: |value − oracle| (model metrics), the distance itself (pair
        metrics), |value − ideal| (composites); NaN without an oracle."""
        spec = METRICS.get(key)
        if spec is not None and spec.kind == "pair":
            return self.values[key]
        if spec is not None and spec.kind == "composite":
            return abs(self.values[key] - float(spec.ideal))
        if self.oracle is None or key not in self.oracle:
            return float("nan")
        return abs(self.values[key] - self.oracle[key])

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for k, v in self.values.items():
            spec = METRICS.get(k)
            rows.append({
                "metric": k,
                "value": v,
                "oracle": (self.oracle or {}).get(k, float("nan")),
                "gap": self.gap(k),
                "floor": self.floor.get(k, float("nan")),
                "ideal": spec.ideal if spec else "",
                "higher_is_better": spec.higher_is_better if spec else None,
            })
        return pd.DataFrame(rows)

    def compare(self, other: "Report", names: tuple[str, str] = ("self", "other")) -> pd.DataFrame:
        """Side-by-side values and gaps of two reports on their common metrics."""
        a, b = self.to_frame().set_index("metric"), other.to_frame().set_index("metric")
        common = [m for m in a.index if m in b.index]
        return pd.DataFrame({
            f"{names[0]}": a.loc[common, "value"], f"{names[1]}": b.loc[common, "value"],
            f"{names[0]}_gap": a.loc[common, "gap"], f"{names[1]}_gap": b.loc[common, "gap"],
            "floor": a.loc[common, "floor"],
        })

    def __repr__(self) -> str:
        return f"Report({ {k: round(v, 4) for k, v in self.values.items()} })"


def split_views(data: Data, split: ForgetSplit) -> dict[str, torch.utils.data.Dataset]:
    """Evaluation sets of a split: forget, retain, test (minus forgotten classes), test_all and,
    for class forgetting, the forgotten classes' test examples."""
    views = {"forget": split.forget_set(data.train), "retain": split.retain_set(data.train),
             "test": data.test, "test_all": data.test}
    if split.classes:
        gone = torch.isin(labels_of(data.test), torch.tensor(split.classes))
        views["test"] = subset(data.test, torch.nonzero(~gone).flatten())
        views["forgotten_class_test"] = subset(data.test, torch.nonzero(gone).flatten())
    return views


def outputs_of(
    model: nn.Module, data: Data, split: ForgetSplit, *, device: torch.device | None = None,
    random_model: nn.Module | None = None, seed: int = 0,
) -> Outputs:
    """Run a model once over every evaluation view (test logits are shared by test/test_all)."""
    task = ClassificationTask(data.num_classes)
    views = split_views(data, split)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    out = {}
    for name, ds in views.items():
        if id(ds) not in cache:
            cache[id(ds)] = task.predict(model, ds, device=device)
        out[name] = cache[id(ds)]
    rand = task.predict(random_model, views["forget"], device=device)[0] if random_model is not None else None
    return Outputs(out, rand, seed)


def random_init_like(model: nn.Module, seed: int = 0) -> nn.Module | None:
    """A freshly initialised model of the same built-in architecture (ZRF's "incompetent" model)."""
    spec = getattr(model, "obliviate_spec", None)
    if spec is None:
        return None
    with seeded(seed):
        return build(spec["architecture"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"]).eval()


def _model_values(specs: list[Metric], outs: Outputs) -> dict[str, float]:
    return {m.name: m.fn(outs) for m in specs if m.kind == "model" and m.applicable(outs)}


def _pair_values(specs: list[Metric], outs: Outputs, ref_outs: Outputs) -> dict[str, float]:
    return {m.name: m.fn(outs, ref_outs) for m in specs if m.kind == "pair" and m.applicable(outs)}


def _composites(specs: list[Metric], values: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    return {m.name: m.fn(values, ref) for m in specs
            if m.kind == "composite" and set(m.needs) <= set(values) and set(m.needs) <= set(ref)}


def _unwrap(model: nn.Module | UnlearningResult) -> tuple[nn.Module, float | None]:
    if isinstance(model, UnlearningResult):
        return model.model, model.seconds
    return model, None


def evaluate(
    model: nn.Module | UnlearningResult,
    data: Data,
    split: ForgetSplit,
    *,
    oracle: nn.Module | UnlearningResult | Sequence[nn.Module | UnlearningResult] | None = None,
    metrics: Sequence[str] | None = None,
    protocol: str = "oracle",
    method: str | None = None,
    n_models: int = 32,
    device: str | torch.device | None = None,
    seed: int = 0,
    random_model: nn.Module | None = None,
    cache: dict | None = None,
    **method_overrides: Any,
) -> Report:
    """Evaluate an unlearned model on ``split`` of ``data``.

    ``protocol="oracle"`` (default): ``model`` is the unlearned model (or an UnlearningResult, whose
    seconds are reported); ``oracle`` one retrained model, or several (of different seeds: the
    first is the reference, the second gives the noise floor). Pass UnlearningResults of
    ``retrain`` to get ``cost_ratio`` (seconds / retrain seconds).
    ``protocol="neurips23"``: ``model`` is the *original*; the method is re-run ``n_models`` times
    and ``n_models`` oracles are trained as one vectorised ensemble (see
    :func:`obliviate.evaluation.protocols.neurips23`).
    ``cache``: a dict kept across calls that share oracles (a grid's cells): each oracle's outputs
    and metric values are then computed once, not once per call. ``report.details["outputs"]``
    holds the model's own outputs (logits and labels per view) for further analysis.
    """
    if protocol == "neurips23":
        if method is None:
            raise ValueError('protocol="neurips23" needs method= (the method to re-run)')
        from .protocols import neurips23

        return neurips23(_unwrap(model)[0], data, split, method=method, n_models=n_models, seed=seed,
                         device=device, **method_overrides)
    if protocol != "oracle":
        raise ValueError(f"unknown protocol {protocol!r}; use 'oracle' or 'neurips23'")
    if method is not None or method_overrides:
        raise ValueError('method= and method parameters are only used with protocol="neurips23"')
    names = list(metrics) if metrics is not None else DEFAULT_METRICS
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; available: {list(METRICS)}")
    for name in list(names):  # a composite brings the metrics it is made of, so it is never silently missing
        names = [d for d in METRICS[name].needs if METRICS[name].kind == "composite" and d not in names] + names
    specs = [METRICS[n] for n in names]
    dev = torch.device(device) if device is not None else None
    net, seconds = _unwrap(model)
    rand = random_model if random_model is not None else random_init_like(net, seed)

    def measured(m: nn.Module) -> tuple[Outputs, dict[str, float]]:
        key = (id(m), tuple(names), seed, split.hash, id(data))
        if cache is not None and key in cache and cache[key][0] is m:  # the entry pins m: ids cannot be reused
            return cache[key][1], cache[key][2]
        outs = outputs_of(m, data, split, device=dev, random_model=rand, seed=seed)
        vals = _model_values(specs, outs)
        if cache is not None:
            cache[key] = (m, outs, vals)
        return outs, vals

    outs = outputs_of(net, data, split, device=dev, random_model=rand, seed=seed)
    values = _model_values(specs, outs)
    details = {"outputs": outs}
    if seconds is not None:
        values["seconds"] = seconds
    oracles = [] if oracle is None else list(oracle) if isinstance(oracle, (list, tuple)) else [oracle]
    if not oracles:
        return Report(values, details=details)

    ref_net, ref_seconds = _unwrap(oracles[0])
    ref_outs, ref = measured(ref_net)
    values.update(_pair_values(specs, outs, ref_outs))
    values.update(_composites(specs, values, ref))
    if seconds is not None and ref_seconds:
        values["cost_ratio"] = seconds / ref_seconds
    floor: dict[str, float] = {}
    if len(oracles) > 1:
        o2_outs, o2 = measured(_unwrap(oracles[1])[0])
        floor = {k: abs(o2[k] - ref[k]) for k in o2 if k in ref}
        floor.update(_pair_values(specs, o2_outs, ref_outs))
        comp = _composites(specs, o2, ref)
        floor.update({k: abs(v - float(METRICS[k].ideal)) for k, v in comp.items()})
    return Report(values, ref, floor, details)
