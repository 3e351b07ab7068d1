"""Metric objects: each wraps a pure function and declares, as typed fields, the modalities it
applies to, its direction and its ideal. Everything that ranks, tunes or colours a cell reads
direction from here (:func:`direction_of`, :meth:`Metric.loss`, :meth:`Metric.better`).

Three kinds, by how the unlearned model is compared with the oracle:

* ``model``: computed on one model; ideal = the oracle's value, judged by ``gap = |value − oracle's
  value|``. The noise floor is the gap between two oracles of different seeds.
* ``pair``: computed from the model's outputs and the oracle's (a distance, PrivLeak, the KS forget
  quality); judged against a fixed ideal. The noise floor is the same quantity for a second oracle.
* ``composite``: combines model-kind values of the model and of the oracle (Avg.Gap, ToW);
  judged against a fixed ideal; noise floor = the composite of a second oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from . import generative as gen
from .accuracy import accuracy
from .composite import avg_gap, avg_gap_ma, tow, tow_mia
from .divergence import activation_distance, disagreement, js_divergence, kl, symmetric_kl, zrf
from .lm import (
    SAMPLE_N,
    SAMPLE_TEMPERATURE,
    SAMPLE_TOP_K,
    Calibration,
    SequenceScores,
    forget_quality,
    lm_mia,
    privleak,
    sampled_extraction,
    zlib_score,
)
from .mia import FEATURES, entropy_mia, loss_mia, mia_efficacy, svc_mia, threshold_attack


class Modality(str, Enum):
    """What kind of model a metric reads: a classifier's logits, a causal LM's per-sequence scores or
    a class-conditional diffusion model's samples (as a judge classifier sees them)."""

    CLASSIFICATION = "classification"
    CAUSAL_LM = "causal_lm"
    DIFFUSION = "diffusion"


class Direction(str, Enum):
    """Which way is better: a higher value, a lower one, or closer to the ideal (for model metrics,
    the oracle's value; for pair metrics such as PrivLeak, a fixed number)."""

    HIGHER = "higher"
    LOWER = "lower"
    ORACLE = "oracle"


#: the ideal of a model metric: equal to the oracle's value
ORACLE: Literal["oracle"] = "oracle"
CLASSIFICATION = frozenset({Modality.CLASSIFICATION})
CAUSAL_LM = frozenset({Modality.CAUSAL_LM})
DIFFUSION = frozenset({Modality.DIFFUSION})

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

    def available(self) -> set[str]:
        return set(self.views) | ({"random_forget"} if self.random_forget is not None else set())


@dataclass
class SequenceOutputs:
    """One causal LM's per-sequence scores on the evaluation views of a split.

    ``views`` maps ``forget``, ``retain`` and ``test`` (never-trained sequences of the same kind) to
    :class:`SequenceScores`; ``texts`` the rows' texts (zlib attack); ``probes`` a dataset's own
    extraction probes (e.g. the people scenario's secrets); ``truth_ratio`` the forget questions'
    TOFU truth ratios where QA probes exist; ``perplexity`` on held-out natural text;
    ``calibration`` the *original*'s γ and perplexity, which c(γ) and ``ppl_change`` are relative to.
    """

    views: dict[str, SequenceScores]
    texts: dict[str, list[str] | None] = field(default_factory=dict)
    probes: dict[str, SequenceScores] = field(default_factory=dict)
    truth_ratio: np.ndarray | None = None
    perplexity: float | None = None
    calibration: Calibration | None = None

    def available(self) -> set[str]:
        have = set(self.views)
        if self.texts.get("forget") is not None and self.texts.get("test") is not None:
            have.add("texts")
        if self.truth_ratio is not None:
            have.add("truth_ratio")
        if self.perplexity is not None:
            have.add("perplexity")
        if self.calibration is not None:
            have.add("calibration")
            if self.calibration.perplexity is not None:
                have.add("original_perplexity")
        return have | {f"probe:{k}" for k in self.probes}


