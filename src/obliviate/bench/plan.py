"""Planning a grid: which originals, splits, oracles, tunings and cells it needs, and their content keys.

Every artefact is addressed by a digest of what determines it (data, recipe, seed, split hash,
method and parameters), so reruns and other grids sharing a cache find it. Planning happens in
stages because later keys depend on earlier results: a memorization split needs its trained
original, and oracle keys need the split's hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import Data
from ..data.splits import ForgetSpec, ForgetSplit
from ..evaluation.oracles import floor_seed, reference_seed, validation_seed
from ..io import write_json
from ..methods import get as get_method
from .config import BenchConfig, ConfigError, DatasetSpec, MethodSpec
from .jobs import Cell, CellId, TrainOracle, TrainOriginal, Tune, data_of, fingerprint, recipe_of


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def slug(label: str) -> str:
    """A label as a file-name part (the label itself stays in the cell record)."""
    return "".join(c if c.isalnum() or c in ".-+" else "-" for c in label)[:48].strip("-")


def split_for(spec: ForgetSpec, data: Data, seed: int, original_path: str | None) -> ForgetSplit:
    """The split of one group; memorization sets rank by a learning-event proxy of the original
    (e.g. 1 - mean true-class confidence), which only the trained original can give."""
    scores = None
    if spec.needs_scores:
        from ..evaluation.memorization import learning_event_proxy
        from ..models.store import load_model

        if original_path is None:
            raise ValueError("this forget set is chosen by scores of the trained original: pass its path")
        model, _ = load_model(original_path)
        scores = learning_event_proxy(model, spec.args["score"])
    return spec.split(data, seed, scores=scores)


def check_against_data(config: BenchConfig, device: torch.device) -> None:
    """Resolve every dataset, recipe and forget set (no training), so errors come before work."""
    for ds in config.datasets:
        data = data_of(ds)
        recipe_of(ds, data, device)
        for f in config.forget:
            if f.needs_scores:
                continue  # needs the original; its arguments were checked at parse time
            try:
                split_for(f, data, config.seeds[0], None)
            except ValueError as e:
                raise ConfigError(f"{config.source}:{f.line}: forget set {f.label!r} on {ds.label}: {e}") from None


@dataclass
class Group:
    """One (dataset, forget set, seed): the artefacts its cells share."""

    dataset: DatasetSpec
    forget: ForgetSpec
    seed: int
    data: dict[str, Any]
    recipe: dict[str, Any]
    original: str
    split_path: str = ""
    split_hash: str = ""
    logged_original: str | None = None
    oracles: tuple[str, ...] = ()


@dataclass
class Planner:
    """The grid's artefacts, planned stage by stage (see the module docstring)."""

    cfg: BenchConfig
    out: Path
    cache: Path
    device: torch.device
    threads: int
    groups: list[Group] = field(default_factory=list)
    originals: dict[str, TrainOriginal] = field(default_factory=dict)
    oracles: dict[str, TrainOracle] = field(default_factory=dict)
    tunes: dict[str, Tune] = field(default_factory=dict)
    tuning_of: dict[tuple[str, str, str], str] = field(default_factory=dict)
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def needs_log(self) -> set[str]:
        """Methods that read the original's logged updates (they get an original trained with a log)."""
        return {m.name for m in self.cfg.methods if "update_log" in get_method(m.name).needs}

    def _common(self, data: dict, recipe: dict, seed: int, path: str) -> dict[str, Any]:
        return {
            "data": data,
            "recipe": recipe,
            "seed": seed,
            "device": str(self.device),
            "path": path,
            "threads": self.threads,
        }

    def plan_originals(self) -> list[TrainOriginal]:
        """One original per dataset x seed, and the groups; returns those not trained yet."""
        for ds in self.cfg.datasets:
            data = data_of(ds)
            recipe = recipe_of(ds, data, self.device).to_dict()
            dkey = {**ds.key(), "fingerprint": fingerprint(data.train)}
            for seed in self.cfg.seeds:
                key = digest({"role": "original", "data": dkey, "recipe": recipe, "seed": seed})
                path = str(self.cache / "models" / f"original-{key}")
                self.originals[path] = TrainOriginal(**self._common(ds.key(), recipe, seed, path), key=key)
                self.groups += [Group(ds, f, seed, ds.key(), recipe, path) for f in self.cfg.forget]
        return [j for j in self.originals.values() if not j.done()]

    def plan_oracles(self) -> tuple[list[TrainOriginal], list[TrainOracle], list[Tune]]:
        """Splits (saved by hash), oracles A and B, logged originals, then tunings (first seed, vs a
        validation oracle); returns the logged originals, oracles and tunings still to compute."""
        for g in self.groups:
            split = split_for(g.forget, data_of(g.dataset), g.seed, g.original)
            g.split_hash = split.hash
            g.split_path = str(self.cache / "splits" / f"{split.hash}.json")
            if not Path(g.split_path).exists():
                split.save(g.split_path)
            self.splits[f"{g.dataset.label}/{g.forget.label}/seed{g.seed}"] = {
                "hash": split.hash,
                "kind": split.kind,
                "n_forget": len(split),
            }
            seeds = [reference_seed(g.seed), floor_seed(g.seed)][: self.cfg.oracles]
            g.oracles = tuple(self._oracle(g, s) for s in seeds)
            if self.needs_log:
                key = digest(
                    {"role": "original", "data": g.data, "recipe": g.recipe, "seed": g.seed, "log": split.hash}
                )
                g.logged_original = str(self.cache / "models" / f"original-logged-{key}")
                self.originals[g.logged_original] = TrainOriginal(
                    **self._common(g.data, g.recipe, g.seed, g.logged_original),
                    key=key,
                    log_ids=tuple(split.forget_ids.tolist()),
                )
        for g in self.groups:
            if g.seed != self.cfg.seeds[0]:
                continue
            for m in self.cfg.methods:
                if m.tune:
                    self._tune(g, m)
        return (
            [j for j in self.originals.values() if j.log_ids and not j.done()],
            [j for j in self.oracles.values() if not j.done()],
            [j for j in self.tunes.values() if not j.done()],
        )

    def _oracle(self, g: Group, seed: int) -> str:
        base = digest({"data": g.data, "recipe": g.recipe, "split": g.split_hash})
        path = str(self.cache / "models" / f"oracle-{digest([base, seed])}")
        self.oracles.setdefault(
            path, TrainOracle(**self._common(g.data, g.recipe, seed, path), split=g.split_path, original=g.original)
        )
        return path

    def _tune(self, g: Group, m: MethodSpec) -> None:
        assert m.tune is not None
        prefix = f"{g.dataset.label}/{g.forget.label}/"
        given = self.cfg.tuned.get(prefix + m.label, self.cfg.tuned.get(prefix + m.name))
        if given is not None:  # a previous grid's tuning (a variant takes its base method's): no search
            best = {**given, **m.params}
            tpath = str(self.cache / "tuning" / f"{m.name}-given-{digest({'split': g.split_hash, 'best': best})}.json")
            if not Path(tpath).exists():
                write_json(Path(tpath), {"best_params": best, "source": "tuned:"})
            self.tuning_of[(g.dataset.label, g.forget.label, m.label)] = tpath
            return
        vpath = self._oracle(g, validation_seed(g.seed))
        tkey = digest(
            {
                "data": g.data,
                "recipe": g.recipe,
                "split": g.split_hash,
                "method": m.name,
                "tune": m.tune,
                "fixed": m.params,
                "seed": g.seed,
            }
        )
        tpath = str(self.cache / "tuning" / f"{m.name}-{tkey}.json")
        self.tunes[tpath] = Tune(
            **self._common(g.data, g.recipe, g.seed, tpath),
            split=g.split_path,
            original=self._original_for(g, m),
            val_oracle=vpath,
            method=m.name,
            budget=m.tune["budget"],
            objective=m.tune["objective"],
            fixed=m.params,
        )
        self.tuning_of[(g.dataset.label, g.forget.label, m.label)] = tpath

    def _original_for(self, g: Group, m: MethodSpec) -> str:
        return g.logged_original if m.name in self.needs_log and g.logged_original else g.original

    def plan_cells(self) -> tuple[list[Path], list[Cell]]:
        """Every cell's file (oracle B's cells first) and the jobs of those not written yet."""
        cfg = self.cfg
        metrics = list(cfg.metrics) if cfg.metrics else None
        pairs = [(g, MethodSpec("oracle")) for g in self.groups] if cfg.oracles > 1 else []
        pairs += [(g, m) for g in self.groups for m in cfg.methods]
        files, jobs = [], []
        for g, m in pairs:
            tuning = self.tuning_of.get((g.dataset.label, g.forget.label, m.label))
            eps = cfg.epsilon["n_models"] if cfg.epsilon and m.label in cfg.epsilon["methods"] else None
            audit = (
                {k: cfg.ulira[k] for k in ("n_shadow", "n_targets")}
                if cfg.ulira and m.label in cfg.ulira["methods"]
                else None
            )
            key = digest(
                {
                    "data": g.data,
                    "recipe": g.recipe,
                    "split": g.split_hash,
                    "seed": g.seed,
                    "method": m.name,
                    "params": m.params,
                    "tune": m.tune,
                    "metrics": metrics,
                    **({"attacks": list(cfg.attacks)} if cfg.attacks else {}),  # older cells keep their keys
                    **({"label": m.label} if m.label != m.name else {}),
                    "oracles": list(g.oracles),
                    "roc": cfg.roc,
                    "epsilon": eps,
                    **({"ulira": audit} if audit else {}),  # older cells keep their keys
                    **({"sampling": cfg.sampling} if cfg.sampling else {}),
                    "tuning": tuning and Path(tuning).name,
                }
            )
            stem = f"{slug(g.dataset.label)}__{slug(g.forget.label)}__{slug(m.label)}__s{g.seed}"
            path = self.out / "cells" / f"{stem}__{key}.json"
            files.append(path)
            model = self.out / "models" / stem if cfg.save_models else None
            if not path.exists() or (model and not (model / "model.safetensors").exists()):
                jobs.append(
                    Cell(
                        **self._common(g.data, g.recipe, g.seed, str(path)),
                        cell=CellId(g.dataset.label, g.forget.label, m.label, g.seed, g.split_hash, key),
                        split=g.split_path,
                        original=self._original_for(g, m),
                        oracles=g.oracles,
                        method=m.name,
                        params=m.params,
                        tuning=tuning,
                        metrics=cfg.metrics,
                        attacks=cfg.attacks,
                        roc=cfg.roc,
                        epsilon=eps,
                        ulira=audit,
                        save_model=None if model is None else str(model),
                        sampling=cfg.sampling,
                    )
                )
        return files, jobs
