"""The grid runner: originals, oracles and tunings cached by content, cells resumable, results tidy.

A run directory holds::

    config.yaml          the config as given
    cache/models/<key>/  originals and oracles (safetensors + manifest), keyed by data, recipe,
                         seed and split hash, so every method and every rerun reuses them
    cache/splits/        forget splits by content hash
    cache/tuning/        ob.tune results
    cells/<key>.json     one finished (dataset, forget set, method, seed) cell, written atomically
    results.parquet/.csv tidy: one row per cell x metric (value, oracle, gap, floor)
    summary.parquet/.csv mean, std and 95% t-interval over seeds per (dataset, forget, method, metric)
    manifest.json        versions, config, seeds, data / split / checkpoint hashes, timings

Rerunning the same config computes only cells without a file; a killed run loses at most the
cells in flight. Every job is a top-level function of a plain dict, so an executor may ship it to
another process or machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch

from ..data.datasets import Data, load
from ..data.splits import ForgetSplit, table_of
from ..executor import Executor, get_executor
from ..io import atomic_write_text, read_json, write_json
from ..methods import get as get_method
from ..evaluation.oracles import floor_seed, reference_seed, validation_seed
from ..train.recipe import Recipe
from .config import BenchConfig, ConfigError, DatasetSpec, ForgetSpec, MethodSpec, load_config

#: metrics of timing, which differ between otherwise identical runs
TIMING_METRICS = ("seconds", "cost_ratio")
#: how each metric is judged: a metric object's ``higher_is_better`` as a word
DIRECTION = {True: "higher", False: "lower", None: "closer to oracle"}
ROC_GRID = np.unique(np.r_[0.0, np.logspace(-3, 0, 61)])


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _slug(label: str) -> str:
    """A label as a file-name part (the label itself stays in the cell record)."""
    return "".join(c if c.isalnum() or c in ".-+" else "-" for c in label)[:48].strip("-")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- data, recipes, devices ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _load_data(key: str) -> Data:
    spec = json.loads(key)
    data = load(spec["name"]).with_validation(spec["val_fraction"], seed=0)
    n = spec["train_size"]
    if n and n < len(data.train):  # a fixed subsample (seed 0): the same for every seed and method
        keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[:n]
        data = data.subset_train(keep.sort().values)
    return data


def data_of(spec: DatasetSpec | dict) -> Data:
    key = spec.key() if isinstance(spec, DatasetSpec) else spec
    return _load_data(json.dumps(key, sort_keys=True))


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def recipe_of(spec: DatasetSpec, data: Data, device: torch.device) -> Recipe:
    """Recipe.default_for(data) with the config's overrides (and its CUDA overrides on a GPU)."""
    recipe = Recipe.default_for(data).replace(**spec.recipe)
    if device.type == "cuda" and spec.recipe_cuda:
        recipe = recipe.replace(**spec.recipe_cuda)
    return recipe