@dataclass(frozen=True)
class Metric:
    """A named metric; ``fn`` takes one model's outputs (``model``), the model's and the oracle's
    (``pair``) or two dicts of model values (``composite``).

    ``ideal`` is :data:`ORACLE` for model metrics (a retrained model is the target, whatever its
    value) and a number for pair and composite metrics.
    """

    name: str
    kind: Literal["model", "pair", "composite"]
    fn: Callable[..., float]
    description: str
    direction: Direction = Direction.ORACLE
    ideal: float | Literal["oracle"] = ORACLE
    modalities: frozenset[Modality] = CLASSIFICATION
    source: str = ""
    needs: tuple[str, ...] = field(default=())  # views or inputs required

    def __post_init__(self) -> None:
        if (self.kind == "model") != (self.ideal == ORACLE):
            raise ValueError(f"{self.name}: model metrics have the oracle as ideal, pair and composite ones a number")
        if self.kind == "model" and self.direction is not Direction.ORACLE:
            raise ValueError(f"{self.name}: a model metric is judged by closeness to the oracle")

    @property
    def higher_is_better(self) -> bool | None:
        """The old boolean view of :attr:`direction` (None: closer to the ideal is better)."""
        return {Direction.HIGHER: True, Direction.LOWER: False, Direction.ORACLE: None}[self.direction]

    @property
    def ideal_label(self) -> str:
        return self.ideal if isinstance(self.ideal, str) else f"{self.ideal:g}"

    def gap(self, value: float, oracle: float | None = None) -> float:
        """|value − ideal|, the ideal being the oracle's value for model metrics (NaN without it)."""
        if self.ideal == ORACLE:
            return float("nan") if oracle is None else abs(value - oracle)
        return abs(value - float(self.ideal))

    def loss(self, value: float, oracle: float | None = None) -> float:
        """A number to minimise: −value (higher is better), value (lower), else the gap."""
        if self.direction is Direction.HIGHER:
            return -value
        if self.direction is Direction.LOWER:
            return value
        return self.gap(value, oracle)

    def better(self, a: float, b: float, oracle: float | None = None) -> bool:
        """Whether value ``a`` is strictly better than ``b`` (``oracle``: the oracle's value, for model metrics)."""
        la, lb = self.loss(a, oracle), self.loss(b, oracle)
        return not math.isnan(la) and (math.isnan(lb) or la < lb)

    def applicable(self, outputs: Outputs | SequenceOutputs) -> bool:
        return set(self.needs) <= outputs.available()


def _to_oracle(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], view: str) -> Callable[..., float]:
    """A pair metric: mean of ``fn(oracle logits, model logits)`` over one view."""
    return lambda o, r: float(fn(r.views[view][0], o.views[view][0]).mean())


def _loss_attack(key: str) -> Callable[[Outputs], float]:
    return lambda o: threshold_attack(-o.losses("forget"), -o.losses("test_all"))[key]


def _lm_mia(score: str) -> Callable[[SequenceOutputs], float]:
    """AUC of telling D_f from the never-trained ``test`` rows by one per-sequence score."""
    return lambda o: lm_mia(getattr(o.views["forget"], score), getattr(o.views["test"], score))["auc"]


def _zlib_auc(o: SequenceOutputs) -> float:
    f, t = o.views["forget"], o.views["test"]
    return lm_mia(zlib_score(f.nll, o.texts["forget"] or []), zlib_score(t.nll, o.texts["test"] or []))["auc"]


def _c_gamma(stat: str) -> Callable[[SequenceOutputs], float]:
    """c(D_f): forget sequences whose MA exceeds γ, γ a statistic of the *original*'s test MAs."""
    return lambda o: float((o.views["forget"].ma > o.calibration.gamma[stat]).sum())  # type: ignore[union-attr]


def _ma(view: str) -> Callable[[SequenceOutputs], float]:
    return lambda o: float(o.views[view].ma.mean())


