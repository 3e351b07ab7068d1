"""Bench configs: a YAML grid of datasets x forget sets x methods x seeds, checked before any training.

Every error names the file and line of the offending entry, so a typo in a 60-minute grid fails in
a second rather than after the first hour.

.. code-block:: yaml

    name: quick
    seeds: [0, 1]
    oracles: 2                    # oracle A is the reference, oracle B gives the noise floor
    datasets:
      - name: digits
        recipe: {epochs: 40}      # overrides of Recipe.default_for(data)
        recipe_cuda: {architecture: resnet18}   # applied when the grid runs on a CUDA device
    forget:
      - random: 0.1               # or a count: random: 100
      - class: 3
      - subclass: {class: 3, clusters: 4, cluster: 0}
      - memorization: {bin: high, count: 50}  # by the original's learning-event confidence
      - predicate: "label = 3 AND id % 2 = 0"   # DuckDB SQL over id, label (and x0.. for tabular)
      - ids: [4, 8, 15]           # training-set positions
      - dataset                   # the dataset's own forget set (the people scenario's forget people)
    methods:
      - none
      - finetune: {epochs: 5, lr: 0.01}
      - scrub: {tune: {budget: 6}}  # tuned once (first seed) against a validation oracle
      - rum: {label: rum-finetune, base: finetune}   # label: the same method twice
    metrics: [forget_acc, retain_acc, test_acc, mia_efficacy, avg_gap]
    composite: avg_gap
    sampling: {per_class: 40, forget_per_class: 200, steps: 20, guidance: 1.0}   # diffusion grids
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..data.splits import ForgetSpec, ForgetSpecError

#: top-level keys and what they hold
TOP_KEYS = {
    "name": "a name for the grid (used in the report title)",
    "seeds": "list of seeds; each seed trains its own original and oracles",
    "oracles": "oracles per (dataset, forget set, seed): 1 = reference only, 2 = reference + noise floor",
    "datasets": "list of datasets",
    "forget": "list of forget-set kinds",
    "methods": "list of methods ('all' = every registered method but retrain)",
    "metrics": "metrics to compute (default: ob.evaluate's defaults)",
    "composite": "metric the leaderboard is sorted by (default avg_gap)",
    "attacks": "attacks every model and oracle is also judged under: names (relearn, relearn-retain, "
    "quantize-int8, quantize-int4) or {name: {parameters}}",
    "tune": "defaults for tuned methods: {budget, objective}",
    "tuned": "a previous grid's manifest.json: tuned methods take the parameters it found for the same "
    "dataset, forget set and label (or method name) instead of tuning again",
    "epsilon": "per-example epsilon (NeurIPS 2023 protocol): {n_models, methods}",
    "ulira": "U-LiRA per-example audit (classifiers): {n_shadow, n_targets, methods}; 'oracle' in methods "
    "audits retraining itself (the reference)",
    "roc": "store MIA ROC curves per cell (default true)",
    "threads": "torch CPU threads",
    "device": "auto, cpu or cuda[:i]",
    "save_models": "keep every cell's unlearned model under models/ (default false)",
    "sampling": "how diffusion models are sampled for judging: {per_class, forget_per_class, steps, guidance} "
    "(SamplingPlan's fields; the initial noise follows each cell's seed)",
}
DATASET_KEYS = {"name", "options", "train_size", "val_fraction", "val_seed", "recipe", "recipe_cuda", "label"}


class ConfigError(ValueError):
    """A bench config problem, located at ``file:line``."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    train_size: int | None = None
    val_fraction: float = 0.5
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_cuda: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    val_seed: int = 0  # seed of the test/validation split (presets follow their run's seed)
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of ``load`` (a scenario's size)

    def key(self) -> dict[str, Any]:
        """What determines the data (not the recipe): for content addresses (a default ``val_seed``
        stays out, so the caches of grids written before it existed still match)."""
        key: dict[str, Any] = {"name": self.name, "train_size": self.train_size, "val_fraction": self.val_fraction}
        return {
            **key,
            **({"val_seed": self.val_seed} if self.val_seed else {}),
            **({"options": self.options} if self.options else {}),
        }


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    tune: dict[str, Any] | None = None  # {budget, objective}
    line: int = 0
    label: str = ""  # how results name it (default: the method's name); lets one method run twice

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True)
class BenchConfig:
    name: str
    datasets: tuple[DatasetSpec, ...]
    forget: tuple[ForgetSpec, ...]
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...]
    oracles: int = 2
    metrics: tuple[str, ...] | None = None
    composite: str = "avg_gap"
    attacks: tuple[Any, ...] = ()
    epsilon: dict[str, Any] | None = None
    ulira: dict[str, Any] | None = None
    roc: bool = True
    threads: int | None = None
    device: str = "auto"
    save_models: bool = False
    sampling: dict[str, Any] | None = None
    #: "dataset/forget/label" -> parameters, from a previous grid's manifest (``tuned:``)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    text: str = ""
    source: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("text")
        return json.loads(json.dumps(d, default=str))


