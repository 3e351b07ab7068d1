"""Forget / retain splits of a training set, validated up front and identified by a content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import ArrayDataset, labels_of, subset

if TYPE_CHECKING:
    import pandas as pd


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
        cls, dataset: Dataset, fraction: float | None = None, *, count: int | None = None, seed: int = 0
    ) -> "ForgetSplit":
        """A uniformly random forget set of ``fraction`` of the data or exactly ``count`` examples."""
        n = len(dataset)
        if (fraction is None) == (count is None):
            raise ValueError("give exactly one of fraction= or count=")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            count = max(1, round(fraction * n))
        if not 0 < count < n:
            raise ValueError(f"count must be in [1, {n - 1}], got {count}")
        g = torch.Generator().manual_seed(seed)
        ids = torch.randperm(n, generator=g)[:count]
        kind = f"random:{fraction}" if fraction is not None else f"random:{count}"
        return cls(ids, n, kind=kind)

    @classmethod
    def by_class(cls, dataset: Dataset, classes: int | Iterable[int]) -> "ForgetSplit":
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
    def from_ids(cls, dataset: Dataset | int, ids: Sequence[int] | np.ndarray | torch.Tensor) -> "ForgetSplit":
        """An explicit id list (positions in ``dataset``), validated against the dataset's size."""
        n = dataset if isinstance(dataset, int) else len(dataset)
        ids = torch.as_tensor(np.array(ids)) if not isinstance(ids, torch.Tensor) else ids
        if ids.dtype.is_floating_point and bool((ids == ids.round()).all()):
            ids = ids.long()  # e.g. an empty list, or ids read back as whole floats
        return cls(ids, n, kind="ids")

    @classmethod
    def subclass(
        cls, dataset: Dataset, label: int, *, clusters: int = 4, cluster: int = 0, seed: int = 0
    ) -> "ForgetSplit":
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
        cls, dataset: Dataset | int, scores: Sequence[float] | np.ndarray | torch.Tensor, *, bin: str = "high",
        count: int | None = None, fraction: float | None = None, center: float | None = None,
    ) -> "ForgetSplit":
        """The ``count`` examples with the highest / lowest / middle scores, or a third of each ("mix").

        Scores are oriented so that higher = more of the property (e.g. more memorized); "mid" takes
        the examples closest to ``center`` (default: the median), as RUM's refinement step does.
        """
        n = dataset if isinstance(dataset, int) else len(dataset)
        s = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        if s.shape != (n,):
            raise ValueError(f"scores must have one value per training example: got shape {tuple(s.shape)}, "
                             f"the dataset has {n} examples")
        if not torch.isfinite(s).all():
            raise ValueError("scores contain NaN or inf")
        if (count is None) == (fraction is None):
            raise ValueError("give exactly one of count= or fraction=")
        if fraction is not None:
            if not 0 < fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {fraction}")
            count = max(1, round(fraction * n))
        bins = ("low", "mid", "high", "mix")
        if bin not in bins:
            raise ValueError(f"bin must be one of {bins}, got {bin!r}")
        if not 0 < count < (n if bin != "mix" else n + 1):
            raise ValueError(f"count must be in [1, {n - 1}], got {count}")
        order = torch.argsort(s, stable=True)
        mid_ref = float(s.median()) if center is None else float(center)
        by_mid = torch.argsort((s - mid_ref).abs(), stable=True)
        pick = {"low": lambda k: order[:k], "high": lambda k: order[n - k:], "mid": lambda k: by_mid[:k]}
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
    def where(cls, table: "pd.DataFrame | str | Path", predicate: str) -> "ForgetSplit":
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
            raise ValueError("predicate is empty: give an SQL condition such as \"age > 60\"")
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
                raise ValueError(f"predicate {predicate!r} does not fit the table "
                                 f"(columns: {list(table.columns)}): {str(e).splitlines()[0]}") from None
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

    def _subset(self, dataset: Dataset, ids: torch.Tensor) -> Dataset:
        if len(dataset) != self.n:
            raise ValueError(f"split was made for {self.n} examples but the dataset has {len(dataset)}")
        return subset(dataset, ids)

    def retain_set(self, dataset: Dataset) -> Dataset:
        return self._subset(dataset, self.retain_ids)

    def forget_set(self, dataset: Dataset) -> Dataset:
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
    def from_dict(cls, d: dict) -> "ForgetSplit":
        split = cls(torch.tensor(d["forget_ids"]), int(d["n"]), d.get("kind", "ids"), tuple(d.get("classes", ())))
        if "hash" in d and d["hash"] != split.hash:
            raise ValueError(f"split hash mismatch: file says {d['hash']}, content gives {split.hash}")
        return split

    def save(self, path: str | Path) -> None:
        from ..io import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "ForgetSplit":
        return cls.from_dict(json.loads(Path(path).read_text()))


def parse_forget_spec(spec: str, dataset: Dataset, seed: int = 0) -> ForgetSplit:
    """Parse the CLI forms ``random:0.1``, ``random:100`` (a count), ``class:3`` or ``class:3,5``."""
    kind, _, arg = spec.partition(":")
    if kind == "random" and arg:
        value = float(arg)
        if value >= 1 and value == int(value):
            return ForgetSplit.random(dataset, count=int(value), seed=seed)
        return ForgetSplit.random(dataset, fraction=value, seed=seed)
    if kind == "class" and arg:
        return ForgetSplit.by_class(dataset, [int(c) for c in arg.split(",")])
    raise ValueError(f"bad forget spec {spec!r}: use random:FRACTION, random:COUNT or class:C[,C...]")


def table_of(dataset: Dataset, columns: "pd.DataFrame | None" = None) -> "pd.DataFrame":
    """A training set as a table for :meth:`ForgetSplit.where`: ``id``, ``label`` and the named
    ``columns`` (e.g. ``Data.train_table``, row i = example i) or, for tabular (1-D) inputs without
    them, one column ``x0``, ``x1``, ... per feature."""
    import pandas as pd

    y = labels_of(dataset).numpy()
    table = pd.DataFrame({"id": np.arange(len(y)), "label": y})
    if columns is not None:
        if len(columns) != len(y):
            raise ValueError(f"columns have {len(columns)} rows for {len(y)} examples")
        return pd.concat([table, columns.reset_index(drop=True)], axis=1)
    first = dataset[0][0]
    if first.dim() == 1:
        x = _inputs(dataset, torch.arange(len(y)))
        table = pd.concat([table, pd.DataFrame(x.numpy(), columns=[f"x{j}" for j in range(x.shape[1])])], axis=1)
    return table


def _inputs(dataset: Dataset, ids: torch.Tensor) -> torch.Tensor:
    if isinstance(dataset, ArrayDataset):
        return dataset.x[ids]
    return torch.stack([dataset[int(i)][0] for i in ids])