C, L = CLASSIFICATION, CAUSAL_LM
HIGHER, LOWER = Direction.HIGHER, Direction.LOWER

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        # --- accuracies (reference §6.1) ---
        Metric(
            "forget_acc",
            "model",
            lambda o: accuracy(*o.views["forget"]),
            "accuracy on the forget set D_f",
            source="§6.1",
            needs=("forget",),
        ),
        Metric(
            "retain_acc",
            "model",
            lambda o: accuracy(*o.views["retain"]),
            "accuracy on the retain set D_r",
            source="§6.1",
            needs=("retain",),
        ),
        Metric(
            "test_acc",
            "model",
            lambda o: accuracy(*o.views["test"]),
            "test accuracy (class forgetting: without the forgotten classes)",
            source="§6.1",
            needs=("test",),
        ),
        Metric(
            "forgotten_class_test_acc",
            "model",
            lambda o: accuracy(*o.views["forgotten_class_test"]),
            "class forgetting: test accuracy on the forgotten classes (the oracle's is ~0)",
            source="§6.1",
            needs=("forgotten_class_test",),
        ),
        # --- population MIAs (reference §4.5, §5.3) ---
        Metric(
            "mia",
            "model",
            lambda o: loss_mia(o.losses("forget"), o.losses("test_all"), seed=o.seed),
            "starting-kit loss MIA: CV accuracy of a logistic regression telling D_f from test by loss "
            "(the oracle's is ~0.5)",
            source="NeurIPS 2023 starting kit",
            needs=("forget", "test_all"),
        ),
        Metric(
            "mia_efficacy",
            "model",
            lambda o: mia_efficacy(o.views["retain"], o.views["test_all"], o.views["forget"]),
            "SalUn MIA-efficacy: SVC on raw confidence, first |test| rows of D_r vs test; share of D_f "
            "predicted non-member",
            source="SalUn SVC_MIA.py",
            needs=("forget", "retain", "test_all"),
        ),
        Metric(
            "mia_efficacy_5",
            "model",
            lambda o: svc_mia(
                o.views["retain"], o.views["test_all"], o.views["forget"], features=FEATURES, seed=o.seed
            ),
            "obliviate's standardised SVC attack on five features (correctness, confidence, entropy, "
            "modified entropy, max prob); share of D_f predicted non-member",
            source="SalUn SVC_MIA.py features, combined and standardised",
            needs=("forget", "retain", "test_all"),
        ),
        Metric(
            "entropy_mia",
            "model",
            lambda o: entropy_mia(o.views["retain"], o.views["test_all"], o.views["forget"], seed=o.seed),
            "SSD entropy MIA: balanced logistic regression, D_r vs test; share of D_f predicted member",
            source="SSD src/metrics.py",
            needs=("forget", "retain", "test_all"),
        ),
        Metric(
            "loss_auc",
            "model",
            _loss_attack("auc"),
            "ROC AUC of a loss-threshold attack, D_f vs test (the oracle's is ~0.5)",
            source="Carlini et al. 2022",
            needs=("forget", "test_all"),
        ),
        Metric(
            "loss_tpr@1%fpr",
            "model",
            _loss_attack("tpr@1%fpr"),
            "loss-threshold attack TPR at 1% FPR",
            source="Carlini et al. 2022",
            needs=("forget", "test_all"),
        ),
        Metric(
            "loss_tpr@0.1%fpr",
            "model",
            _loss_attack("tpr@0.1%fpr"),
            "loss-threshold attack TPR at 0.1% FPR",
            source="Carlini et al. 2022",
            needs=("forget", "test_all"),
        ),
        Metric(
            "zrf",
            "model",
            lambda o: zrf(o.views["forget"][0], o.random_forget),
            "zero-retrain forgetting: 1 − JS(model, random init)/ln 2 on D_f",
            source="Chundawat et al. 2023",
            needs=("forget", "random_forget"),
        ),
        # --- distances to the oracle (reference §6.3) ---
        Metric(
            "kl_forget",
            "pair",
            _to_oracle(kl, "forget"),
            "mean KL(p_oracle || p_model) on D_f",
            LOWER,
            0.0,
            C,
            "§6.3",
            ("forget",),
        ),
        Metric(
            "sym_kl_forget",
            "pair",
            _to_oracle(symmetric_kl, "forget"),
            "mean symmetric KL to the oracle on D_f",
            LOWER,
            0.0,
            C,
            "RUM",
            ("forget",),
        ),
        Metric(
            "js_forget",
            "pair",
            _to_oracle(js_divergence, "forget"),
            "mean Jensen-Shannon divergence to the oracle on D_f (nats)",
            LOWER,
            0.0,
            C,
            "§6.3",
            ("forget",),
        ),
        Metric(
            "js_test",
            "pair",
            _to_oracle(js_divergence, "test"),
            "mean Jensen-Shannon divergence to the oracle on the test set (a control)",
            LOWER,
            0.0,
            C,
            "§6.3",
            ("test",),
        ),
        Metric(
            "activation_distance",
            "pair",
            _to_oracle(activation_distance, "forget"),
            "mean L2 distance between softmax outputs and the oracle's on D_f",
            LOWER,
            0.0,
            C,
            "SSD",
            ("forget",),
        ),
        Metric(
            "disagreement_forget",
            "pair",
            _to_oracle(disagreement, "forget"),
            "share of D_f where the top-1 prediction differs from the oracle's",
            LOWER,
            0.0,
            C,
            "RUM",
            ("forget",),
        ),
        Metric(
            "disagreement_test",
            "pair",
            _to_oracle(disagreement, "test"),
            "share of the test set where the top-1 prediction differs from the oracle's",
            LOWER,
            0.0,
            C,
            "RUM",
            ("test",),
        ),
        # --- composites (reference §2.5, §6.2) ---
        Metric(
            "avg_gap",
            "composite",
            avg_gap,
            "SalUn Avg.Gap: mean |gap| of UA, RA, TA and MIA-efficacy, in points",
            LOWER,
            0.0,
            C,
            "§6.2",
            ("forget_acc", "retain_acc", "test_acc", "mia_efficacy"),
        ),
        Metric(
            "tow",
            "composite",
            tow,
            "RUM Tug-of-War: Π(1 − |gap|) over forget/retain/test accuracy",
            HIGHER,
            1.0,
            C,
            "§2.5",
            ("forget_acc", "retain_acc", "test_acc"),
        ),
        Metric(
            "tow_mia",
            "composite",
            tow_mia,
            "ToW with the forget term replaced by MIA-efficacy",
            HIGHER,
            1.0,
            C,
            "§2.5",
            ("mia_efficacy", "retain_acc", "test_acc"),
        ),
        # --- causal LMs: per-sequence memorization (reference A1.1-A1.4) ---
        Metric(
            "forget_ma",
            "model",
            _ma("forget"),
            "mean per-sequence exact memorization (MA) on D_f",
            modalities=L,
            source="Tirumala et al. 2022; Jang et al. 2023",
            needs=("forget",),
        ),
        Metric(
            "retain_ma",
            "model",
            _ma("retain"),
            "mean per-sequence MA on the retained rows (utility)",
            modalities=L,
            source="Jang et al. 2023",
            needs=("retain",),
        ),
        Metric(
            "test_ma",
            "model",
            _ma("test"),
            "mean per-sequence MA on never-trained rows of the same kind",
            modalities=L,
            source="Jang et al. 2023",
            needs=("test",),
        ),
        *(
            Metric(
                f"c_gamma_{s}",
                "model",
                _c_gamma(s),
                f"c(D_f): forget sequences with MA above γ = the {s} of the original's MA on never-trained rows",
                modalities=L,
                source="Barbulescu & Triantafillou 2024 (reference A1.2)",
                needs=("forget", "calibration"),
            )
            for s in ("mean", "p95", "max")
        ),
        Metric(
            "extraction_forget",
            "model",
            lambda o: float(o.views["forget"].extracted.mean()),
            "share of D_f whose greedy continuation reproduces every scored token",
            modalities=L,
            source="Carlini et al. 2021 (reference A1.1)",
            needs=("forget",),
        ),
        Metric(
            "extraction_sampled_forget",
            "model",
            lambda o: float(sampled_extraction(o.views["forget"].sample_logp).mean()),
            f"expected share of D_f reproduced verbatim by at least one of {SAMPLE_N} samples from its prompt "
            f"(temperature {SAMPLE_TEMPERATURE:g}, top-{SAMPLE_TOP_K}); exact, from the teacher-forced pass",
            modalities=L,
            source="Carlini et al. 2021 (sampling attack)",
            needs=("forget",),
        ),
        Metric(
            "mia_auc_loss",
            "model",
            _lm_mia("nll"),
            "LOSS attack AUC, D_f vs never-trained rows",
            modalities=L,
            source="Yeom et al. 2018; MUSE",
            needs=("forget", "test"),
        ),
        Metric(
            "mia_auc_zlib",
            "model",
            _zlib_auc,
            "zlib attack AUC (NLL over zlib length), D_f vs never-trained",
            modalities=L,
            source="Carlini et al. 2021",
            needs=("forget", "test", "texts"),
        ),
        Metric(
            "mia_auc_mink",
            "model",
            _lm_mia("min_k40"),
            "Min-K% Prob (k = 40%) attack AUC, D_f vs never-trained",
            modalities=L,
            source="Shi et al. 2023; MUSE",
            needs=("forget", "test"),
        ),
        Metric(
            "mia_auc_minkpp",
            "model",
            _lm_mia("min_kpp"),
            "Min-K%++ (k = 20%) attack AUC, D_f vs never-trained",
            modalities=L,
            source="Zhang et al. 2024",
            needs=("forget", "test"),
        ),
        Metric(
            "privleak",
            "pair",
            lambda o, r: privleak(_lm_mia("min_k40")(o), _lm_mia("min_k40")(r)),
            "MUSE PrivLeak from the Min-K% (k = 40%) AUCs: (AUC_model − AUC_oracle)/AUC_oracle in MUSE's "
            "orientation; negative = under-unlearned, positive = over-unlearned",
            Direction.ORACLE,
            0.0,
            L,
            "Shi et al. 2024 (MUSE)",
            ("forget", "test"),
        ),
        Metric(
            "ppl_change",
            "model",
            lambda o: o.perplexity / o.calibration.perplexity - 1,
            "relative perplexity change on held-out text vs the original (utility)",
            modalities=L,
            source="MUSE utility",
            needs=("perplexity", "original_perplexity"),
        ),
        Metric(
            "forget_quality",
            "pair",
            lambda o, r: forget_quality(o.truth_ratio, r.truth_ratio),
            "TOFU forget quality: KS-test p-value of the forget questions' truth ratios vs the oracle's",
            HIGHER,
            1.0,
            L,
            "Maini et al. 2024 (TOFU)",
            ("truth_ratio",),
        ),
        Metric(
            "avg_gap_ma",
            "composite",
            avg_gap_ma,
            "mean |gap| of forget, retain and test MA to the oracle, in points (Avg.Gap's LM analogue)",
            LOWER,
            0.0,
            L,
            "obliviate, after SalUn §6.2",
            ("forget_ma", "retain_ma", "test_ma"),
        ),
        # --- class-conditional diffusion models, judged by a classifier trained on real data ---
        *(
            Metric(name, "model", fn, desc, modalities=DIFFUSION, source=src, needs=("samples", "reference"))
            for name, fn, desc, src in [
                (
                    "forget_class_rate",
                    gen.forget_class_rate,
                    "share of f-conditioned samples the judge classifier calls f",
                    "SalUn (UA = 1 − rate)",
                ),
                (
                    "retained_class_acc",
                    gen.retained_class_accuracy,
                    "mean conditional accuracy of the retained classes' samples",
                    "SalUn",
                ),
                (
                    "fd_retained",
                    lambda o: gen.fd_real(o, False),
                    "mean per-class Fréchet distance to real test images (judge features), retained classes",
                    "FID's formula (Heusel et al. 2017)",
                ),
                (
                    "fd_forget",
                    lambda o: gen.fd_real(o, True),
                    "Fréchet distance of f-conditioned samples to real test images of f",
                    "FID's formula (Heusel et al. 2017)",
                ),
            ]
        ),
        *(
            Metric(name, "pair", fn, desc, LOWER, 0.0, DIFFUSION, "obliviate", ("samples",))
            for name, fn, desc in [
                (
                    "fd_oracle_retained",
                    lambda o, r: gen.fd_between(o, r, False),
                    "mean per-class Fréchet distance to the oracle's samples, retained classes",
                ),
                (
                    "fd_oracle_forget",
                    lambda o, r: gen.fd_between(o, r, True),
                    "Fréchet distance to the oracle's f-conditioned samples",
                ),
                (
                    "tv_forget_labels",
                    gen.forget_label_tv,
                    "total variation between the judge's label histograms of f-conditioned samples and the oracle's",
                ),
            ]
        ),
    ]
}

