"""Metric objects: each wraps a pure function and declares its ideal, direction and comparison.

Three kinds, by how the unlearned model is compared with the oracle:

* ``model``: computed on one model; judged by ``gap = |value − oracle's value|`` (ideal: equal to
  the oracle). The noise floor is the gap between two oracles of different seeds.
* ``pair``: a distance between the model's outputs and the oracle's; the value *is* the gap
  (ideal 0). The noise floor is the same distance between two oracles.
* ``composite``: combines model-kind values of the model and of the oracle (Avg.Gap, ToW);
  judged against a fixed ideal; noise floor = the composite of a second oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .accuracy import accuracy
from .composite import avg_gap, tow, tow_mia
from .divergence import activation_distance, disagreement, js_divergence, kl, symmetric_kl, zrf
from .mia import FEATURES, entropy_mia, loss_mia, mia_efficacy, svc_mia, threshold_attack

Pair = tuple[torch.Tensor, torch.Tensor]  # (logits, labels)


@dataclass
class Outputs:
    """One model's eval-mode outputs on the evaluation views of a split.

    ``views`` maps ``forget``, ``retain``, ``test`` (without forgotten classes), ``test_all`` and,
    for class forgetting, ``forgotten_class_test`` to (logits, labels); ``random_forget`` holds a
    randomly initialised model's logits on D_f (for ZRF) when available.
    """

    views: dict[str, Pair]
    random_forget: torch.Tensor | None = None
    seed: int = 0

    def losses(self, view: str) -> torch.Tensor:
        logits, labels = self.views[view]
        return F.cross_entropy(logits, labels, reduction="none")


@dataclass(frozen=True)
class Metric:
    """A named metric with its direction and ideal; ``fn`` signature depends on ``kind``."""

    name: str
    kind: str  # "model" | "pair" | "composite"
    fn: Callable[..., float]
    description: str
    ideal: str  # human-readable: "oracle", "0", "1"
    higher_is_better: bool | None = None  # None: closer to the oracle is better
    source: str = ""
    needs: tuple[str, ...] = field(default=())  # views or inputs required

    def applicable(self, outputs: Outputs) -> bool:
        have = set(outputs.views) | ({"random_forget"} if outputs.random_forget is not None else set())
        return set(self.needs) <= have


def _to_oracle(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], view: str) -> Callable[..., float]:
    """A pair metric: mean of ``fn(oracle logits, model logits)`` over one view."""
    return lambda o, r: float(fn(r.views[view][0], o.views[view][0]).mean())


def _loss_attack(key: str) -> Callable[[Outputs], float]:
    return lambda o: threshold_attack(-o.losses("forget"), -o.losses("test_all"))[key]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # --- accuracies (reference §6.1) ---
        Metric("forget_acc", "model", lambda o: accuracy(*o.views["forget"]), "accuracy on the forget set D_f",
               "oracle", source="§6.1", needs=("forget",)),
        Metric("retain_acc", "model", lambda o: accuracy(*o.views["retain"]), "accuracy on the retain set D_r",
               "oracle", source="§6.1", needs=("retain",)),
        Metric("test_acc", "model", lambda o: accuracy(*o.views["test"]),
               "test accuracy (class forgetting: without the forgotten classes)", "oracle", source="§6.1",
               needs=("test",)),
        Metric("forgotten_class_test_acc", "model", lambda o: accuracy(*o.views["forgotten_class_test"]),
               "class forgetting: test accuracy on the forgotten classes", "oracle (0)", source="§6.1",
               needs=("forgotten_class_test",)),
        # --- population MIAs (reference §4.5, §5.3) ---
        Metric("mia", "model", lambda o: loss_mia(o.losses("forget"), o.losses("test_all"), seed=o.seed),
               "starting-kit loss MIA: CV accuracy of a logistic regression telling D_f from test by loss",
               "oracle (~0.5)", source="NeurIPS 2023 starting kit", needs=("forget", "test_all")),
        Metric("mia_efficacy", "model",
               lambda o: mia_efficacy(o.views["retain"], o.views["test_all"], o.views["forget"]),
               "SalUn MIA-efficacy: SVC on raw confidence, first |test| rows of D_r vs test; share of D_f "
               "predicted non-member",
               "oracle", source="SalUn SVC_MIA.py", needs=("forget", "retain", "test_all")),
        Metric("mia_efficacy_5", "model",
               lambda o: svc_mia(o.views["retain"], o.views["test_all"], o.views["forget"], features=FEATURES,
                                 seed=o.seed),
               "obliviate's standardised SVC attack on five features (correctness, confidence, entropy, "
               "modified entropy, max prob); share of D_f predicted non-member",
               "oracle", source="SalUn SVC_MIA.py features, combined and standardised", needs=("forget", "retain", "test_all")),
        Metric("entropy_mia", "model",
               lambda o: entropy_mia(o.views["retain"], o.views["test_all"], o.views["forget"], seed=o.seed),
               "SSD entropy MIA: balanced logistic regression, D_r vs test; share of D_f predicted member",
               "oracle", source="SSD src/metrics.py", needs=("forget", "retain", "test_all")),
        Metric("loss_auc", "model", _loss_attack("auc"), "ROC AUC of a loss-threshold attack, D_f vs test",
               "oracle (~0.5)", source="Carlini et al. 2022", needs=("forget", "test_all")),
        Metric("loss_tpr@1%fpr", "model", _loss_attack("tpr@1%fpr"), "loss-threshold attack TPR at 1% FPR",
               "oracle", source="Carlini et al. 2022", needs=("forget", "test_all")),
        Metric("loss_tpr@0.1%fpr", "model", _loss_attack("tpr@0.1%fpr"), "loss-threshold attack TPR at 0.1% FPR",
               "oracle", source="Carlini et al. 2022", needs=("forget", "test_all")),
        Metric("zrf", "model", lambda o: zrf(o.views["forget"][0], o.random_forget),
               "zero-retrain forgetting: 1 − JS(model, random init)/ln 2 on D_f", "oracle",
               source="Chundawat et al. 2023", needs=("forget", "random_forget")),
        # --- distances to the oracle (reference §6.3) ---
        Metric("kl_forget", "pair", _to_oracle(kl, "forget"),
               "mean KL(p_oracle || p_model) on D_f", "0", False, "§6.3", ("forget",)),
        Metric("sym_kl_forget", "pair", _to_oracle(symmetric_kl, "forget"),
               "mean symmetric KL to the oracle on D_f", "0", False, "RUM", ("forget",)),
        Metric("js_forget", "pair", _to_oracle(js_divergence, "forget"),
               "mean Jensen-Shannon divergence to the oracle on D_f (nats)", "0", False, "§6.3", ("forget",)),
        Metric("js_test", "pair", _to_oracle(js_divergence, "test"),
               "mean Jensen-Shannon divergence to the oracle on the test set (a control)", "0", False, "§6.3",
               ("test",)),
        Metric("activation_distance", "pair",
               _to_oracle(activation_distance, "forget"),
               "mean L2 distance between softmax outputs and the oracle's on D_f", "0", False, "SSD", ("forget",)),
        Metric("disagreement_forget", "pair",
               _to_oracle(disagreement, "forget"),
               "share of D_f where the top-1 prediction differs from the oracle's", "0", False, "RUM", ("forget",)),
        Metric("disagreement_test", "pair", _to_oracle(disagreement, "test"),
               "share of the test set where the top-1 prediction differs from the oracle's", "0", False, "RUM",
               ("test",)),
        # --- composites (reference §2.5, §6.2) ---
        Metric("avg_gap", "composite", avg_gap,
               "SalUn Avg.Gap: mean |gap| of UA, RA, TA and MIA-efficacy, in points", "0", False, "§6.2",
               ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")),
        Metric("tow", "composite", tow, "RUM Tug-of-War: Π(1 − |gap|) over forget/retain/test accuracy", "1",
               True, "§2.5", ("forget_acc", "retain_acc", "test_acc")),
        Metric("tow_mia", "composite", tow_mia, "ToW with the forget term replaced by MIA-efficacy", "1", True,
               "§2.5", ("mia_efficacy", "retain_acc", "test_acc")),
    ]
}


def available() -> list[str]:
    """Names of the metrics :func:`obliviate.evaluate` can compute."""
    return list(METRICS)
