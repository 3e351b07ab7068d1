"""Forget / retain splits of a training set, validated up front and identified by a content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .datasets import ArrayDataset, SizedDataset, labels_of, subset

if TYPE_CHECKING:
    import pandas as pd

    from .datasets import Data


def _check_ids(ids: torch.Tensor, n: int, what: str = "forget ids") -> torch.Tensor:
    """Reject ids that are empty, out of range, duplicated or cover the whole training set."""
    if ids.dim() != 1:
        raise ValueError(f"{what} must be a 1-D list of integers, got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{what} must be integers, got dtype {ids.dtype}")
    if len(ids) == 0:
        raise ValueError(f"{what} are empty: there is nothing to forget")
    bad = ids[(ids < 0) | (ids >= n)]
    if len(bad):
        raise ValueError(
            f"{what} out of range for a training set of {n} examples: {bad[:5].tolist()}"
            + (" ..." if len(bad) > 5 else "")
        )
    uniq, counts = torch.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{what} contain duplicates: {uniq[counts > 1][:5].tolist()}")
    if len(uniq) == n:
        raise ValueError(
            f"{what} cover the whole training set ({n} examples): nothing would be retained; "
            "re-initialise the model instead"
        )
    return uniq  # sorted


@dataclass(frozen=True)
class ForgetSplit:
    """Which training examples to forget (``forget_ids``) out of ``n``; the rest are retained.

    ``kind`` records how the split was made (``random:0.1``, ``class:3``, ``ids``); ``classes`` is
    set for class forgetting, where test accuracy is measured without the forgotten classes.
    """

    forget_ids: torch.Tensor
    n: int
    kind: str = "ids"
    classes: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "forget_ids", _check_ids(torch.as_tensor(self.forget_ids), self.n))

    # ---- constructors -------------------------------------------------------------------------
    @classmethod
    def random(
        cls, dataset: SizedDataset, fraction: float | None = None, *, count: int | None = None, seed: int = 0
    ) -> ForgetSplit:
        """A uniformly random forget set of ``fraction`` of the data or exactly ``count`` examples."""
        n = len(dataset)
        if (fraction is None) == (count is None):
            raise ValueError("give exactly one of fraction= or count=")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            count = max(1, round(fraction * n))
        elif count is None:  # unreachable (checked above); narrows ``count`` to int
            raise ValueError("give exactly one of fraction= or count=")
        if not 0 < count < n:
            raise ValueError(f"count must be in [1, {n - 1}], got {count}")
        g = torch.Generator().manual_seed(seed)
        ids = torch.randperm(n, generator=g)[:count]
        kind = f"random:{fraction}" if fraction is not None else f"random:{count}"
        return cls(ids, n, kind=kind)

    @classmethod
    def by_class(cls, dataset: SizedDataset, classes: int | Iterable[int]) -> ForgetSplit:
        """All training examples of the given classes."""
        classes = (classes,) if isinstance(classes, int) else tuple(int(c) for c in classes)
        y = labels_of(dataset)
        present = set(torch.unique(y).tolist())
        unknown = [c for c in classes if c not in present]
        if unknown:
            raise ValueError(f"classes {unknown} have no training examples (labels: {sorted(present)})")
        ids = torch.nonzero(torch.isin(y, torch.tensor(classes))).flatten()
        return cls(ids, len(y), kind="class:" + ",".join(map(str, classes)), classes=classes)

    @classmethod
    def from_ids(cls, dataset: SizedDataset | int, ids: Sequence[int] | np.ndarray | torch.Tensor) -> ForgetSplit:
        """An explicit id list (positions in ``dataset``), validated against the dataset's size."""
        n = dataset if isinstance(dataset, int) else len(dataset)
        ids = torch.as_tensor(np.array(ids)) if not isinstance(ids, torch.Tensor) else ids
        if ids.dtype.is_floating_point and bool((ids == ids.round()).all()):
            ids = ids.long()  # e.g. an empty list, or ids read back as whole floats
        return cls(ids, n, kind="ids")

    @classmethod
    def subclass(
        cls, dataset: SizedDataset, label: int, *, clusters: int = 4, cluster: int = 0, seed: int = 0
    ) -> ForgetSplit:
        """A sub-population of one class: cluster ``cluster`` of a k-means (``clusters`` groups) of
        that class's inputs, clusters numbered largest first.

        Datasets without sub-class labels (CIFAR-20's "rocket" inside "vehicles 2") get their
        sub-classes this way; where real sub-class labels exist, use :meth:`where` on them.
        """
        from sklearn.cluster import KMeans

        if not 0 <= cluster < clusters:
            raise ValueError(f"cluster must be in [0, {clusters - 1}], got {cluster}")
        y = labels_of(dataset)
        members = torch.nonzero(y == int(label)).flatten()
        if len(members) < clusters:
            raise ValueError(f"class {label} has {len(members)} training examples, fewer than {clusters} clusters")
        x = _inputs(dataset, members)
        km = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit(x.reshape(len(members), -1).double().numpy())
        sizes = np.bincount(km.labels_, minlength=clusters)
        order = np.argsort(-sizes, kind="stable")  # cluster 0 = the largest, whatever k-means numbered it
        ids = members[torch.as_tensor(km.labels_ == order[cluster])]
        return cls(ids, len(y), kind=f"subclass:{label}/{cluster}of{clusters}")

    @classmethod
    def by_score(
        cls,
        dataset: SizedDataset | int,
        scores: Sequence[float] | np.ndarray | torch.Tensor,
        *,
        bin: str = "high",
        count: int | None = None,
        fraction: float | None = None,
        center: float | None = None,
    ) -> ForgetSplit:
        """The ``count`` examples with the highest / lowest / middle scores, or a third of each ("mix").

        Scores are oriented so that higher = more of the property (e.g. more memorized); "mid" takes
        the examples closest to ``center`` (default: the median), as RUM's refinement step does.
        """
        n = dataset if isinstance(dataset, int) else len(dataset)
        s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        if s.shape != (n,):
            raise ValueError(
                f"scores must have one value per training example: got shape {tuple(s.shape)}, "
                f"the dataset has {n} examples"
            )
        if not torch.isfinite(s).all():
            raise ValueError("scores contain NaN or inf")
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count= or fraction=")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            count = max(1, round(fraction * n))
        elif count is None:  # unreachable (checked above); narrows ``count`` to int
            raise ValueError("give exactly one of count= or fraction=")
        bins = ("low", "mid", "high", "mix")
        if bin not in bins:
            raise ValueError(f"bin must be one of {bins}, got {bin!r}")
        if not 0 < count < (n if bin != "mix" else n + 1):
            raise ValueError(f"count must be in [1, {n - 1}], got {count}")
        order = torch.argsort(s, stable=True)
        mid_ref = float(s.median()) if center is None else float(center)
        by_mid = torch.argsort((s - mid_ref).abs(), stable=True)
        pick = {"low": lambda k: order[:k], "high": lambda k: order[n - k :], "mid": lambda k: by_mid[:k]}
        if bin != "mix":
            ids = pick[bin](count)
        else:  # disjoint thirds: high first, then low, then mid among what is left
            k = count // 3
            taken = torch.zeros(n, dtype=torch.bool)
            for part, size in (("high", count - 2 * k), ("low", k), ("mid", k)):
                cand = {"high": order.flip(0), "low": order, "mid": by_mid}[part]
                cand = cand[~taken[cand]][:size]
                taken[cand] = True
            ids = torch.nonzero(taken).flatten()
        return cls(ids, n, kind=f"score:{bin}:{count}")

    @classmethod
    def where(cls, table: pd.DataFrame | str | Path, predicate: str) -> ForgetSplit:
        """Rows of ``table`` (a DataFrame, or a Parquet / CSV file) matching an SQL ``WHERE`` clause.

        Evaluated by DuckDB, so deletion requests are written as the SQL users know
        ("age BETWEEN 30 AND 31 AND region = 'north'"); row positions are the training-set ids.
        The query runs with DuckDB's external access off: a predicate can read only this table.
        """
        import duckdb
        import pandas as pd

        if isinstance(table, (str, Path)):
            path = Path(table)
            if not path.exists():
                raise ValueError(f"table file {path} does not exist")
            reader = {".parquet": duckdb.read_parquet, ".csv": duckdb.read_csv}.get(path.suffix.lower())
            if reader is None:
                raise ValueError(f"table file must be .parquet or .csv, got {path.name}")
            table = reader(str(path)).df()
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"table must be a pandas DataFrame or a .parquet/.csv path, got {type(table).__name__}")
        if not isinstance(predicate, str) or not predicate.strip():
            raise ValueError('predicate is empty: give an SQL condition such as "age > 60"')
        n = len(table)
        con = duckdb.connect()
        try:
            con.register("t", table.assign(__row__=np.arange(n)))
            con.execute("SET enable_external_access = false")
            try:
                rows = con.execute(f"SELECT __row__ FROM t WHERE ({predicate})").fetchnumpy()["__row__"]
            except duckdb.ParserException as e:
                raise ValueError(f"syntax error in predicate {predicate!r}: {str(e).splitlines()[0]}") from None
            except duckdb.BinderException as e:
                raise ValueError(
                    f"predicate {predicate!r} does not fit the table "
                    f"(columns: {list(table.columns)}): {str(e).splitlines()[0]}"
                ) from None
            except duckdb.Error as e:
                raise ValueError(f"predicate {predicate!r} failed: {str(e).splitlines()[0]}") from None
        finally:
            con.close()
        if len(rows) == 0:
            raise ValueError(f"predicate {predicate!r} matches no rows: there is nothing to forget")
        if len(rows) == n:
            raise ValueError(f"predicate {predicate!r} matches every row ({n}): nothing would be retained")
        return cls(torch.as_tensor(np.asarray(rows, dtype=np.int64)), n, kind=f"where:{predicate}")

    # ---- views --------------------------------------------------------------------------------
    @property
    def retain_ids(self) -> torch.Tensor:
        mask = torch.ones(self.n, dtype=torch.bool)
        mask[self.forget_ids] = False
        return torch.nonzero(mask).flatten()

    def forget_mask(self) -> torch.Tensor:
        mask = torch.zeros(self.n, dtype=torch.bool)
        mask[self.forget_ids] = True
        return mask

    def _subset(self, dataset: SizedDataset, ids: torch.Tensor) -> SizedDataset:
        if len(dataset) != self.n:
            raise ValueError(f"split was made for {self.n} examples but the dataset has {len(dataset)}")
        return subset(dataset, ids)

    def retain_set(self, dataset: SizedDataset) -> SizedDataset:
        return self._subset(dataset, self.retain_ids)

    def forget_set(self, dataset: SizedDataset) -> SizedDataset:
        return self._subset(dataset, self.forget_ids)

    @property
    def hash(self) -> str:
        """Content hash of (n, sorted forget ids): equal splits hash equally, whatever their kind."""
        h = hashlib.sha256(str(self.n).encode())
        h.update(self.forget_ids.numpy().astype("<i8").tobytes())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.forget_ids)

    def __repr__(self) -> str:
        return f"ForgetSplit(kind={self.kind!r}, forget={len(self)}, n={self.n}, hash={self.hash})"

    # ---- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "kind": self.kind,
            "classes": list(self.classes),
            "hash": self.hash,
            "forget_ids": self.forget_ids.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ForgetSplit:
        split = cls(torch.tensor(d["forget_ids"]), int(d["n"]), d.get("kind", "ids"), tuple(d.get("classes", ())))
        if "hash" in d and d["hash"] != split.hash:
            raise ValueError(f"split hash mismatch: file says {d['hash']}, content gives {split.hash}")
        return split

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> ForgetSplit:
        return cls.from_dict(json.loads(Path(path).read_text()))


