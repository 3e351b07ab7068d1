"""The grid's jobs: typed, picklable descriptions and the top-level functions that run them.

Four kinds: train an original, train an oracle (retrain on D_r, timed: the cost reference), tune
a method against the validation oracle, and one cell (unlearn, evaluate against the oracles, write
``cells/<key>.json``). A job names its inputs by path and content key, never by live object, so an
executor may ship it to another process or machine, and a job whose output exists does nothing.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..data.datasets import Data, SizedDataset, load
from ..data.splits import ForgetSplit
from ..io import read_json, write_json
from ..metrics.catalogue import Modality
from ..objectives import task_of
from ..train.recipe import LM_ARCHITECTURE, Recipe
from .config import DatasetSpec

ROC_GRID = np.unique(np.r_[0.0, np.logspace(-3, 0, 61)])


# ---- data, recipes, devices ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _load_data(key: str) -> Data:
    spec = json.loads(key)
    data = load(spec["name"], **spec.get("options", {}))
    if spec["val_fraction"]:  # 0: no validation set (the held-out rows all stay test rows)
        data = data.with_validation(spec["val_fraction"], seed=spec.get("val_seed", 0))
    n = spec["train_size"]
    if n and n < len(data.train):  # a fixed subsample (seed 0): the same for every seed and method
        keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n]
        data = data.subset_train(keep.sort().values)
    return data


def fingerprint(ds: SizedDataset) -> str:
    """Content hash keying a benchmark dataset's caches (``ArrayDataset`` / ``TextDataset.fingerprint()``)."""
    fp = getattr(ds, "fingerprint", None)
    if not callable(fp):
        raise TypeError(f"a benchmark dataset needs a fingerprint() method; {type(ds).__name__} has none")
    return fp()


def data_of(spec: DatasetSpec | dict) -> Data:
    """The data a dataset spec (or its key) names, loaded once per process."""
    key = spec.key() if isinstance(spec, DatasetSpec) else spec
    return _load_data(json.dumps(key, sort_keys=True))


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def recipe_of(spec: DatasetSpec, data: Data, device: torch.device) -> Recipe:
    """Recipe.default_for(data) with the config's overrides (and its CUDA overrides on a GPU);
    ``arch_kwargs`` are merged into the default's (the tiny GPT-2's carry the tokenizer's EOS id)
    unless the override names another architecture (a denoiser takes none of an MLP's kwargs)."""
    recipe = Recipe.default_for(data)
    for over in (spec.recipe, spec.recipe_cuda if device.type == "cuda" else {}):
        if over.get("architecture", recipe.architecture) != recipe.architecture:
            recipe = recipe.replace(arch_kwargs={})
        if "arch_kwargs" in over:
            over = {**over, "arch_kwargs": {**recipe.arch_kwargs, **over["arch_kwargs"]}}
        recipe = recipe.replace(**over)
    return recipe


def is_lm(recipe: dict[str, Any]) -> bool:
    """Whether a recipe trains a causal LM (its models are rebuilt from the recipe to load, its
    oracles are trained directly and its cells are evaluated against the original's calibration)."""
    return recipe.get("architecture") == LM_ARCHITECTURE


def _model(path: str, recipe: dict[str, Any]) -> torch.nn.Module:
    """A saved original; built-in classifiers rebuild from their manifest, LMs from the recipe."""
    from ..models.store import load_model

    return load_model(path, Recipe.from_dict(recipe).build() if is_lm(recipe) else None)[0]


# ---- job descriptions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """What every job carries: the dataset key, the recipe (``Recipe.to_dict``), seed, device, the
    output path and the driver's torch thread count (results depend on it)."""

    data: dict[str, Any]
    recipe: dict[str, Any]
    seed: int
    device: str
    path: str
    threads: int

    def done(self) -> bool:
        """Whether the output exists (a model folder, or a file)."""
        p = Path(self.path)
        return (p / "model.safetensors").exists() or p.is_file()


