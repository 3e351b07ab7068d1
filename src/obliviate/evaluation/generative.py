"""Judging a class-conditional diffusion model against the oracle retrained without the forgotten class.

A judge classifier trained on all classes of the *real* data labels N generated samples per class
and gives the penultimate features of the Fréchet distances (metrics in
:mod:`obliviate.metrics.generative`, catalogued under ``Modality.DIFFUSION``). Every model is
sampled with the same sampler, guidance, N and initial noise per sample index, so differences are
the models'. The report has, per metric, the model's value, oracle A's, the gap and the noise floor
(oracle B, the same recipe under another seed, measured the same way against oracle A).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.datasets import Data, labels_of
from ..data.loading import iterate_batches
from ..data.splits import ForgetSplit
from ..metrics.catalogue import Metric, Modality, available, spec_of
from ..metrics.generative import GenerativeOutputs, frechet_distance, per_class_accuracy
from ..models.diffusion import Denoiser, check_guidance, sample
from ..train.loop import train
from ..train.recipe import Recipe
from ..utils import cached, eval_mode
from .report import Report


@dataclass(frozen=True)
class SamplingPlan:
    """How many samples each model draws, and how: ``per_class`` for every retained class,
    ``forget_per_class`` for each forgotten one (the forget rate needs more: its SE at 100 is ≤ 5
    points), by DDIM in ``steps`` steps at guidance scale ``guidance``, initial noise from ``seed``."""

    per_class: int = 40
    forget_per_class: int = 100
    steps: int = 20
    guidance: float = 3.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_guidance(self.guidance)
        if self.per_class < 2 or self.forget_per_class < 2:
            raise ValueError("a Fréchet distance needs at least 2 samples per class")

    def labels(self, num_classes: int, forget: Sequence[int]) -> torch.Tensor:
        return torch.cat(
            [torch.full((self.forget_per_class if c in forget else self.per_class,), c) for c in range(num_classes)]
        )


def train_judge(data: Data, seed: int = 0, hidden: int = 32, epochs: int = 40) -> nn.Module:
    """The judge: an MLP (one hidden layer of ``hidden`` units, its penultimate features) trained on
    every class of the real training set (the reference spec's one classifier per dataset)."""
    recipe = Recipe.default_for(data).replace(architecture="mlp", arch_kwargs={"hidden": [hidden]}, epochs=epochs)
    return train(recipe, data.train, seed=seed, progress=False).eval()


@torch.no_grad()
def judge(classifier: nn.Module, images: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's labels [N] and penultimate features [N, d] (the input of its last Linear layer)."""
    last = [m for m in classifier.modules() if isinstance(m, nn.Linear)][-1]
    grabbed: list[torch.Tensor] = []
    handle = last.register_forward_hook(lambda _m, inputs, _out: grabbed.append(inputs[0].detach().cpu()))
    device = next(classifier.parameters()).device
    preds = []
    try:
        with eval_mode(classifier):
            for start in range(0, len(images), batch_size):
                preds.append(classifier(images[start : start + batch_size].to(device)).argmax(-1).cpu())
    finally:
        handle.remove()
    return torch.cat(preds).numpy(), torch.cat(grabbed).double().numpy()


def reference_features(classifier: nn.Module, data: Data) -> dict[int, np.ndarray]:
    """The judge's features of the real *test* images, per class (shared by every model's FD)."""
    x = torch.cat([b[0] for _, b in iterate_batches(data.test, 1024)])
    y = labels_of(data.test).numpy()
    _, feats = judge(classifier, x)
    return {int(c): feats[y == c] for c in np.unique(y)}


def generative_outputs(
    model: Denoiser,
    classifier: nn.Module,
    reference: dict[int, np.ndarray],
    forget: Sequence[int],
    plan: SamplingPlan,
    device: torch.device | str | None = None,
) -> tuple[GenerativeOutputs, torch.Tensor]:
    """Sample ``plan``'s labels from ``model``, let the judge label them; also returns the images."""
    if model.num_classes is None:
        raise ValueError("the denoiser has no class conditioning: class forgetting needs a conditional model")
    cond = plan.labels(model.num_classes, forget)
    images = sample(model, cond, steps=plan.steps, guidance=plan.guidance, seed=plan.seed, device=device)
    pred, feats = judge(classifier, images)
    return GenerativeOutputs(cond.numpy(), pred, feats, reference, tuple(forget), model.num_classes), images


#: the diffusion rows, in catalogue order
DIFFUSION_METRICS = available(Modality.DIFFUSION)


def evaluate_generative(
    model: Denoiser,
    data: Data,
    forget: Sequence[int],
    *,
    classifier: nn.Module,
    oracle: Denoiser | Sequence[Denoiser] | None = None,
    plan: SamplingPlan | None = None,
    seconds: float | None = None,
    retrain_seconds: float | None = None,
    cache: dict | None = None,
    device: torch.device | str | None = None,
    metrics: Sequence[str] | None = None,
) -> Report:
    """One :class:`~obliviate.evaluation.report.Report` for a class-conditional generator.

    ``forget``: the forgotten classes (a class the data does not have, or all of them, is refused).
    ``oracle``: [A] or [A, B]; A is the reference, B gives the noise floor (B's gap to A, pair
    metrics of B against A). ``seconds`` (the method's) over ``retrain_seconds`` (the oracle's
    training) is ``cost_ratio``. ``cache``: a dict kept across calls (a grid's cells), in which the
    judge's reference features and the *oracles'* samples are kept, so each oracle is sampled once
    per plan (entries pin their objects, so ids are not reused). ``metrics``: the catalogue rows to
    report (default: every diffusion row). ``report.details`` holds per-class accuracies and FDs,
    the sampled images and, with an oracle, oracle A's images (``reference_images``).
    """
    plan = plan or SamplingPlan()
    classes = sorted(set(labels_of(data.train).tolist()))
    forget = sorted({int(c) for c in forget})
    unknown = [c for c in forget if c not in classes]
    if unknown:
        raise ValueError(f"classes {unknown} are not in the data (labels: {classes})")
    if not forget or len(forget) >= len(classes):
        raise ValueError(f"forget between 1 and {len(classes) - 1} of the classes {classes}, got {forget}")
    names = DIFFUSION_METRICS if metrics is None else list(metrics)
    specs = [spec_of(n, Modality.DIFFUSION) for n in names]
    if any(s is None for s in specs):
        wrong = [n for n, s in zip(names, specs) if s is None]
        raise ValueError(f"unknown metrics {wrong} for diffusion models; available: {DIFFUSION_METRICS}")
    chosen = [s for s in specs if s is not None]
    ref_key = ("diffusion-reference", id(classifier), id(data))
    reference = cached(cache, ref_key, classifier, lambda: reference_features(classifier, data))
    oracles = [] if oracle is None else [oracle] if isinstance(oracle, Denoiser) else list(oracle)
    key = (tuple(forget), plan, id(classifier), id(data))

    def outputs(m: Denoiser) -> tuple[GenerativeOutputs, torch.Tensor]:
        compute = lambda: generative_outputs(m, classifier, reference, forget, plan, device)  # noqa: E731
        if any(m is o for o in oracles):  # an oracle: sampled once per plan across calls
            return cached(cache, ("diffusion-samples", id(m), *key), m, compute)
        return compute()

    outs, images = outputs(model)
    values = _values(chosen, "model", outs)
    details: dict[str, Any] = {"outputs": outs, "images": images, **_per_class(outs)}
    if seconds is not None:
        values["seconds"] = seconds
    if not oracles:
        return Report(values, details=details, modality=Modality.DIFFUSION)
    ref_outs, details["reference_images"] = outputs(oracles[0])
    ref = _values(chosen, "model", ref_outs)
    values.update(_values(chosen, "pair", outs, ref_outs))
    if seconds is not None and retrain_seconds:
        values["cost_ratio"] = seconds / retrain_seconds
    floor: dict[str, float] = {}
    if len(oracles) > 1:
        b_outs, _ = outputs(oracles[1])
        b = _values(chosen, "model", b_outs)
        floor = {k: abs(b[k] - ref[k]) for k in b}
        floor.update(
            {s.name: s.gap(v) for s, v in zip(_pairs(chosen), _values(chosen, "pair", b_outs, ref_outs).values())}
        )
    return Report(values, ref, floor, details, Modality.DIFFUSION)


def evaluate_diffusion(
    model: Denoiser,
    data: Data,
    split: ForgetSplit,
    *,
    oracles: Sequence[Denoiser] = (),
    seconds: float | None = None,
    retrain_seconds: float | None = None,
    metrics: Sequence[str] | None = None,
    sampling: SamplingPlan | dict[str, Any] | None = None,
    seed: int = 0,
    cache: dict | None = None,
    device: torch.device | str | None = None,
) -> Report:
    """``ob.evaluate`` for a class-conditional denoiser: :func:`evaluate_generative` with the forgotten
    classes of a class split and a judge trained on ``data`` (:func:`train_judge`, seed 0, one per
    dataset: kept in ``cache``). ``sampling``: a :class:`SamplingPlan` or a mapping of its fields,
    whose ``seed`` (the initial noise) defaults to ``seed``."""
    if not split.classes:
        raise ValueError(
            "a diffusion model forgets whole classes: make the split with ob.ForgetSplit.by_class "
            f"(this one is {split.kind!r})"
        )
    if isinstance(sampling, SamplingPlan):
        plan = sampling
    else:
        known = [f.name for f in fields(SamplingPlan)]
        extra = set(sampling or {}) - set(known)
        if extra:
            raise ValueError(f"unknown sampling fields {sorted(extra)}; known: {known}")
        plan = SamplingPlan(**{"seed": seed, **(sampling or {})})
    judge = cached(cache, ("diffusion-judge", id(data)), data, lambda: train_judge(data, seed=0))
    return evaluate_generative(
        model,
        data,
        split.classes,
        classifier=judge,
        oracle=list(oracles) or None,
        plan=plan,
        seconds=seconds,
        retrain_seconds=retrain_seconds,
        cache=cache,
        device=device,
        metrics=metrics,
    )


def _pairs(specs: list[Metric]) -> list[Metric]:
    return [s for s in specs if s.kind == "pair"]


def _values(specs: list[Metric], kind: str, *outs: GenerativeOutputs) -> dict[str, float]:
    return {s.name: float(s.fn(*outs)) for s in specs if s.kind == kind}


def _per_class(o: GenerativeOutputs) -> dict[str, dict[int, float]]:
    classes = sorted(set(o.cond.tolist()))
    return {
        "class_accuracy": per_class_accuracy(o.pred, o.cond, classes),
        "class_fd": {c: frechet_distance(o.of(c), o.reference[c]) for c in classes},
    }