#: ``<attack>/<metric>``: rows ob.evaluate adds per attack (see obliviate.evaluation.attacks)
ATTACK_SEP = "/"

#: rows a dataset's own extraction probes add (``TextData.probes``): ``extraction_<probe name>``
PROBE_PREFIX = "extraction_"


def probe_metric(probe: str) -> Metric:
    """The metric of one named extraction probe: the share of its rows extracted greedily."""
    return Metric(
        PROBE_PREFIX + probe,
        "model",
        lambda o: float(o.probes[probe].extracted.mean()),
        f"share of the dataset's {probe!r} probe rows whose greedy continuation is verbatim",
        modalities=CAUSAL_LM,
        source="Carlini et al. 2021",
        needs=(f"probe:{probe}",),
    )


def _computed_by_evaluate(*_: object) -> float:
    raise ValueError("recovery rows are computed by ob.evaluate(..., attacks=..., original=...)")


def attack_metric(name: str) -> Metric | None:
    """The entry of an ``<attack>/<metric>`` row (a metric measured on an attacked copy: judged, like
    the metric, against the oracle under the same attack) or of ``<attack>/recovery``."""
    attack, _, base = name.partition(ATTACK_SEP)
    if base == "recovery":
        return Metric(
            name,
            "model",
            _computed_by_evaluate,
            f"share of the original-to-oracle distance on the forget metric that the {attack} attack takes "
            "back: (after - before) / (original - oracle); 0 = nothing came back, 1 = all of it",
            modalities=CLASSIFICATION | CAUSAL_LM,
            source="Hu et al. 2024 (relearning); Zhang et al., ICLR 2025 (quantization)",
        )
    spec = spec_of(base)
    if spec is None or spec.kind != "model":
        return None
    return replace(spec, name=name, description=f"{spec.description}, after the {attack} attack")


def spec_of(name: str, modality: Modality | None = None) -> Metric | None:
    """The catalogue entry of a report row (probe and attack rows included); None when unknown, or
    when it does not apply to ``modality`` (NeurIPS 2023's ``forget_quality`` is not TOFU's)."""
    spec = METRICS.get(name)
    if spec is None and ATTACK_SEP in name:
        spec = attack_metric(name)
    if spec is None and name.startswith(PROBE_PREFIX):
        spec = probe_metric(name[len(PROBE_PREFIX) :])
    if spec is not None and modality is not None and modality not in spec.modalities:
        return None
    return spec


def direction_of(name: str) -> Direction:
    """How a metric is judged (timing rows ``seconds`` and ``cost_ratio``: lower)."""
    if name in ("seconds", "cost_ratio"):
        return Direction.LOWER
    spec = spec_of(name)
    if spec is None:
        raise KeyError(f"unknown metric {name!r}")
    return spec.direction


def available(modality: Modality | None = None) -> list[str]:
    """Names of the metrics :func:`obliviate.evaluate` can compute (for one modality)."""
    return [n for n, m in METRICS.items() if modality is None or modality in m.modalities]