# ---- jobs: top-level functions of plain dicts ---------------------------------------------------
def _threaded(fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """Run a job with the driver's torch thread count wherever it runs (results depend on it)."""

    @functools.wraps(fn)
    def run(job: dict) -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(job.get("threads") or before)
        try:
            return fn(job)
        finally:
            torch.set_num_threads(before)

    return run


def _atomic_dir(final: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temporary name, then rename it into place (first writer wins)."""
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    try:
        os.replace(tmp, final)
    except OSError:  # another job finished the same artefact first: identical content, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


@_threaded
def train_original_job(job: dict) -> str:
    """Train (or find) an original: content-addressed by data, recipe, seed and logged ids."""
    from ..train.loop import train

    path = Path(job["path"])
    if not (path / "model.safetensors").exists():
        data, recipe = data_of(job["data"]), Recipe.from_dict(job["recipe"])
        log = {"log_updates": torch.tensor(job["log_ids"])} if job.get("log_ids") else {}
        model = train(recipe, data.train, seed=job["seed"], device=job["device"], progress=False, **log)
        from ..models.store import save_model

        _atomic_dir(path, lambda p: save_model(model, p, {"role": "original", "key": job["key"]}))
    return str(path)


@_threaded
def train_oracle_job(job: dict) -> str:
    """Retrain on the retain set (``ob.unlearn(method="retrain")``), timed: the cost reference."""
    from ..methods.unlearn import unlearn
    from ..models.store import load_model

    path = Path(job["path"])
    if not (path / "model.safetensors").exists():
        data, recipe = data_of(job["data"]), Recipe.from_dict(job["recipe"])
        original, _ = load_model(job["original"])
        split = ForgetSplit.load(job["split"])
        res = unlearn(original, data.train, split, method="retrain", seed=job["seed"], recipe=recipe,
                      device=job["device"], progress=False)
        _atomic_dir(path, lambda p: res.save(p))
    return str(path)


@_threaded
def tune_job(job: dict) -> str:
    """``ob.tune`` one method on the first seed against the validation oracle."""
    from ..evaluation.tune import tune
    from ..methods.result import UnlearningResult
    from ..models.store import load_model

    path = Path(job["path"])
    if not path.exists():
        data, recipe = data_of(job["data"]), Recipe.from_dict(job["recipe"])
        original, _ = load_model(job["original"])
        val_oracle = UnlearningResult.load(job["val_oracle"]).model
        res = tune(job["method"], data, ForgetSplit.load(job["split"]), original=original, oracle=val_oracle,
                   recipe=recipe, budget=job["budget"], objective=job["objective"], fixed=job["fixed"] or None,
                   seed=job["seed"], device=job["device"], progress=False)
        res.save(path)
    return str(path)


def _roc(outs: Any) -> dict[str, list[float]]:
    """Loss-threshold MIA ROC (D_f members vs test non-members) on a fixed log-spaced FPR grid."""
    from sklearn.metrics import roc_curve

    m, n = -outs.losses("forget").numpy(), -outs.losses("test_all").numpy()
    fpr, tpr, _ = roc_curve(np.r_[np.ones(len(m)), np.zeros(len(n))], np.r_[m, n])
    return {"fpr": ROC_GRID.round(6).tolist(), "tpr": np.interp(ROC_GRID, fpr, tpr).round(6).tolist()}


@functools.lru_cache(maxsize=8)
def _oracle(path: str) -> Any:
    """Oracles load once per process: the same objects let ``evaluate(cache=...)`` measure them once."""
    from ..methods.result import UnlearningResult

    return UnlearningResult.load(path)


#: oracle outputs and metric values shared by the cells of one process (see ``evaluate(cache=)``)
_EVAL_CACHE: dict = {}


@_threaded
def cell_job(job: dict) -> dict:
    """One cell: unlearn (or take oracle B), evaluate against the oracles, write ``cells/<key>.json``."""
    from ..evaluation.evaluate import evaluate, outputs_of
    from ..methods.unlearn import unlearn
    from ..models.store import load_model

    path = Path(job["path"])
    if path.exists():
        return read_json(path)
    data, recipe = data_of(job["data"]), Recipe.from_dict(job["recipe"])
    split = ForgetSplit.load(job["split"])
    oracles = [_oracle(p) for p in job["oracles"]]
    if len(_EVAL_CACHE) > 32:
        _EVAL_CACHE.clear()
    params = dict(job["params"])
    if job.get("tuning"):
        params = {**params, **read_json(Path(job["tuning"]))["best_params"]}
    method = job["method"]
    if method == "oracle":  # the independent oracle B, judged like a method: its gaps are the floor
        result = oracles[-1]
    else:
        original, _ = load_model(job["original"])
        result = unlearn(original, data.train, split, method=method, seed=job["seed"], val=data.val, recipe=recipe,
                         device=job["device"], progress=False, **params)
    report = evaluate(result, data, split, oracle=oracles, metrics=job["metrics"], seed=job["seed"],
                      device=job["device"], cache=_EVAL_CACHE)
    frame = report.to_frame()
    record: dict[str, Any] = {
        "cell": job["cell"],
        "params": {**result.params} if method != "oracle" else {"seed": result.seed},
        "tuned": job.get("tuning") is not None,
        "seconds": result.seconds,
        "diverged": result.diverged,
        "notes": result.notes,
        "metrics": json.loads(frame.to_json(orient="records")),
    }
    if job.get("roc"):
        record["roc"] = _roc(report.details["outputs"])
        if method == "oracle":
            record["roc_reference"] = _roc(outputs_of(oracles[0].model, data, split, device=torch.device(job["device"])))
    if job.get("epsilon") and method != "oracle":
        original, _ = load_model(job["original"])
        n23 = evaluate(original, data, split, method=method, protocol="neurips23", n_models=job["epsilon"], seed=job["seed"],
                 device=job["device"], recipe=recipe, **params)
        record["epsilon"] = {"values": dict(n23.values),
                             "eps": np.asarray(n23.details["epsilons"], dtype=float).round(4).tolist()}
    write_json(path, record)
    return record


# ---- the grid ---------------------------------------------------------------------------------------
@dataclass
class BenchRun:
    """What :func:`run` did: where, how many cells it computed and reused, the tidy results."""

    out: Path
    computed: int
    reused: int
    results: pd.DataFrame
    summary: pd.DataFrame
    seconds: float


@dataclass
class _Group:
    """One (dataset, forget set, seed): the artefacts its cells share."""

    dataset: DatasetSpec
    forget: ForgetSpec
    seed: int
    data_job: dict
    recipe: dict
    original: str
    split_path: str = ""
    split_hash: str = ""
    logged_original: str | None = None
    oracles: tuple[str, ...] = ()


class _Progress:
    """A rich bar on terminals and one line per finished job everywhere.

    The ETA is per kind of job (originals, oracles, tunings and cells differ by 10-100x in cost):
    remaining jobs of each kind times that kind's mean so far (the overall mean for unseen kinds).
    """

    def __init__(self, enabled: bool | None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        if not self.console.is_terminal:  # CI logs: one unwrapped line per job
            self.console.width = 200
        self.quiet = enabled is False
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("eta {task.fields[eta]}"), console=self.console,
                            disable=not (enabled if enabled is not None else self.console.is_terminal))
        self.task = self.bar.add_task("bench", total=0, eta="?")
        self.planned: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.spent: dict[str, float] = {}
        self.last = time.perf_counter()

    def __enter__(self) -> "_Progress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def plan(self, kind: str, n: int) -> None:
        self.planned[kind] = self.planned.get(kind, 0) + n
        self.bar.update(self.task, total=sum(self.planned.values()))

    def eta(self) -> float:
        seen = sum(self.done.values())
        overall = sum(self.spent.values()) / seen if seen else 0.0
        return sum((self.planned[k] - self.done.get(k, 0)) * (self.spent[k] / self.done[k] if self.done.get(k)
                                                               else overall) for k in self.planned)

    def step(self, kind: str, what: str) -> None:
        now = time.perf_counter()
        self.done[kind] = self.done.get(kind, 0) + 1
        self.spent[kind] = self.spent.get(kind, 0.0) + now - self.last
        self.last = now
        eta = f"{self.eta() / 60:.1f} min"
        self.bar.update(self.task, advance=1, description=what[:40], eta=eta)
        if self.quiet:
            return
        done, total = sum(self.done.values()), sum(self.planned.values())
        self.bar.console.print(f"[{done}/{total}, {total - done} left, eta {eta}] {what}", highlight=False)


def _split_for(spec: ForgetSpec, data: Data, seed: int, original_path: str | None) -> ForgetSplit:
    a = spec.args
    if spec.kind == "random":
        return ForgetSplit.random(data.train, a.get("fraction"), count=a.get("count"), seed=seed)
    if spec.kind == "class":
        return ForgetSplit.by_class(data.train, a["classes"])
    if spec.kind == "subclass":
        return ForgetSplit.subclass(data.train, a["label"], clusters=a["clusters"], cluster=a["cluster"], seed=seed)
    if spec.kind == "predicate":
        return ForgetSplit.where(table_of(data.train, data.train_table), a["predicate"])
    # memorization, by a learning-event proxy of the original (e.g. 1 - mean true-class confidence)
    from ..evaluation.memorization import learning_event_proxy
    from ..models.store import load_model

    model, _ = load_model(original_path)
    return ForgetSplit.by_score(data.train, learning_event_proxy(model, a["score"]), bin=a["bin"],
                                count=a.get("count"), fraction=a.get("fraction"))


def _check_against_data(config: BenchConfig, device: torch.device) -> None:
    """Resolve every dataset, recipe and forget set (no training), so errors come before work."""
    for ds in config.datasets:
        data = data_of(ds)
        recipe_of(ds, data, device)
        for f in config.forget:
            if f.kind == "memorization":
                continue  # needs the original; its arguments were checked at parse time
            try:
                _split_for(f, data, config.seeds[0], None)
            except ValueError as e:
                raise ConfigError(f"{config.source}:{f.line}: forget set {f.label!r} on {ds.label}: {e}") from None


def _cell_key(group: _Group, method: MethodSpec, metrics: list[str] | None, extra: dict) -> str:
    return _digest({"data": group.data_job, "recipe": group.recipe, "split": group.split_hash, "seed": group.seed,
                    "method": method.name, "params": method.params, "tune": method.tune, "metrics": metrics,
                    **({"label": method.label} if method.label != method.name else {}),
                    "oracles": list(group.oracles), **extra})


def run(
    config: BenchConfig | str | Path,
    out: str | Path | None = None,
    *,
    executor: str | Executor = "in-process",
    device: str | None = None,
    cache: str | Path | None = None,
    progress: bool | None = None,
) -> BenchRun:
    """Run (or resume) a grid; return the tidy results. See the module docstring for the layout.

    ``device`` overrides the config's (``auto``: CUDA when present, with the datasets'
    ``recipe_cuda``); ``cache`` shares originals, oracles and tunings between run folders.
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, BenchConfig) else load_config(config)
    out = Path(out) if out is not None else Path("runs/bench") / cfg.name
    cache_dir = Path(cache) if cache is not None else out / "cache"
    for sub in ("models", "splits", "tuning"):
        (cache_dir / sub).mkdir(parents=True, exist_ok=True)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device or cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ex = get_executor(executor) if isinstance(executor, str) else executor
    _check_against_data(cfg, dev)
    atomic_write_text(out / "config.yaml", cfg.text)
    dstr = str(dev)
    threads = torch.get_num_threads()
    metrics = list(cfg.metrics) if cfg.metrics else None
    needs_log = {m.name for m in cfg.methods if "update_log" in get_method(m.name).needs}

    # ---- plan: originals (one per dataset x seed), then per group splits, oracles, tunings, cells
    groups: list[_Group] = []
    originals: dict[str, dict] = {}
    for ds in cfg.datasets:
        data = data_of(ds)
        recipe = recipe_of(ds, data, dev).to_dict()
        dkey = {**ds.key(), "fingerprint": data.train.fingerprint()}
        for seed in cfg.seeds:
            key = _digest({"role": "original", "data": dkey, "recipe": recipe, "seed": seed})
            path = str(cache_dir / "models" / f"original-{key}")
            originals[path] = {"data": ds.key(), "recipe": recipe, "seed": seed, "device": dstr, "path": path,
                               "key": key, "threads": threads}
            for f in cfg.forget:
                groups.append(_Group(ds, f, seed, ds.key(), recipe, path))
    method_cells = [(g, m) for g in groups for m in cfg.methods]
    oracle_cells = [(g, MethodSpec("oracle")) for g in groups] if cfg.oracles > 1 else []
    n_cells = len(method_cells) + len(oracle_cells)
    todo_originals = [j for j in originals.values() if not (Path(j["path"]) / "model.safetensors").exists()]
    manifest: dict[str, Any] = {"splits": {}, "checkpoints": {}, "tuning": {}}

    with _Progress(progress) as bar:
        bar.plan("original", len(todo_originals))
        bar.plan("cell", n_cells)
        for job, _ in ex.map(train_original_job, todo_originals):
            bar.step("original", f"original {Path(job['path']).name} trained")

        # splits (memorization splits read the original's learning events), logged originals, oracles
        oracle_jobs: dict[str, dict] = {}
        for g in groups:
            data = data_of(g.dataset)
            split = _split_for(g.forget, data, g.seed, g.original)
            g.split_hash = split.hash
            g.split_path = str(cache_dir / "splits" / f"{split.hash}.json")
            if not Path(g.split_path).exists():
                split.save(g.split_path)
            manifest["splits"][f"{g.dataset.label}/{g.forget.label}/seed{g.seed}"] = {
                "hash": split.hash, "kind": split.kind, "n_forget": len(split)}
            base = _digest({"data": g.data_job, "recipe": g.recipe, "split": split.hash})
            seeds = [reference_seed(g.seed), floor_seed(g.seed)][: cfg.oracles]
            paths = []
            for s in seeds:
                p = str(cache_dir / "models" / f"oracle-{_digest([base, s])}")
                oracle_jobs[p] = {"data": g.data_job, "recipe": g.recipe, "seed": s, "split": g.split_path,
                                  "original": g.original, "device": dstr, "path": p, "threads": threads}
                paths.append(p)
            g.oracles = tuple(paths)
            if needs_log:
                key = _digest({"role": "original", "data": g.data_job, "recipe": g.recipe, "seed": g.seed,
                               "log": split.hash})
                g.logged_original = str(cache_dir / "models" / f"original-logged-{key}")
                originals[g.logged_original] = {"data": g.data_job, "recipe": g.recipe, "seed": g.seed,
                                                "device": dstr, "path": g.logged_original, "key": key,
                                                "log_ids": split.forget_ids.tolist(), "threads": threads}
        # tuning: once per (dataset, forget set, method), on the first seed, vs a validation oracle
        tune_jobs: dict[str, dict] = {}
        tuning_of: dict[tuple, str] = {}
        for g in groups:
            if g.seed != cfg.seeds[0]:
                continue
            for m in cfg.methods:
                if not m.tune:
                    continue
                vkey = _digest([_digest({"data": g.data_job, "recipe": g.recipe, "split": g.split_hash}),
                                validation_seed(g.seed)])
                vpath = str(cache_dir / "models" / f"oracle-{vkey}")
                oracle_jobs.setdefault(vpath, {"data": g.data_job, "recipe": g.recipe, "seed": validation_seed(g.seed),
                                               "split": g.split_path, "original": g.original, "device": dstr,
                                               "path": vpath, "threads": threads})
                tkey = _digest({"data": g.data_job, "recipe": g.recipe, "split": g.split_hash, "method": m.name,
                                "tune": m.tune, "fixed": m.params, "seed": g.seed})
                tpath = str(cache_dir / "tuning" / f"{m.name}-{tkey}.json")
                original = g.logged_original if m.name in needs_log else g.original
                tune_jobs[tpath] = {"data": g.data_job, "recipe": g.recipe, "split": g.split_path, "original": original,
                                    "val_oracle": vpath, "method": m.name, "budget": m.tune["budget"],
                                    "objective": m.tune["objective"], "fixed": m.params, "seed": g.seed,
                                    "device": dstr, "path": tpath, "threads": threads}
                tuning_of[(g.dataset.label, g.forget.label, m.label)] = tpath

        def missing(jobs: Iterator[dict]) -> list[dict]:
            return [j for j in jobs if not (Path(j["path"]) / "model.safetensors").exists()
                    and not Path(j["path"]).is_file()]

        todo_logged = missing(j for j in originals.values() if "log_ids" in j)
        todo_oracles = missing(oracle_jobs.values())
        todo_tunes = missing(tune_jobs.values())
        bar.plan("original", len(todo_logged))
        bar.plan("oracle", len(todo_oracles))
        bar.plan("tune", len(todo_tunes))
        for job, _ in ex.map(train_original_job, todo_logged):
            bar.step("original", f"original with update log {Path(job['path']).name}")
        for job, _ in ex.map(train_oracle_job, todo_oracles):
            bar.step("oracle", f"oracle seed {job['seed']} ({Path(job['path']).name})")
        for job, res in ex.map(tune_job, todo_tunes):
            bar.step("tune", f"tuned {job['method']}: {read_json(Path(res))['best_params']}")

        # cells
        cell_files, cell_jobs = [], []
        for g, m in oracle_cells + method_cells:
            tuning = tuning_of.get((g.dataset.label, g.forget.label, m.label))
            eps = cfg.epsilon["n_models"] if cfg.epsilon and m.label in cfg.epsilon["methods"] else None
            key = _cell_key(g, m, metrics, {"roc": cfg.roc, "epsilon": eps, "tuning": tuning and Path(tuning).name})
            cell = {"dataset": g.dataset.label, "forget": g.forget.label, "method": m.label, "seed": g.seed,
                    "split_hash": g.split_hash, "key": key}
            path = out / "cells" / f"{_slug(g.dataset.label)}__{_slug(g.forget.label)}__{_slug(m.label)}__s{g.seed}__{key}.json"
            cell_files.append(path)
            if not path.exists():
                cell_jobs.append({
                    "cell": cell, "data": g.data_job, "recipe": g.recipe, "split": g.split_path,
                    "original": g.logged_original if m.name in needs_log else g.original, "oracles": list(g.oracles),
                    "method": m.name, "params": m.params, "tuning": tuning, "seed": g.seed, "metrics": metrics,
                    "roc": cfg.roc, "epsilon": eps, "device": dstr, "path": str(path), "threads": threads})
        reused = len(cell_files) - len(cell_jobs)
        bar.plan("cell", -reused)
        computed = 0
        for job, rec in ex.map(cell_job, cell_jobs):
            computed += 1
            comp = next((r["value"] for r in rec["metrics"] if r["metric"] == cfg.composite), float("nan"))
            c = job["cell"]
            bar.step("cell", f"{c['dataset']} {c['forget']} {c['method']} seed {c['seed']}: {cfg.composite} {comp:.3f} "
                     f"({rec['seconds']:.2f} s)")

    results = tidy(cell_files)
    summary = summarize(results)
    write_table(results, out / "results")
    write_table(summary, out / "summary")
    for p in {*originals, *oracle_jobs}:
        if Path(p, "model.safetensors").exists():
            manifest["checkpoints"][Path(p).name] = file_sha256(Path(p, "model.safetensors"))
    for (d, f, m), p in tuning_of.items():
        manifest["tuning"][f"{d}/{f}/{m}"] = read_json(Path(p))["best_params"]
    seconds = time.perf_counter() - start
    write_json(out / "manifest.json", _manifest(cfg, dev, ex, manifest, n_cells, computed, reused, seconds, cache_dir,
                                                 [p.name for p in cell_files]))
    return BenchRun(out, computed, reused, results, summary, seconds)