class ForgetSpecError(ValueError):
    """A bad forget-set spec; ``where`` is the key path inside the mapping (for YAML line numbers)."""

    def __init__(self, message: str, where: tuple = ()) -> None:
        super().__init__(message)
        self.where = where


#: the kinds of forget set a spec can name (string form ``kind:arg``, mapping form ``{kind: arg}``);
#: ``dataset`` is the data's own forget set (``TextData.forget_split()``, e.g. the people scenario's)
FORGET_KINDS = ("random", "class", "subclass", "memorization", "predicate", "ids", "dataset")
MEMORIZATION_SCORES = ("confidence", "max_conf", "entropy", "bi_acc")
MEMORIZATION_BINS = ("low", "mid", "high", "mix")


def _int_arg(v: Any, where: tuple, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ForgetSpecError(f"expected an integer, got {v!r}", where)
    if v < lo:
        raise ForgetSpecError(f"must be >= {lo}, got {v}", where)
    return v


def _fraction_arg(v: Any, where: tuple) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
        raise ForgetSpecError(f"a fraction must be a number in (0, 1), got {v!r}", where)
    return float(v)


@dataclass(frozen=True)
class ForgetSpec:
    """Which examples to forget, before there is data: the one parser of ``class:3``, ``random:0.1``,
    ``random:50`` (a count), ``ids:4,8,15`` or ``predicate:label = 3``, and of the YAML mappings of
    bench configs (``{subclass: {class: 8, clusters: 3}}``, ``{memorization: {bin: high, count: 60}}``).

    ``label`` names the forget set in results (bench cell files carry it, so defaults never change);
    ``line`` is the config line it came from. :meth:`split` resolves it against a dataset.
    """

    kind: str
    args: dict[str, Any]
    label: str
    line: int = 0

    @classmethod
    def parse(cls, spec: str | dict | ForgetSpec) -> ForgetSpec:
        """A spec from its string or mapping form (or itself)."""
        if isinstance(spec, ForgetSpec):
            return spec
        if isinstance(spec, dict):
            return cls.from_mapping(spec)
        if not isinstance(spec, str):
            raise ForgetSpecError(f"a forget spec is a string such as 'class:3' or a mapping; got {spec!r}")
        kind, _, arg = spec.partition(":")
        kind, arg = kind.strip(), arg.strip()
        if kind == "dataset" and not arg:
            return cls.from_mapping({kind: True})
        if kind not in FORGET_KINDS or not arg or kind in ("subclass", "memorization"):
            raise ForgetSpecError(
                f"bad forget spec {spec!r}: use random:FRACTION, random:COUNT, class:C[,C...], "
                "ids:I[,I...] predicate:SQL or dataset (subclass and memorization need a mapping)"
            )
        if kind == "predicate":
            return cls.from_mapping({kind: arg})
        try:
            values = [float(a) if "." in a or "e" in a.lower() else int(a) for a in arg.split(",")]
        except ValueError:
            raise ForgetSpecError(f"bad forget spec {spec!r}: {arg!r} is not a number list") from None
        return cls.from_mapping({kind: values if kind in ("class", "ids") and len(values) > 1 else values[0]})

    @classmethod
    def from_mapping(cls, f: dict, line: int = 0) -> ForgetSpec:
        """A spec from ``{kind: arg, label: optional}``; errors carry the offending key path."""
        if not isinstance(f, dict):
            raise ForgetSpecError(f"a forget set is a mapping such as {{random: 0.1}}; got {f!r}")
        label = f.get("label")
        kinds = [k for k in f if k != "label"]
        if len(kinds) != 1 or kinds[0] not in FORGET_KINDS:
            raise ForgetSpecError(f"a forget set has exactly one kind of {list(FORGET_KINDS)}; got {kinds}")
        kind = kinds[0]
        v, p = f[kind], (kind,)
        if kind == "random":
            if isinstance(v, dict):
                v = v.get("fraction", v.get("count"))
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ForgetSpecError(f"random takes a fraction in (0, 1) or a count >= 1, got {v!r}", p)
            if isinstance(v, int) or (v >= 1 and v == int(v)):
                args: dict[str, Any] = {"count": _int_arg(int(v), p, lo=1)}
            else:
                args = {"fraction": _fraction_arg(v, p)}
            default = f"random-{v}"
        elif kind in ("class", "ids"):
            values = v if isinstance(v, list) else [v]
            key = "classes" if kind == "class" else "ids"
            args = {key: [_int_arg(c, p, lo=0) for c in values]}
            if kind == "ids" and not values:
                raise ForgetSpecError("ids takes a non-empty list of training-set positions", p)
            default = (
                "class-" + "-".join(map(str, args["classes"]))
                if kind == "class"
                else f"ids-{len(values)}-{hashlib.sha256(str(args['ids']).encode()).hexdigest()[:8]}"
            )
        elif kind == "dataset":
            if v is not True:
                raise ForgetSpecError("dataset takes no argument: it names the data's own forget set", p)
            args, default = {}, "dataset"
        elif kind == "subclass":
            if not isinstance(v, dict) or "class" not in v:
                raise ForgetSpecError("subclass takes {class: C, clusters: K, cluster: J}", p)
            unknown = set(v) - {"class", "clusters", "cluster"}
            if unknown:
                raise ForgetSpecError(f"unknown subclass keys {sorted(unknown)}", p)
            args = {
                "label": _int_arg(v["class"], p + ("class",), lo=0),
                "clusters": _int_arg(v.get("clusters", 4), p + ("clusters",), lo=2),
                "cluster": _int_arg(v.get("cluster", 0), p + ("cluster",), lo=0),
            }
            if args["cluster"] >= args["clusters"]:
                raise ForgetSpecError(f"cluster must be < clusters ({args['clusters']})", p)
            default = f"subclass-{args['label']}.{args['cluster']}of{args['clusters']}"
        elif kind == "memorization":
            if not isinstance(v, dict):
                raise ForgetSpecError("memorization takes {bin: low|mid|high|mix, count: N or fraction: F}", p)
            unknown = set(v) - {"bin", "count", "fraction", "score"}
            if unknown:
                raise ForgetSpecError(f"unknown memorization keys {sorted(unknown)}", p)
            b = v.get("bin", "high")
            if b not in MEMORIZATION_BINS:
                raise ForgetSpecError(f"bin must be one of {list(MEMORIZATION_BINS)}, got {b!r}", p + ("bin",))
            score = v.get("score", "confidence")
            if score not in MEMORIZATION_SCORES:
                raise ForgetSpecError(
                    f"score must be one of {list(MEMORIZATION_SCORES)}, got {score!r}", p + ("score",)
                )
            if ("count" in v) == ("fraction" in v):
                raise ForgetSpecError("give exactly one of count or fraction", p)
            size = (
                {"count": _int_arg(v["count"], p + ("count",), lo=1)}
                if "count" in v
                else {"fraction": _fraction_arg(v["fraction"], p + ("fraction",))}
            )
            args = {"bin": b, "score": score, **size}
            default = f"memorization-{b}-{next(iter(size.values()))}"
        else:  # predicate
            if not isinstance(v, str) or not v.strip():
                raise ForgetSpecError('predicate takes an SQL condition, e.g. "label = 3 AND id % 2 = 0"', p)
            args = {"predicate": v}
            default = "where " + " ".join(v.split())[:48]
        return cls(kind, args, str(label) if label else default, line)

    def to_mapping(self) -> dict[str, Any]:
        """The mapping form (``from_mapping(spec.to_mapping()) == spec``), for configs built in code."""
        a = self.args
        arg: Any = {
            "random": lambda: a.get("fraction", a.get("count")),
            "class": lambda: a.get("classes"),
            "ids": lambda: a.get("ids"),
            "predicate": lambda: a.get("predicate"),
            "dataset": lambda: True,
            "subclass": lambda: {"class": a["label"], "clusters": a["clusters"], "cluster": a["cluster"]},
            "memorization": lambda: dict(a),
        }[self.kind]()
        return {self.kind: arg, "label": self.label}

    @property
    def needs_scores(self) -> bool:
        """Whether :meth:`split` needs per-example scores of the original (memorization sets)."""
        return self.kind == "memorization"

    def split(self, data: Data | SizedDataset, seed: int = 0, *, scores: Any = None) -> ForgetSplit:
        """The split of ``data`` (a ``Data`` or its training set) this spec names; ``seed`` draws
        random sets and seeds sub-class clustering; ``scores`` (one per training example, higher =
        more memorized) rank memorization sets and come from the original model, which data cannot know."""
        from .datasets import Data

        train = data.train if isinstance(data, Data) else data
        a = self.args
        if self.kind == "random":
            return ForgetSplit.random(train, a.get("fraction"), count=a.get("count"), seed=seed)
        if self.kind == "class":
            return ForgetSplit.by_class(train, a["classes"])
        if self.kind == "ids":
            return ForgetSplit.from_ids(train, a["ids"])
        if self.kind == "dataset":
            own = getattr(data, "forget_split", None)
            if own is None:
                raise ValueError(
                    "'dataset' names the data's own forget set: pass the Data (e.g. a TextData), not its training set"
                )
            return own()
        if self.kind == "subclass":
            return ForgetSplit.subclass(train, a["label"], clusters=a["clusters"], cluster=a["cluster"], seed=seed)
        if self.kind == "predicate":
            columns = data.train_table if isinstance(data, Data) else None
            return ForgetSplit.where(table_of(train, columns), a["predicate"])
        if scores is None:
            raise ValueError(
                f"forget set {self.label!r} ranks examples by the original's {a['score']!r} score: pass scores="
            )
        return ForgetSplit.by_score(train, scores, bin=a["bin"], count=a.get("count"), fraction=a.get("fraction"))


def parse_forget_spec(spec: str, dataset: SizedDataset, seed: int = 0) -> ForgetSplit:
    """The split a spec string names (``random:0.1``, ``random:100``, ``class:3,5``, ``ids:1,2``):
    ``ForgetSpec.parse(spec).split(dataset, seed)``."""
    return ForgetSpec.parse(spec).split(dataset, seed)


def table_of(dataset: SizedDataset, columns: pd.DataFrame | None = None) -> pd.DataFrame:
    """A training set as a table for :meth:`ForgetSplit.where`: ``id`` (the training position),
    ``label`` (the class index) and the named ``columns`` (e.g. ``Data.train_table``, row i = example i)
    or, for tabular (1-D) inputs without them, one column ``x0``, ``x1``, ... per feature. A user's own
    column called ``id`` or ``label`` keeps its meaning (a predicate means the values the user knows)."""
    import pandas as pd

    y = labels_of(dataset).numpy()
    table = pd.DataFrame({"id": np.arange(len(y)), "label": y})
    if columns is not None:
        if len(columns) != len(y):
            raise ValueError(f"columns have {len(columns)} rows for {len(y)} examples")
        own = [c for c in table.columns if c in columns.columns]
        return pd.concat([table.drop(columns=own), columns.reset_index(drop=True)], axis=1)
    first = dataset[0][0]
    if first.dim() == 1:
        x = _inputs(dataset, torch.arange(len(y)))
        table = pd.concat([table, pd.DataFrame(x.numpy(), columns=[f"x{j}" for j in range(x.shape[1])])], axis=1)
    return table


def _inputs(dataset: SizedDataset, ids: torch.Tensor) -> torch.Tensor:
    if isinstance(dataset, ArrayDataset):
        return dataset.x[ids]
    return torch.stack([dataset[int(i)][0] for i in ids])