class _Where:
    """Maps a path in the parsed YAML (keys and list indices) to its line number."""

    def __init__(self, source: str, node: yaml.Node | None) -> None:
        self.source = source
        self.lines: dict[tuple, int] = {}
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple) -> None:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                self.lines[path + (key,)] = k.start_mark.line + 1
                self._walk(v, path + (key,))
                self.lines[path + (key,)] = k.start_mark.line + 1  # the key's line, not the value's
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, path + (i,))

    def error(self, path: tuple, message: str) -> ConfigError:
        p = path
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p, 1)
        where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in path).lstrip(".")
        return ConfigError(f"{self.source}:{line}: {message}" + (f" (at {where})" if where else ""))


def load_config(path: str | Path | None = None, *, text: str | None = None) -> BenchConfig:
    """Parse and check a bench config (a file, or ``text=``) without loading data or training."""
    if text is None:
        if path is None:
            raise ValueError("give a config path or text=")
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: no such config file")
        text = p.read_text()
    source = str(path) if path is not None else "<config>"
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}:{line}: malformed YAML: {problem}") from None
    where = _Where(source, node)
    if not isinstance(raw, dict):
        raise where.error((), "a bench config is a mapping with datasets, forget, methods and seeds")
    for key in raw:
        if key not in TOP_KEYS:
            raise where.error((key,), f"unknown key {key!r}; known: {sorted(TOP_KEYS)}")
    for key in ("datasets", "forget", "methods", "seeds"):
        if key not in raw:
            raise where.error((), f"missing {key!r}: {TOP_KEYS[key]}")
    return BenchConfig(
        name=str(raw.get("name", Path(source).stem)),
        datasets=tuple(_dataset(where, i, d) for i, d in enumerate(_list(where, raw, "datasets"))),
        forget=tuple(_forget(where, i, f) for i, f in enumerate(_list(where, raw, "forget"))),
        methods=_methods(where, raw),
        seeds=_seeds(where, raw["seeds"]),
        oracles=_oracles(where, raw.get("oracles", 2)),
        metrics=_metrics(where, raw.get("metrics")),
        composite=_composite(where, raw.get("composite", "avg_gap")),
        attacks=_attacks(where, raw.get("attacks")),
        epsilon=_epsilon(where, raw.get("epsilon")),
        ulira=_ulira(where, raw.get("ulira")),
        roc=_bool(where, ("roc",), raw.get("roc", True)),
        threads=None if raw.get("threads") is None else _int(where, ("threads",), raw["threads"], lo=1),
        device=str(raw.get("device", "auto")),
        save_models=_bool(where, ("save_models",), raw.get("save_models", False)),
        sampling=_sampling(where, raw.get("sampling")),
        tuned=_tuned(where, raw.get("tuned")),
        text=text,
        source=source,
    )


# ---- field checks ---------------------------------------------------------------------------------
def _list(where: _Where, raw: dict, key: str) -> list:
    value = raw[key]
    if not isinstance(value, list) or not value:
        raise where.error((key,), f"{key!r} must be a non-empty list")
    return value


