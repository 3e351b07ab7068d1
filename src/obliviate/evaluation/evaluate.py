"""``ob.evaluate``: one model against the forget / retain / test splits, next to the oracle, for
classifiers and causal language models alike.

Every metric is reported with the oracle's value, the gap, and the **noise floor** — the same
gap between two oracles of different seeds — because the oracle is itself random: a gap below the
floor cannot be told from retraining.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import nn

from ..data.datasets import Data
from ..data.splits import ForgetSplit
from ..data.text import TextData
from ..methods.result import UnlearningResult
from ..metrics.catalogue import Metric, Modality, Outputs, SequenceOutputs, available, probe_metric, spec_of
from ..metrics.lm import Calibration
from ..models.architectures import build
from ..models.diffusion import Denoiser
from ..objectives import CausalLMTask, ClassificationTask, DiffusionTask, Task
from ..utils import cached, seeded
from .attacks import Attack, Relearn, parse_attacks
from .generative import SamplingPlan, evaluate_diffusion
from .report import Report, split_views
from .sequences import calibrate, sequence_outputs

#: metrics computed unless ``metrics=`` says otherwise
DEFAULT_METRICS = [
    "forget_acc",
    "retain_acc",
    "test_acc",
    "forgotten_class_test_acc",
    "mia",
    "mia_efficacy",
    "entropy_mia",
    "loss_auc",
    "loss_tpr@1%fpr",
    "zrf",
    "kl_forget",
    "js_forget",
    "disagreement_forget",
    "disagreement_test",
    "activation_distance",
    "avg_gap",
    "tow",
    "tow_mia",
]
#: causal-LM metrics computed unless ``metrics=`` says otherwise (plus one row per dataset probe)
DEFAULT_LM_METRICS = [
    "forget_ma",
    "retain_ma",
    "test_ma",
    "c_gamma_mean",
    "c_gamma_p95",
    "c_gamma_max",
    "extraction_forget",
    "extraction_sampled_forget",
    "mia_auc_loss",
    "mia_auc_zlib",
    "mia_auc_mink",
    "mia_auc_minkpp",
    "privleak",
    "ppl_change",
    "forget_quality",
    "avg_gap_ma",
]
#: what LM rows need the original for: γ and the perplexity they are relative to
_CALIBRATED = ("calibration", "original_perplexity")
#: rows measured after each attack (``<attack>/<metric>``), and the one whose recovery is reported
ATTACK_METRICS = {
    Modality.CLASSIFICATION: ["forget_acc", "retain_acc", "test_acc", "loss_auc"],
    Modality.CAUSAL_LM: [
        "forget_ma",
        "extraction_forget",
        "extraction_sampled_forget",
        "c_gamma_mean",
        "c_gamma_max",
        "mia_auc_loss",
    ],
}
RECOVERY_OF = {Modality.CLASSIFICATION: "forget_acc", Modality.CAUSAL_LM: "forget_ma"}
#: the views those rows read (None: all): an attacked LM is scored without probes, QA or perplexity
ATTACK_VIEWS: dict[Modality, tuple[str, ...] | None] = {
    Modality.CLASSIFICATION: None,
    Modality.CAUSAL_LM: ("forget", "test"),
}
#: what the recovery metric (and a relearning curve's points) read
FORGET_VIEW = ("forget",)


def modality_of(data: Data, task: object | None = None, model: nn.Module | None = None) -> Modality:
    """Text data make a causal-LM evaluation, a denoiser (``model``) a diffusion one, anything else a
    classification one; ``task`` (a task adapter) overrides the choice, and must fit the data."""
    text = isinstance(data, TextData)
    if isinstance(task, DiffusionTask) or (task is None and isinstance(model, Denoiser)):
        if text:
            raise ValueError("a diffusion model is judged on image data, not text")
        return Modality.DIFFUSION
    if task is None:
        return Modality.CAUSAL_LM if text else Modality.CLASSIFICATION
    if isinstance(task, CausalLMTask):
        if not text:
            raise ValueError("a causal-LM task needs text data (ob.datasets.TextData: train/test sequences)")
        return Modality.CAUSAL_LM
    if isinstance(task, ClassificationTask):
        if text:
            raise ValueError("text data are judged per sequence: use a causal-LM task (or task=None)")
        return Modality.CLASSIFICATION
    raise ValueError(f"ob.evaluate judges classifiers, causal LMs and denoisers, not {type(task).__name__} models")


def default_metrics(data: Data, modality: Modality | None = None) -> list[str]:
    """The rows :func:`evaluate` reports without ``metrics=``: the modality's defaults and, for
    text data, one ``extraction_<probe>`` row per probe the dataset brings (a diffusion model: every
    diffusion row of the catalogue)."""
    if modality is Modality.DIFFUSION:
        return available(Modality.DIFFUSION)
    if isinstance(data, TextData):
        return DEFAULT_LM_METRICS + [probe_metric(p).name for p in data.probes]
    return list(DEFAULT_METRICS)


def outputs_of(
    model: nn.Module,
    data: Data,
    split: ForgetSplit,
    *,
    device: torch.device | None = None,
    random_model: nn.Module | None = None,
    seed: int = 0,
    views: tuple[str, ...] | None = None,
) -> Outputs:
    """Run a model once over every evaluation view (test logits are shared by test/test_all);
    ``views``: only those (a relearning curve's points read the forget view alone)."""
    task = ClassificationTask(data.num_classes)
    every = split_views(data, split)
    if views is not None:
        every, random_model = {k: every[k] for k in views}, None
    views_ = every
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    out = {}
    for name, ds in views_.items():
        if id(ds) not in cache:
            cache[id(ds)] = task.predict(model, ds, device=device)
        out[name] = cache[id(ds)]
    rand = task.predict(random_model, views_["forget"], device=device)[0] if random_model is not None else None
    return Outputs(out, rand, seed)


def random_init_like(model: nn.Module, seed: int = 0) -> nn.Module | None:
    """A freshly initialised model of the same built-in architecture (ZRF's "incompetent" model)."""
    spec = getattr(model, "obliviate_spec", None)
    if spec is None:
        return None
    with seeded(seed):
        return build(spec["architecture"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"]).eval()


AnyOutputs = Outputs | SequenceOutputs


def _model_values(specs: list[Metric], outs: AnyOutputs) -> dict[str, float]:
    return {m.name: m.fn(outs) for m in specs if m.kind == "model" and m.applicable(outs)}


def _pair_values(specs: list[Metric], outs: AnyOutputs, ref_outs: AnyOutputs) -> dict[str, float]:
    return {m.name: m.fn(outs, ref_outs) for m in specs if m.kind == "pair" and m.applicable(outs)}


def _composites(specs: list[Metric], values: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    return {
        m.name: m.fn(values, ref)
        for m in specs
        if m.kind == "composite" and set(m.needs) <= set(values) and set(m.needs) <= set(ref)
    }


def _unwrap(model: nn.Module | UnlearningResult) -> tuple[nn.Module, float | None]:
    if isinstance(model, UnlearningResult):
        return model.model, model.seconds
    return model, None


def _specs(names: list[str], modality: Modality) -> list[Metric]:
    specs = [spec_of(n, modality) for n in names]
    unknown = [n for n, m in zip(names, specs) if m is None]
    if unknown:
        probes = " and extraction_<probe> per dataset probe" if modality is Modality.CAUSAL_LM else ""
        raise ValueError(
            f"unknown metrics {unknown} for {modality.value} models; available: {available(modality)}" + probes
        )
    out = [m for m in specs if m is not None]
    for m in list(out):  # a composite brings the metrics it is made of, so it is never silently missing
        if m.kind == "composite":
            have = [s.name for s in out]
            extra = [(d, spec_of(d, modality)) for d in m.needs if d not in have]
            unknown = [d for d, s in extra if s is None]
            if unknown:
                raise ValueError(f"composite {m.name!r} needs {unknown}, unknown for {modality.value} models")
            out = [s for _, s in extra if s is not None] + out
    return out


def evaluate(
    model: nn.Module | UnlearningResult,
    data: Data,
    split: ForgetSplit | None = None,
    *,
    oracle: nn.Module | UnlearningResult | Sequence[nn.Module | UnlearningResult] | None = None,
    original: nn.Module | UnlearningResult | None = None,
    metrics: Sequence[str] | None = None,
    protocol: str = "oracle",
    method: str | None = None,
    n_models: int = 32,
    device: str | torch.device | None = None,
    seed: int = 0,
    random_model: nn.Module | None = None,
    cache: dict | None = None,
    attacks: Sequence[str | dict | Attack] | None = None,
    task: Task | None = None,
    sampling: SamplingPlan | dict[str, Any] | None = None,
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
    and metric values are then computed once, not once per call (with ``protocol="neurips23"``: the
    oracle ensemble is trained once for every method scored against it). ``report.details["outputs"]``
    holds the model's own outputs (logits and labels per view, or per-sequence scores) for further analysis.

    Causal LMs (``data`` a :class:`~obliviate.data.TextData`): the rows are per-sequence
    (``forget_ma``, ``c_gamma_*``, ``extraction_forget``, ``mia_auc_*``, ``privleak``, ``ppl_change``,
    ``forget_quality`` where the data has QA probes, ``extraction_<probe>`` per data probe).
    ``original`` is the model before unlearning: c(γ) counts use γ from *its* scores on
    ``data.test`` and ``ppl_change`` is relative to *its* perplexity, so every model and oracle
    faces the same threshold (reference A1.2); without it those rows are left out. ``split``
    defaults to the dataset's own forget set (``data.forget_split()``).

    ``task``: the task adapter, chosen from the data by default (text → causal LM); passing one checks
    that it fits the data and fixes which catalogue rows apply.

    Class-conditional diffusion models (a :class:`~obliviate.models.diffusion.Denoiser`, or
    ``task`` a :class:`~obliviate.objectives.DiffusionTask`) forget whole classes (``split`` from
    ``ForgetSplit.by_class``): every model and oracle is sampled with the same DDIM sampler,
    guidance and initial noise (``sampling``: a
    :class:`~obliviate.evaluation.generative.SamplingPlan` or a mapping of its fields; its seed
    defaults to ``seed``), a judge classifier trained on ``data``'s real images labels the samples,
    and the rows are ``forget_class_rate``, ``retained_class_acc``, the Fréchet distances to real
    images and to oracle A's samples, and ``tv_forget_labels`` (see
    :func:`obliviate.evaluation.generative.evaluate_diffusion`).

    ``attacks``: names (``relearn``, ``relearn-retain``, ``quantize-int8``, ``quantize-int4``), one-key
    mappings of a name to parameters, or attack objects (:mod:`obliviate.evaluation.attacks`). Each is
    applied with the same seed and budget to the model and to every oracle, and adds rows
    ``<attack>/<metric>`` (value, the oracle's value under the same attack, gap, floor) and, with
    ``original``, ``<attack>/recovery``: the share of the original-to-oracle distance on the forget
    metric that the attack takes back, (after − before) / (original − oracle A), each measured on the
    rows the attack leaves out.
    """
    if split is None:
        if not isinstance(data, TextData):
            raise ValueError("pass the forget split (ob.ForgetSplit.random / by_class / from_ids)")
        split = data.forget_split()
    if protocol == "neurips23":
        if method is None:
            raise ValueError('protocol="neurips23" needs method= (the method to re-run)')
        from .protocols import neurips23

        return neurips23(
            _unwrap(model)[0],
            data,
            split,
            method=method,
            n_models=n_models,
            seed=seed,
            device=device,
            cache=cache,
            **method_overrides,
        )
    if protocol != "oracle":
        raise ValueError(f"unknown protocol {protocol!r}; use 'oracle' or 'neurips23'")
    if method is not None or method_overrides:
        raise ValueError('method= and method parameters are only used with protocol="neurips23"')
    net, seconds = _unwrap(model)
    modality = modality_of(data, task, net)
    if sampling is not None and modality is not Modality.DIFFUSION:
        raise ValueError("sampling= is how a diffusion model is sampled; this model is judged as " + modality.value)
    attack_list = parse_attacks(attacks)
    names = list(metrics) if metrics is not None else default_metrics(data, modality)
    specs = _specs(names, modality)
    names = [m.name for m in specs]
    dev = torch.device(device) if device is not None else None
    if modality is Modality.DIFFUSION:
        if attack_list or original is not None:
            raise ValueError("attacks= and original= are not defined for diffusion models")
        if not isinstance(net, Denoiser):
            raise ValueError(f"a diffusion task judges an obliviate Denoiser, got {type(net).__name__}")
        judged = [_unwrap(o) for o in _oracle_list(oracle)]
        nets = [o for o, _ in judged]
        if not all(isinstance(o, Denoiser) for o in nets):
            raise ValueError("the oracles of a denoiser are denoisers retrained without the forgotten classes")
        return evaluate_diffusion(
            net,
            data,
            split,
            oracles=[o for o in nets if isinstance(o, Denoiser)],
            seconds=seconds,
            retrain_seconds=judged[0][1] if judged else None,
            metrics=names,
            sampling=sampling,
            seed=seed,
            cache=cache,
            device=dev,
        )
    outputs: Callable[[nn.Module], AnyOutputs]
    if modality is Modality.CAUSAL_LM:
        assert isinstance(data, TextData)
        if original is None and metrics is not None:
            needy = [m.name for m in specs if set(m.needs) & set(_CALIBRATED)]
            if needy:
                raise ValueError(f"{needy} are relative to the original model: pass original=")
        calibration = None if original is None else _calibration(_unwrap(original)[0], data, dev, cache)

        def outputs(m: nn.Module, sp: ForgetSplit = split, only: tuple[str, ...] | None = None) -> AnyOutputs:
            # probes and QA describe the dataset's own forget set: another split is scored without them
            d = data if sp is split else replace(data, probes={}, qa=None)
            return sequence_outputs(m, d, sp, calibration=calibration, device=dev, views=only)
    else:
        if original is not None and not attack_list:
            raise ValueError(
                "original= calibrates causal-LM rows and attack recovery; classifier metrics do not use it"
            )
        rand = random_model if random_model is not None else random_init_like(net, seed)

        def outputs(m: nn.Module, sp: ForgetSplit = split, only: tuple[str, ...] | None = None) -> AnyOutputs:
            return outputs_of(m, data, sp, device=dev, random_model=rand, seed=seed, views=only)

    def measured(m: nn.Module) -> tuple[AnyOutputs, dict[str, float]]:
        def compute() -> tuple[AnyOutputs, dict[str, float]]:
            outs = outputs(m)
            return outs, _model_values(specs, outs)

        return cached(cache, (id(m), tuple(names), seed, split.hash, id(data), id(original)), m, compute)

    for a in attack_list:  # before any work: an attack that cannot apply would report a false pass
        why = a.unfit(net, data, split)
        if why:
            raise ValueError(why)
    outs = outputs(net)
    values = _model_values(specs, outs)
    details: dict[str, Any] = {"outputs": outs}
    if seconds is not None:
        values["seconds"] = seconds
    oracles = _oracle_list(oracle)
    if attack_list and not oracles:
        raise ValueError("attacks are judged against the oracle under the same attack: pass oracle=")
    if not oracles:
        return Report(values, details=details, modality=modality)

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
        by_name = {m.name: m for m in specs}
        pairs = _pair_values(specs, o2_outs, ref_outs)
        floor.update({k: by_name[k].gap(v) for k, v in pairs.items()})
        floor.update({k: by_name[k].gap(v) for k, v in _composites(specs, o2, ref).items()})
    if attack_list:
        nets = [net, *(_unwrap(o)[0] for o in oracles)]
        known = {id(net): outs, id(ref_net): ref_outs, **({id(nets[2]): o2_outs} if len(oracles) > 1 else {})}
        orig_net = None if original is None else _unwrap(original)[0]
        if task is None:
            task = CausalLMTask(data.tokenizer) if isinstance(data, TextData) else ClassificationTask(data.num_classes)
        extra = _attacked(attack_list, nets, known, orig_net, data, split, modality, outputs, seed, cache, task)
        values.update(extra[0])
        ref.update(extra[1])
        floor.update(extra[2])
        if extra[3]:
            details["curves"] = extra[3]
    return Report(values, ref, floor, details, modality)


def _oracle_list(
    oracle: nn.Module | UnlearningResult | Sequence[nn.Module | UnlearningResult] | None,
) -> list[nn.Module | UnlearningResult]:
    if oracle is None:
        return []
    if isinstance(oracle, (list, tuple)):
        return list(oracle)
    if isinstance(oracle, Sequence):
        raise TypeError(f"pass several oracles as a list or a tuple, not a {type(oracle).__name__}")
    return [oracle]


def _attacked(
    attacks: list[Attack],
    models: list[nn.Module],
    known: dict[int, AnyOutputs],
    original: nn.Module | None,
    data: Data,
    split: ForgetSplit,
    modality: Modality,
    outputs: Callable[..., AnyOutputs],
    seed: int,
    cache: dict | None,
    task: Task,
) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, dict]]:
    """Rows ``<attack>/<metric>`` for the model (``models[0]``) and the oracles under each attack, and
    ``<attack>/recovery`` when the original is given. The oracles' and the original's entries are
    cached across calls (a grid's cells share them); ``known`` holds outputs on ``split`` already computed."""
    primary = spec_of(RECOVERY_OF[modality], modality)
    assert primary is not None
    rows = [m for m in (spec_of(n, modality) for n in ATTACK_METRICS[modality]) if m is not None]
    values: dict[str, float] = {}
    ref: dict[str, float] = {}
    floor: dict[str, float] = {}
    curves: dict[str, dict] = {}

    def memo(key: tuple, m: nn.Module, compute: Callable[[], Any]) -> Any:
        return compute() if m is models[0] else cached(cache, key, m, compute)  # the model judged changes

    def before(m: nn.Module, measured: ForgetSplit) -> float:
        """The forget metric of the unattacked model on the rows the attack is measured on."""
        outs = known.get(id(m)) if measured is split else None
        return float(primary.fn(outs if outs is not None else outputs(m, measured, only=FORGET_VIEW)))

    for attack in attacks:
        measured = attack.measured_split(data, split, seed)
        tag = (attack, seed, split.hash, id(data))

        def run(m: nn.Module, attack: Attack = attack, measured: ForgetSplit = measured) -> tuple[dict, float, list]:
            curve: list[tuple[int, float]] = []

            def hook(step: int, net: nn.Module) -> None:
                curve.append((step, float(primary.fn(outputs(net, measured, only=FORGET_VIEW)))))

            wants = isinstance(attack, Relearn) and attack.curve
            attacked, _ = attack.apply(m, data, split, task, seed=seed, on_checkpoint=hook if wants else None)
            after = _model_values(rows, outputs(attacked, measured, only=ATTACK_VIEWS[modality]))
            return after, before(m, measured), curve

        res = [memo(("attack", *tag, id(m)), m, partial(run, m)) for m in models]
        if res[0][2]:  # relearning curves: the forget metric against attack steps, from step 0
            curves[attack.name] = {
                "metric": primary.name,
                "steps": [0] + [s for s, _ in res[0][2]],
                **{who: [r[1]] + [v for _, v in r[2]] for who, r in zip(("model", "oracle", "floor_oracle"), res)},
            }
        prefix = attack.name + "/"
        values.update({prefix + k: v for k, v in res[0][0].items()})
        ref.update({prefix + k: v for k, v in res[1][0].items()})
        if len(res) > 2:
            floor.update({prefix + k: abs(res[2][0][k] - v) for k, v in res[1][0].items() if k in res[2][0]})
        if original is not None:
            orig = memo(("attack-before", *tag, id(original)), original, partial(before, original, measured))
            dist = orig - res[1][1]
            rec = [float("nan") if abs(dist) < 1e-12 else (after[primary.name] - b) / dist for after, b, _ in res]
            values[prefix + "recovery"], ref[prefix + "recovery"] = rec[0], rec[1]
            if len(rec) > 2:
                floor[prefix + "recovery"] = abs(rec[2] - rec[1])
    return values, ref, floor, curves


def _calibration(original: nn.Module, data: TextData, device: torch.device | None, cache: dict | None) -> Calibration:
    """The original's γ and perplexity, once per (original, data) when a cache is kept."""
    return cached(cache, ("calibration", id(original), id(data)), original, lambda: calibrate(original, data, device))