@dataclass(frozen=True)
class TrainOriginal(Job):
    key: str = ""
    log_ids: tuple[int, ...] | None = None  # log the updates of batches holding these ids (amnesiac)


@dataclass(frozen=True)
class TrainOracle(Job):
    split: str = ""
    original: str = ""


@dataclass(frozen=True)
class Tune(Job):
    split: str = ""
    original: str = ""
    val_oracle: str = ""
    method: str = ""
    budget: int = 6
    objective: str = "avg_gap"
    fixed: dict[str, Any] | None = None


@dataclass(frozen=True)
class CellId:
    """A cell's identity as its record and the results tables name it."""

    dataset: str
    forget: str
    method: str
    seed: int
    split_hash: str
    key: str


@dataclass(frozen=True)
class Cell(Job):
    cell: CellId | None = None
    split: str = ""
    original: str = ""
    oracles: tuple[str, ...] = ()
    method: str = ""
    params: dict[str, Any] | None = None
    tuning: str | None = None
    metrics: tuple[str, ...] | None = None
    attacks: tuple[Any, ...] = ()
    roc: bool = True
    epsilon: int | None = None
    ulira: dict[str, Any] | None = None  # {n_shadow, n_targets} when this cell's method is audited
    save_model: str | None = None  # also keep the unlearned model here (presets that hand models out)
    sampling: dict[str, Any] | None = None  # diffusion grids: how models are sampled (SamplingPlan fields)


J = TypeVar("J", bound=Job)


def _threaded(fn: Callable[[J], Any]) -> Callable[[J], Any]:
    """Run a job with the driver's torch thread count wherever it runs."""

    @functools.wraps(fn)
    def run(job: J) -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(job.threads or before)
        try:
            return fn(job)
        finally:
            torch.set_num_threads(before)

    return run


def _atomic_dir(final: Path, write: Callable[[Path], Any]) -> None:
    """Write a folder under a temporary name, then rename it into place (first writer wins)."""
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another job finished the same artefact first: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


# ---- job functions ---------------------------------------------------------------------------------
@_threaded
def train_original_job(job: TrainOriginal) -> str:
    """Train (or find) an original: content-addressed by data, recipe, seed and logged ids."""
    from ..models.store import save_model
    from ..train.loop import train

    path = Path(job.path)
    if not job.done():
        data, recipe = data_of(job.data), Recipe.from_dict(job.recipe)
        log_updates = torch.tensor(job.log_ids) if job.log_ids else None
        model = train(recipe, data.train, seed=job.seed, device=job.device, progress=False, log_updates=log_updates)
        _atomic_dir(
            path, lambda p: save_model(model, p, {"role": "original", "key": job.key, "dataset": job.data["name"]})
        )
    return str(path)


@_threaded
def train_oracle_job(job: TrainOracle) -> str:
    """Retrain on the retain set (``ob.unlearn(method="retrain")``), timed: the cost reference."""
    from ..methods.unlearn import unlearn

    path = Path(job.path)
    if not job.done():
        data, recipe = data_of(job.data), Recipe.from_dict(job.recipe)
        split = ForgetSplit.load(job.split)
        res = unlearn(
            _model(job.original, job.recipe),
            data.train,
            split,
            method="retrain",
            seed=job.seed,
            recipe=recipe,
            device=job.device,
            progress=False,
        )
        _atomic_dir(path, lambda p: res.save(p))
    return str(path)


@_threaded
def tune_job(job: Tune) -> str:
    """``ob.tune`` one method on the first seed against the validation oracle."""
    from ..evaluation.tune import tune

    path = Path(job.path)
    if not path.exists():
        data, recipe = data_of(job.data), Recipe.from_dict(job.recipe)
        original = _model(job.original, job.recipe)
        val_oracle = _oracle(job.val_oracle, json.dumps(job.recipe, sort_keys=True)).model
        res = tune(
            job.method,
            data,
            ForgetSplit.load(job.split),
            original=original,
            oracle=val_oracle,
            recipe=recipe,
            budget=job.budget,
            objective=job.objective,
            fixed=job.fixed or None,
            seed=job.seed,
            device=job.device,
            progress=False,
            task=task_of(data),
        )
        res.save(path)
    return str(path)