def _int(where: _Where, path: tuple, v: Any, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise where.error(path, f"expected an integer, got {v!r}")
    if lo is not None and v < lo:
        raise where.error(path, f"must be >= {lo}, got {v}")
    return v


def _oracles(where: _Where, v: Any) -> int:
    if _int(where, ("oracles",), v, lo=1) > 2:
        raise where.error(
            ("oracles",),
            "oracles is 1 (reference only) or 2 (reference + noise floor); "
            "a third evaluation oracle would not be used (tuning has its own)",
        )
    return v


def _bool(where: _Where, path: tuple, v: Any) -> bool:
    if not isinstance(v, bool):
        raise where.error(path, f"expected true or false, got {v!r}")
    return v


def _fraction(where: _Where, path: tuple, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise where.error(path, f"a fraction must be a number in (0, 1), got {v!r}")
    return float(v)


def _seeds(where: _Where, v: Any) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not v:
        raise where.error(("seeds",), "seeds must be a non-empty list of integers")
    seeds = tuple(_int(where, ("seeds", i), s, lo=0) for i, s in enumerate(v))
    if len(set(seeds)) != len(seeds):
        raise where.error(("seeds",), f"seeds repeat: {list(seeds)}")
    return seeds


def _dataset(where: _Where, i: int, d: Any) -> DatasetSpec:
    from ..data.datasets import available

    path = ("datasets", i)
    if isinstance(d, str):
        d = {"name": d}
    if not isinstance(d, dict) or "name" not in d:
        raise where.error(path, "a dataset is a name or a mapping with 'name'")
    for key in d:
        if key not in DATASET_KEYS:
            raise where.error(path + (key,), f"unknown dataset key {key!r}; known: {sorted(DATASET_KEYS)}")
    name = str(d["name"])
    if name not in available() and not (name.endswith(".npz") and Path(name).exists()):
        raise where.error(path + ("name",), f"unknown dataset {name!r}; available: {available()} or a .npz path")
    train_size = d.get("train_size")
    if train_size is not None:
        train_size = _int(where, path + ("train_size",), train_size, lo=0) or None
    val = d.get("val_fraction", 0.5)
    val = 0.0 if val == 0 and not isinstance(val, bool) else _fraction(where, path + ("val_fraction",), val)
    recipes = {}
    for key in ("recipe", "recipe_cuda"):
        r = d.get(key) or {}
        if not isinstance(r, dict):
            raise where.error(path + (key,), f"{key} must be a mapping of Recipe fields")
        _check_recipe(where, path + (key,), r)
        recipes[key] = r
    val_seed = _int(where, path + ("val_seed",), d.get("val_seed", 0), lo=0)
    options = d.get("options") or {}
    if not isinstance(options, dict):
        raise where.error(path + ("options",), "options must be a mapping of the dataset loader's arguments")
    return DatasetSpec(
        name, train_size, val, recipes["recipe"], recipes["recipe_cuda"], str(d.get("label", name)), val_seed, options
    )


def _check_recipe(where: _Where, path: tuple, r: dict) -> None:
    from ..train.recipe import Recipe

    fields = {f.name for f in dataclasses.fields(Recipe)} - {"factory", "input_shape", "num_classes"}
    for key in r:
        if key not in fields:
            raise where.error(path + (key,), f"unknown recipe field {key!r}; known: {sorted(fields)}")
    try:  # value checks (optimizer, schedule, positive epochs / lr) without building a model
        Recipe(**{"input_shape": (1,), **r})
    except (TypeError, ValueError) as e:
        raise where.error(path, f"bad recipe: {e}") from None


def _forget(where: _Where, i: int, f: Any) -> ForgetSpec:
    path = ("forget", i)
    try:
        return ForgetSpec.from_mapping({f: True} if f == "dataset" else f, line=where.lines.get(path, 0))
    except ForgetSpecError as e:
        raise where.error(path + e.where, str(e)) from None


def _methods(where: _Where, raw: dict) -> tuple[MethodSpec, ...]:
    from ..methods import available, get

    tune_defaults = raw.get("tune") or {}
    if not isinstance(tune_defaults, dict):
        raise where.error(("tune",), "tune must be a mapping {budget, objective}")
    _check_tune(where, ("tune",), tune_defaults)
    out: list[MethodSpec] = []
    for i, m in enumerate(_list(where, raw, "methods")):
        path: tuple[Any, ...] = ("methods", i)
        spec: Any
        line = where.lines.get(path, 0)
        if m == "all":
            out += [MethodSpec(n, line=line) for n in available("classification") if n != "retrain"]
            continue
        if isinstance(m, str):
            name, spec = m, {}
        elif isinstance(m, dict) and len(m) == 1:
            name, spec = next(iter(m.items()))
            spec = {} if spec is None else spec
            path = path + (name,)
            if spec == "tune":
                spec = {"tune": True}
            if not isinstance(spec, dict):
                raise where.error(path, f"method {name!r} takes a mapping of parameters (and optional tune:)")
        else:
            raise where.error(path, f"a method is a name or {{name: {{params}}}}; got {m!r}")
        if name not in available():
            raise where.error(path, f"unknown method {name!r}; available: {available()}")
        params = {k: v for k, v in spec.items() if k not in ("tune", "label")}
        cls = get(name)
        fields = {f.name for f in dataclasses.fields(cls.Params)}
        for k in params:
            if k not in fields:
                raise where.error(path + (k,), f"{name} has no parameter {k!r}; its parameters: {sorted(fields)}")
        try:
            cls.Params(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
        except (TypeError, ValueError) as e:
            raise where.error(path, f"bad {name} parameters: {e}") from None
        tune = spec.get("tune")
        if tune:
            tune = {"budget": 6, "objective": "avg_gap", **tune_defaults, **(tune if isinstance(tune, dict) else {})}
            _check_tune(where, path + ("tune",), tune)
            if not cls.search_space:
                raise where.error(path + ("tune",), f"{name} has no search space to tune")
        out.append(MethodSpec(name, params, tune or None, line, str(spec.get("label", ""))))
    names = [m.label for m in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise where.error(("methods",), f"methods listed twice: {dup} (give each a different label:)")
    return tuple(out)


def _check_tune(where: _Where, path: tuple, t: dict) -> None:
    from ..evaluation.tune import OBJECTIVES

    for k in t:
        if k not in ("budget", "objective"):
            raise where.error(path + (k,), f"unknown tune key {k!r}; known: budget, objective")
    if "budget" in t:
        _int(where, path + ("budget",), t["budget"], lo=1)
    if "objective" in t and t["objective"] not in OBJECTIVES:
        raise where.error(
            path + ("objective",), f"unknown objective {t['objective']!r}; use one of {sorted(OBJECTIVES)}"
        )


def _metrics(where: _Where, v: Any) -> tuple[str, ...] | None:
    from ..metrics.catalogue import METRICS

    if v is None:
        return None
    if not isinstance(v, list) or not v:
        raise where.error(("metrics",), "metrics must be a non-empty list of metric names")
    for i, name in enumerate(v):
        if name not in METRICS:
            raise where.error(("metrics", i), f"unknown metric {name!r}; available: {sorted(METRICS)}")
    return tuple(v)


def _attacks(where: _Where, v: Any) -> tuple[Any, ...]:
    """Attack specs as written (names or one-key mappings), checked now rather than after training."""
    from ..evaluation.attacks import parse_attacks

    if v is None:
        return ()
    if not isinstance(v, list) or not v:
        raise where.error(("attacks",), "attacks must be a non-empty list of attack names or {name: {parameters}}")
    try:
        parse_attacks(v)
    except ValueError as e:
        raise where.error(("attacks",), str(e)) from None
    return tuple(v)


def _sampling(where: _Where, v: Any) -> dict[str, Any] | None:
    """A diffusion grid's :class:`~obliviate.evaluation.generative.SamplingPlan` fields (not its seed)."""
    from ..evaluation.generative import SamplingPlan

    if v is None:
        return None
    known = ("per_class", "forget_per_class", "steps", "guidance")
    if not isinstance(v, dict) or not v:
        raise where.error(("sampling",), f"sampling is a mapping of {list(known)}")
    for k in v:
        if k not in known:
            raise where.error(("sampling", k), f"unknown sampling key {k!r}; known: {list(known)}")
    try:
        SamplingPlan(**v)
    except (TypeError, ValueError) as e:
        raise where.error(("sampling",), f"bad sampling: {e}") from None
    return dict(v)


def _composite(where: _Where, v: Any) -> str:
    from ..metrics.catalogue import METRICS

    if v not in METRICS:
        raise where.error(("composite",), f"unknown metric {v!r} for the leaderboard; available: {sorted(METRICS)}")
    return str(v)


def _tuned(where: _Where, v: Any) -> dict[str, dict[str, Any]]:
    if v is None:
        return {}
    path = Path(str(v))
    try:
        tuning = json.loads(path.read_text())["tuning"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise where.error(("tuned",), f"tuned must name a bench manifest.json with a 'tuning' map: {e}") from None
    if not isinstance(tuning, dict) or not all(isinstance(p, dict) for p in tuning.values()):
        raise where.error(("tuned",), f"{path}: 'tuning' must map dataset/forget/label to parameters")
    return tuning


def _ulira(where: _Where, v: Any) -> dict[str, Any] | None:
    from ..methods import available

    if v is None or v is False:
        return None
    if not isinstance(v, dict) or set(v) - {"n_shadow", "n_targets", "methods"}:
        raise where.error(("ulira",), "ulira takes {n_shadow: N, n_targets: M, methods: [...]}")
    n_shadow = _int(where, ("ulira", "n_shadow"), v.get("n_shadow", 16), lo=4)
    n_targets = _int(where, ("ulira", "n_targets"), v.get("n_targets", 100), lo=2)
    methods = v.get("methods", [])
    if not isinstance(methods, list) or not methods:
        raise where.error(("ulira", "methods"), "ulira.methods must be a non-empty list of method names (or 'oracle')")
    for i, m in enumerate(methods):
        if m != "oracle" and m not in available("classification"):
            raise where.error(("ulira", "methods", i), f"unknown classification method {m!r}")
    return {"n_shadow": n_shadow, "n_targets": n_targets, "methods": list(methods)}


def _epsilon(where: _Where, v: Any) -> dict[str, Any] | None:
    from ..methods import available

    if v is None or v is False:
        return None
    if not isinstance(v, dict):
        raise where.error(("epsilon",), "epsilon takes {n_models: N, methods: [...]}")
    n = _int(where, ("epsilon", "n_models"), v.get("n_models", 16), lo=2)
    methods = v.get("methods", [])
    if not isinstance(methods, list):
        raise where.error(("epsilon", "methods"), "epsilon.methods must be a list of method names")
    for i, m in enumerate(methods):
        if m not in available():
            raise where.error(("epsilon", "methods", i), f"unknown method {m!r}")
    return {"n_models": n, "methods": list(methods)}