def _manifest(cfg: BenchConfig, dev: torch.device, ex: Executor, parts: dict, n_cells: int, computed: int,
              reused: int, seconds: float, cache_dir: Path, cell_names: list[str]) -> dict:
    import duckdb
    import sklearn

    from ..models.store import versions

    data_hashes = {}
    for ds in cfg.datasets:
        data = data_of(ds)
        data_hashes[ds.label] = {"train": data.train.fingerprint(), "test": data.test.fingerprint(),
                                 "val": data.val.fingerprint() if data.val is not None else None,
                                 "n_train": len(data.train)}
    return {
        "config": cfg.to_dict(),
        "versions": {**versions(), "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
                     "duckdb": duckdb.__version__},
        "seeds": list(cfg.seeds),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "executor": ex.name,
        "data": data_hashes,
        **parts,
        "cache": str(cache_dir),
        "cells": {"total": n_cells, "computed": computed, "reused": reused, "files": cell_names},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 2),
    }


# ---- results ---------------------------------------------------------------------------------------
def tidy(cell_files: list[Path]) -> pd.DataFrame:
    """One row per cell x metric: dataset, forget, method, seed, metric, value, oracle, gap, floor."""
    rows = []
    for p in cell_files:
        rec = read_json(p)
        c = rec["cell"]
        base = {"dataset": c["dataset"], "forget": c["forget"], "method": c["method"], "seed": c["seed"]}
        for r in rec["metrics"]:
            rows.append({**base, "metric": r["metric"], "value": r["value"], "oracle": r["oracle"], "gap": r["gap"],
                         "floor": r["floor"], "ideal": str(r["ideal"]), "direction": "lower" if r["metric"] in TIMING_METRICS else DIRECTION[r["higher_is_better"]]})
        for k, v in rec.get("epsilon", {}).get("values", {}).items():
            rows.append({**base, "metric": f"n23_{k}", "value": v, "oracle": np.nan, "gap": np.nan, "floor": np.nan,
                         "ideal": "", "direction": {"forget_quality": "higher", "neurips23_score": "higher", "seconds": "lower"}.get(k, "")})
    df = pd.DataFrame(rows)
    for col in ("value", "oracle", "gap", "floor"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and the 95% t-interval half-width over seeds, per (dataset, forget, method, metric)."""
    from scipy import stats

    keys = ["dataset", "forget", "method", "metric"]
    g = results.groupby(keys, sort=False)
    s = g.agg(n=("value", "count"), mean=("value", "mean"), std=("value", "std"), oracle=("oracle", "mean"),
              gap=("gap", "mean"), gap_std=("gap", "std"), floor=("floor", "mean"), ideal=("ideal", "first"),
              direction=("direction", "first")).reset_index()
    t = np.where(s["n"] > 1, stats.t.ppf(0.975, np.maximum(s["n"] - 1, 1)), np.nan)
    s["ci95"] = t * s["std"] / np.sqrt(s["n"])
    s["gap_ci95"] = t * s["gap_std"] / np.sqrt(s["n"])
    return s


def write_table(df: pd.DataFrame, stem: Path) -> None:
    """``stem.csv`` and ``stem.parquet`` (written by DuckDB, so pyarrow is not needed), atomically."""
    import duckdb

    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    tmp = stem.with_name(f".{stem.name}.parquet.tmp{os.getpid()}")
    con = duckdb.connect()
    try:
        con.register("frame", df)
        con.execute(f"COPY frame TO '{tmp}' (FORMAT PARQUET)")
    finally:
        con.close()
    os.replace(tmp, stem.with_suffix(".parquet"))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a results / summary table back (Parquet via DuckDB, or CSV)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import duckdb

        return duckdb.read_parquet(str(path)).df()
    return pd.read_csv(path)


def iter_cells(out: str | Path) -> Iterator[dict]:
    """The cell records of a run folder: those of its last config (per the manifest) when known, so
    cells left by an earlier, different config of the same folder do not leak into a report."""
    out = Path(out)
    manifest = out / "manifest.json"
    names = read_json(manifest).get("cells", {}).get("files") if manifest.exists() else None
    paths = [out / "cells" / n for n in names] if names else sorted(Path(out, "cells").glob("*.json"))
    for p in paths:
        yield read_json(p)