def _roc(outs: Any) -> dict[str, list[float]]:
    """Loss-threshold MIA ROC (D_f members vs test non-members) on a fixed log-spaced FPR grid."""
    from sklearn.metrics import roc_curve

    m, n = -outs.losses("forget").numpy(), -outs.losses("test_all").numpy()
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
    return {"fpr": ROC_GRID.round(6).tolist(), "tpr": np.interp(ROC_GRID, fpr, tpr).round(6).tolist()}


#: samples per class a diffusion cell keeps for the report's sample grids
GRID_SAMPLES = 8


def _samples(images: torch.Tensor, outs: Any, per_class: int = GRID_SAMPLES) -> dict[str, Any]:
    """The first ``per_class`` samples of each class (forgotten classes first) as 8-bit grey images,
    base64 per class: ``{"forget", "classes", "shape", "images": {class: base64}}``."""
    import base64

    cond = np.asarray(outs.cond)
    classes = [*outs.forget_classes, *(c for c in range(outs.num_classes) if c not in outs.forget_classes)]
    pixels = (images[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {
        "forget": list(outs.forget_classes),
        "classes": classes,
        "shape": list(pixels.shape[1:]),
        "images": {
            str(c): base64.b64encode(pixels[np.nonzero(cond == c)[0][:per_class]].tobytes()).decode("ascii")
            for c in classes
        },
    }


@functools.lru_cache(maxsize=8)
def _oracle(path: str, recipe: str) -> Any:
    """Oracles load once per process: the same objects let ``evaluate(cache=...)`` measure them once."""
    from ..methods.result import UnlearningResult

    spec = json.loads(recipe)
    return UnlearningResult.load(path, Recipe.from_dict(spec).build() if is_lm(spec) else None)


@functools.lru_cache(maxsize=4)
def _original(path: str, recipe: str) -> torch.nn.Module:
    """An LM cell's original, loaded once per process: it calibrates γ for every cell (``evaluate(original=)``)."""
    return _model(path, json.loads(recipe))


def _ma_hist(outs: Any) -> list[float]:
    """The forget set's per-sequence memorization accuracies, rounded (the report's histogram)."""
    return np.asarray(outs.views["forget"].ma, dtype=float).round(4).tolist()


#: oracle outputs and metric values shared by the cells of one process (see ``evaluate(cache=)``)
_EVAL_CACHE: dict = {}


@_threaded
def cell_job(job: Cell) -> dict:
    """One cell: unlearn (or take oracle B), evaluate against the oracles, write ``cells/<key>.json``."""
    from ..evaluation.attacks import parse_attacks
    from ..evaluation.evaluate import evaluate, outputs_of
    from ..methods.unlearn import unlearn
    from ..models.store import save_model

    path = Path(job.path)
    if path.exists() and not (job.save_model and not Path(job.save_model, "model.safetensors").exists()):
        return read_json(path)
    assert job.cell is not None
    data, recipe = data_of(job.data), Recipe.from_dict(job.recipe)
    split = ForgetSplit.load(job.split)
    recipe_key = json.dumps(job.recipe, sort_keys=True)
    oracles = [_oracle(p, recipe_key) for p in job.oracles]
    lm = is_lm(job.recipe)
    if len(_EVAL_CACHE) > 32:
        _EVAL_CACHE.clear()
    params = dict(job.params or {})
    if job.tuning:
        params = {**params, **read_json(Path(job.tuning))["best_params"]}
    metrics = list(job.metrics) if job.metrics is not None else None
    if job.method == "oracle":  # the independent oracle B, judged like a method: its gaps are the floor
        result = oracles[-1]
    else:
        # LM methods calibrate γ on never-trained rows: without a validation split, the test rows (as lm-demo)
        val = data.test if lm and data.val is None else data.val
        result = unlearn(
            _model(job.original, job.recipe),
            data.train,
            split,
            method=job.method,
            seed=job.seed,
            val=val,
            recipe=recipe,
            device=job.device,
            progress=False,
            task=task_of(data),
            **params,
        )
    # a grid's attacks that cannot apply to this forget set (relearn-related on random forgetting) are
    # left out of this cell, and the cell says so
    attacks = parse_attacks(job.attacks)
    skipped = {a.name: why for a in attacks if (why := a.unfit(result.model, data, split))}
    attacks = [a for a in attacks if a.name not in skipped]
    # LM rows are calibrated on the original (γ, perplexity); attacks measure recovery against it
    original = _original(job.original, recipe_key) if lm or attacks else None
    report = evaluate(
        result,
        data,
        split,
        oracle=oracles,
        metrics=metrics,
        seed=job.seed,
        device=job.device,
        cache=_EVAL_CACHE,
        original=original,
        attacks=attacks,
        sampling=job.sampling,
    )
    frame = report.to_frame()
    curves = report.details.get("curves", {})
    record: dict[str, Any] = {
        "cell": asdict(job.cell),
        "params": {**result.params} if job.method != "oracle" else {"seed": result.seed},
        "tuned": job.tuning is not None,
        "seconds": result.seconds,
        "diverged": result.diverged,
        "notes": result.notes + [f"attack skipped: {why}" for why in skipped.values()],
        "metrics": json.loads(frame.to_json(orient="records")),
        **({"curves": curves} if curves else {}),
    }
    if lm:  # per-sequence MA of the model, and of oracle A on the floor cell (the report's histograms)
        record["forget_ma"] = _ma_hist(report.details["outputs"])
        if job.method == "oracle":
            record["forget_ma_reference"] = _ma_hist(
                evaluate(
                    oracles[0],
                    data,
                    split,
                    original=original,
                    metrics=["forget_ma"],
                    device=job.device,
                    cache=_EVAL_CACHE,
                ).details["outputs"]
            )
    elif report.modality is Modality.DIFFUSION:  # sample grids for the report: the model's, and oracle A's
        record["samples"] = _samples(report.details["images"], report.details["outputs"])
        if job.method == "oracle":
            record["samples_reference"] = _samples(report.details["reference_images"], report.details["outputs"])
    elif job.roc:
        record["roc"] = _roc(report.details["outputs"])
        if job.method == "oracle":
            record["roc_reference"] = _roc(outputs_of(oracles[0].model, data, split, device=torch.device(job.device)))
    if job.epsilon and job.method != "oracle":
        n23 = evaluate(
            _model(job.original, job.recipe),
            data,
            split,
            method=job.method,
            protocol="neurips23",
            n_models=job.epsilon,
            seed=job.seed,
            device=job.device,
            recipe=recipe,
            **params,
        )
        record["epsilon"] = {
            "values": dict(n23.values),
            "eps": np.asarray(n23.details["epsilons"], dtype=float).round(4).tolist(),
        }
    if job.ulira:  # the oracle cell audits retraining itself: the attack's value on the reference
        from ..evaluation.ulira import ulira

        audited = "retrain" if job.method == "oracle" else job.method
        audit = ulira(
            recipe,
            data,
            audited,
            n_shadow=job.ulira["n_shadow"],
            n_targets=job.ulira["n_targets"],
            seed=job.seed,
            device=job.device,
            **({} if job.method == "oracle" else params),
        )
        record["ulira"] = {"values": dict(audit.values)}
    if job.save_model:
        _atomic_dir(
            Path(job.save_model),
            lambda p: save_model(result.model, p, {**result.manifest(), "dataset": job.data["name"]}),
        )
    write_json(path, record)
    return record
