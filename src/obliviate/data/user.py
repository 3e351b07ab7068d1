"""A user's own data from files: tables, image folders, CIFAR binary batches, text rows, TOFU and MUSE dumps.

One entry point, :func:`from_file`, picks the reader by what the path is; each reader returns the
:class:`~obliviate.data.Data` (or :class:`~obliviate.data.TextData`) the rest of obliviate uses, with

- ``train_table``: the training rows' raw values (table columns; an image's path and class; a text row
  and its fields), row i = training example i, for SQL deletion requests in the user's own terms;
- ``subject`` / ``groups``: the column naming each row's person or entity, and those names as integer
  codes (-1 = none), the same notion for every modality;
- ``source``: a :class:`Source` that says how to read the file again. :func:`save_source` writes it
  beside a model (the fitted table encoder as JSON, a text tokenizer as ``tokenizer.json``, never a
  pickle) and :func:`from_run` reads the same file back into the same rows and features, refusing
  data whose fingerprint (a content hash of the training rows) differs from the one saved.

The train/test split is part of the recipe: seeded, stratified by label for tables and images, and
by subject when a subject column is given (a subject's rows are all trained on or all held out, so
held-out rows are of people the model never saw).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..io import read_json, write_json
from .datasets import ArrayDataset, Data, from_arrays, read_cifar
from .text import TextData, TextDataset, train_tokenizer

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.compose import ColumnTransformer

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
TEXT_SUFFIXES = (".txt", ".jsonl", ".json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: a classification target with more distinct values than this is refused (most likely a regression target)
MAX_CLASSES = 100
#: a categorical feature with more distinct training values than this (or, from 20 on, more than half the
#: rows) is refused: most likely an identifier or free text
MAX_CATEGORIES = 100
MISSING = "(missing)"
ENCODER_FILE = "encoder.json"
TOKENIZER_DIR = "tokenizer"
#: TOFU: 200 fictitious authors, 20 question-answer pairs each, in author order (Maini et al. 2024)
TOFU_PAIRS_PER_AUTHOR = 20

D = TypeVar("D", bound=Data)


@dataclass(frozen=True)
class Source:
    """How a :class:`Data` was read from a user's file: enough to read it again identically.

    ``kind``: ``table``, ``images``, ``cifar``, ``text``, ``tofu`` or ``muse``; ``options``: the reader's
    keyword arguments (target, subject, split fraction and seed, image size, sequence length...);
    ``fingerprint``: sha256 of the training rows (:func:`fingerprint`); ``train_rows``: each training
    example's row in the file (for a folder, its position in the reader's sorted listing).
    """

    kind: str
    path: str
    options: dict[str, Any]
    fingerprint: str = ""
    train_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), compare=False)
    encoder: TableEncoder | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "options": self.options, "fingerprint": self.fingerprint}


# ---- tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableEncoder:
    """Table rows -> float features and class labels: scikit-learn's ``ColumnTransformer`` with a
    ``StandardScaler`` on numeric columns and a ``OneHotEncoder`` on the others, fitted on the training
    part only (test rows are encoded with training statistics; unseen categories become all-zero).

    Its fitted state (columns, means, scales, categories, class labels) is plain data, saved as JSON
    (:meth:`to_dict`, :meth:`save`) and rebuilt into the same transformer, so no pickle is ever read.
    """

    target: str
    classes: tuple[Any, ...]
    numeric: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    @classmethod
    def fit(cls, table: pd.DataFrame, target: str, features: Sequence[str], classes: Sequence[Any]) -> TableEncoder:
        """Fit on ``table`` (the training rows); ``classes``: every target value, in label order."""
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        numeric = tuple(c for c in features if is_numeric_dtype(table[c]) and not is_bool_dtype(table[c]))
        categorical = tuple(c for c in features if c not in numeric)
        for c in categorical:
            n = table[c].nunique(dropna=False)
            if n > MAX_CATEGORIES or (n >= 20 and n > len(table) / 2):
                raise ValueError(
                    f"column {c!r} has {n} distinct values in {len(table)} training rows: it looks like an "
                    "identifier or free text, not a category (one-hot, it would let the model memorize rows by "
                    "name). Pass it as subject=, or leave it out with features= / --ignore"
                )
        ct = _column_transformer(numeric, categorical, None).fit(_features(table, numeric, categorical))
        scaler, onehot = ct.named_transformers_["num"], ct.named_transformers_["cat"]
        return cls(
            target=target,
            classes=tuple(classes),
            numeric=numeric,
            mean=tuple(float(v) for v in getattr(scaler, "mean_", ())),
            scale=tuple(float(v) for v in getattr(scaler, "scale_", ())),
            categorical=categorical,
            categories=tuple(tuple(str(v) for v in cats) for cats in getattr(onehot, "categories_", ())),
        )

    def transformer(self) -> ColumnTransformer:
        """The fitted ``ColumnTransformer``, rebuilt from the saved state: the one-hot encoder is given its
        categories explicitly, the scaler its means and scales (``mean_``, ``scale_``, ``var_``)."""
        import pandas as pd

        ct = _column_transformer(self.numeric, self.categorical, self.categories)
        rows = max([1, *(len(c) for c in self.categories)])
        frame = pd.DataFrame(
            {
                **{c: np.zeros(rows) for c in self.numeric},
                **{c: [cats[i % len(cats)] for i in range(rows)] for c, cats in zip(self.categorical, self.categories)},
            },
            columns=[*self.numeric, *self.categorical],
        )
        ct.fit(frame)
        if self.numeric:
            scaler = ct.named_transformers_["num"]
            scaler.mean_ = np.asarray(self.mean, dtype=np.float64)
            scaler.scale_ = np.asarray(self.scale, dtype=np.float64)
            scaler.var_ = scaler.scale_**2
        return ct

    def transform(self, table: pd.DataFrame) -> np.ndarray:
        """Features [N, D] (float32) of ``table``'s rows."""
        missing = [c for c in (*self.numeric, *self.categorical) if c not in table.columns]
        if missing:
            raise ValueError(f"the table lacks the encoder's columns {missing}")
        x = self.transformer().transform(_features(table, self.numeric, self.categorical))
        return np.asarray(x, dtype=np.float32)

    def labels(self, table: pd.DataFrame) -> np.ndarray:
        """Class indices of ``table``'s target values (position in :attr:`classes`)."""
        index = {_label_key(v): i for i, v in enumerate(self.classes)}
        values = [_label_key(v) for v in table[self.target].tolist()]
        unknown = sorted({v for v in values if v not in index}, key=str)
        if unknown:
            raise ValueError(f"target {self.target!r} has values the encoder does not know: {unknown[:5]}")
        return np.asarray([index[v] for v in values], dtype=np.int64)

    @property
    def feature_names(self) -> list[str]:
        return [*self.numeric, *(f"{c}={v}" for c, cats in zip(self.categorical, self.categories) for v in cats)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "obliviate.table-encoder/1",
            "target": self.target,
            "classes": list(self.classes),
            "numeric": {"columns": list(self.numeric), "mean": list(self.mean), "scale": list(self.scale)},
            "categorical": {"columns": list(self.categorical), "categories": [list(c) for c in self.categories]},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableEncoder:
        if d.get("format") != "obliviate.table-encoder/1":
            raise ValueError(f"not an obliviate table encoder (format {d.get('format')!r})")
        num, cat = d["numeric"], d["categorical"]
        return cls(
            target=d["target"],
            classes=tuple(d["classes"]),
            numeric=tuple(num["columns"]),
            mean=tuple(float(v) for v in num["mean"]),
            scale=tuple(float(v) for v in num["scale"]),
            categorical=tuple(cat["columns"]),
            categories=tuple(tuple(c) for c in cat["categories"]),
        )

    def save(self, path: str | Path) -> Path:
        write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> TableEncoder:
        return cls.from_dict(read_json(path))


def load_encoder(path: str | Path) -> TableEncoder:
    """A :class:`TableEncoder` from its JSON file (a run folder's ``encoder.json``, or the file itself)."""
    path = Path(path)
    return TableEncoder.load(path / ENCODER_FILE if path.is_dir() else path)


def _column_transformer(
    numeric: Sequence[str], categorical: Sequence[str], categories: Sequence[Sequence[str]] | None
) -> ColumnTransformer:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    onehot = OneHotEncoder(
        categories="auto" if categories is None else [list(c) for c in categories],
        handle_unknown="ignore",
        sparse_output=False,
    )
    return ColumnTransformer(
        [("num", StandardScaler(), list(numeric)), ("cat", onehot, list(categorical))],
        remainder="drop",
        sparse_threshold=0.0,
    )


def _features(table: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Numeric columns as float, categorical ones as strings (missing -> ``(missing)``)."""
    import pandas as pd

    out = {c: pd.to_numeric(table[c]).astype(np.float64).to_numpy() for c in numeric}
    for c in categorical:
        col = table[c]
        out[c] = np.asarray([MISSING if v is None or v != v else str(v) for v in col.tolist()], dtype=object)
    return pd.DataFrame(out, columns=[*numeric, *categorical])


def _label_key(v: Any) -> Any:
    """Target values compared as JSON would store them (numpy ints -> int, others -> str)."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    return str(v)


def read_table_file(path: str | Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as a DataFrame (Parquet needs pyarrow)."""
    import pandas as pd

    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise ImportError(f"reading {path.name} needs pyarrow: pip install pyarrow ({e})") from None
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path} is not a table file; expected one of {', '.join(TABLE_SUFFIXES)} or .jsonl")


def read_table(
    path: str | Path,
    target: str,
    *,
    subject: str | None = None,
    features: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    test_fraction: float = 0.2,
    seed: int = 0,
    encoder: TableEncoder | None = None,
) -> Data:
    """A CSV/Parquet table with a ``target`` column (the class to predict) as a classification :class:`Data`.

    Features are ``features`` (default: every column but the target, the subject and ``ignore``),
    encoded by a :class:`TableEncoder` fitted on the training part (or the given ``encoder``, e.g. a
    saved run's). Rows are split ``test_fraction`` / rest, stratified by target (by subject if given).
    """
    table = read_table_file(path)
    _check_fraction(test_fraction)
    if len(table) == 0:
        raise ValueError(f"{path} has no rows")
    columns = [str(c) for c in table.columns]
    table.columns = columns
    for what, col in (("target", target), ("subject", subject), *(("ignored", c) for c in ignore)):
        if col is not None and col not in columns:
            raise ValueError(f"{what} column {col!r} is not in {Path(path).name} (columns: {columns})")
    if target == subject:
        raise ValueError(f"the target and the subject are the same column {target!r}")
    if features is None:
        features = [c for c in columns if c not in {target, subject, *ignore}]
    else:
        unknown = [c for c in features if c not in columns]
        if unknown:
            raise ValueError(f"feature columns {unknown} are not in {Path(path).name} (columns: {columns})")
        if target in features or (subject is not None and subject in features):
            raise ValueError("features must not include the target or the subject column")
    if not features:
        raise ValueError(f"{Path(path).name} has no feature columns besides the target and the subject")
    classes = _classes(table[target], target) if encoder is None else list(encoder.classes)
    index = {v: i for i, v in enumerate(classes)}
    values = [_label_key(v) for v in table[target].tolist()]
    unknown = sorted({v for v in values if v not in index}, key=str)
    if unknown:
        raise ValueError(f"target {target!r} has values the saved encoder does not know: {unknown[:5]}")
    labels = np.asarray([index[v] for v in values], dtype=np.int64)
    bad_numeric = [c for c in features if table[c].dtype.kind in "fiu" and table[c].isna().any()]
    if bad_numeric:
        c = bad_numeric[0]
        raise ValueError(
            f"numeric column {c!r} has {int(table[c].isna().sum())} missing values: fill or drop them first "
            "(obliviate does not impute: an imputed value would be a guess the evidence cannot account for)"
        )
    names, codes = _subjects(table, subject)
    train_rows, test_rows = split_rows(len(table), labels=labels, groups=codes, test_fraction=test_fraction, seed=seed)
    train_part = table.iloc[train_rows].reset_index(drop=True)
    if encoder is None:
        encoder = TableEncoder.fit(train_part, target, features, classes)
    elif encoder.target != target or set((*encoder.numeric, *encoder.categorical)) != set(features):
        raise ValueError(
            f"the saved encoder predicts {encoder.target!r} from {[*encoder.numeric, *encoder.categorical]}, "
            f"not {target!r} from {list(features)}"
        )
    x = encoder.transform(table)
    data = from_arrays(
        x[train_rows],
        labels[train_rows],
        x[test_rows],
        labels[test_rows],
        name=Path(path).stem,
        num_classes=len(classes),
    )
    options = {
        "target": target,
        "subject": subject,
        "features": list(features),
        "test_fraction": test_fraction,
        "seed": seed,
    }
    return _finish(
        data, "table", path, options, train_part, subject, codes, train_rows, test_rows, encoder=encoder, names=names
    )


def _classes(column: pd.Series, target: str) -> list[Any]:
    """Sorted distinct target values; refuses missing values, fractional numbers and too many classes."""
    if column.isna().any():
        raise ValueError(f"target {target!r} has {int(column.isna().sum())} missing values: drop those rows first")
    values = column.tolist()
    if column.dtype.kind == "f" and not all(float(v).is_integer() for v in values):
        raise ValueError(
            f"target {target!r} holds fractional numbers: obliviate trains classifiers; bin the values into "
            "classes first (e.g. 0 = none, 1 = 1-3, 2 = 4 or more)"
        )
    distinct = sorted({_label_key(v) for v in values}, key=lambda v: (isinstance(v, str), v))
    if len(distinct) > MAX_CLASSES:
        raise ValueError(
            f"target {target!r} has {len(distinct)} distinct values (more than {MAX_CLASSES}): is it an "
            "identifier or a continuous quantity? Give a class column"
        )
    if len(distinct) < 2:
        raise ValueError(f"target {target!r} has a single value {distinct}: there is nothing to classify")
    return distinct


def _subjects(table: pd.DataFrame, subject: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Each row's subject name (as a string) and integer code (index in the sorted names; -1 = missing)."""
    if subject is None:
        return None, None
    col = table[subject]
    names = np.asarray(["" if v is None or v != v else str(v) for v in col.tolist()], dtype=object)
    present = sorted(set(names[col.notna().to_numpy()].tolist()))
    index = {n: i for i, n in enumerate(present)}
    codes = np.asarray([index.get(n, -1) if ok else -1 for n, ok in zip(names, col.notna())], dtype=np.int64)
    return names, codes


def split_rows(
    n: int,
    *,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train rows, test rows): whole subjects held out when ``groups`` is given (rows without a
    subject, -1, are split one by one), else stratified by ``labels`` where every class has 2 rows."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n)
    if n < 2:
        raise ValueError(f"{n} row(s) are too few to split into training and test rows")
    if groups is not None:
        units = np.where(groups >= 0, groups, -1 - rows)  # each subject-less row is its own unit
        uniq = np.unique(units)
        if len(uniq) < 2:
            raise ValueError("every row has the same subject: cannot hold out whole subjects for testing")
        perm = np.random.default_rng(seed).permutation(len(uniq))
        k = min(len(uniq) - 1, max(1, round(test_fraction * len(uniq))))
        test = np.isin(units, uniq[perm[:k]])
        return rows[~test], rows[test]
    stratify = None
    if labels is not None:
        counts = np.bincount(labels)
        n_test = max(1, round(test_fraction * n))
        if counts[counts > 0].min() >= 2 and n_test >= (counts > 0).sum() and n - n_test >= (counts > 0).sum():
            stratify = labels
    train, test = train_test_split(rows, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(train), np.sort(test)


# ---- images ------------------------------------------------------------------------------------


def read_image_folder(
    root: str | Path,
    *,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Data:
    """An ImageFolder tree, ``root/<class>/<image>``, one folder per class (classes in sorted order, as
    torchvision numbers them), read with Pillow into [C, H, W] floats in [0, 1].

    ``image_size`` (H, W or one side; default the first image's) resizes every image; ``grayscale``
    (default: whether the first image is single-channel) gives 1 channel, else RGB. A tree with
    ``train/`` and ``test/`` folders keeps that split; otherwise ``test_fraction`` is held out, stratified.
    """
    root = _existing(root)
    parts = {p.name: p for p in root.iterdir() if p.is_dir()}
    if {"train", "test"} <= set(parts) and _class_dirs(parts["train"]):
        train_files, train_labels, classes = _image_files(parts["train"])
        test_files, test_labels, test_classes = _image_files(parts["test"])
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ValueError(f"{parts['test']} has classes with no training folder: {unknown}")
        test_labels = np.asarray([classes.index(test_classes[i]) for i in test_labels], dtype=np.int64)
        files = [*train_files, *test_files]
        labels = np.concatenate([train_labels, test_labels])
        train_rows, test_rows = np.arange(len(train_files)), len(train_files) + np.arange(len(test_files))
        given_split = True
    else:
        _check_fraction(test_fraction)
        files, labels, classes = _image_files(root)
        train_rows, test_rows = split_rows(len(files), labels=labels, test_fraction=test_fraction, seed=seed)
        given_split = False
    if len(classes) < 2:
        raise ValueError(f"{root} has a single class folder {classes}: an image folder needs one folder per class")
    size, gray = _image_layout(files[0], image_size, grayscale)
    x = np.stack([_read_image(f, size, gray) for f in files])
    data = from_arrays(
        x[train_rows], labels[train_rows], x[test_rows], labels[test_rows], name=root.name, num_classes=len(classes)
    )
    import pandas as pd

    rel = [str(f.relative_to(root)) for f in files]
    table = pd.DataFrame({"path": [rel[i] for i in train_rows], "class": [classes[labels[i]] for i in train_rows]})
    options = {
        "image_size": list(size),
        "grayscale": gray,
        "test_fraction": None if given_split else test_fraction,
        "seed": seed,
        "classes": classes,
    }
    return _finish(data, "images", root, options, table, None, None, train_rows, test_rows)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(root: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    classes: list[str] = []
    files: list[Path] = []
    labels: list[int] = []
    for d in _class_dirs(root):
        found = sorted(f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if found:
            labels += [len(classes)] * len(found)
            classes.append(d.name)
            files += found
    if not files:
        raise ValueError(
            f"{root} holds no images in class folders (expected {root}/<class>/<image> with suffixes "
            f"{', '.join(IMAGE_SUFFIXES)})"
        )
    return files, np.asarray(labels, dtype=np.int64), classes


def _image_layout(
    first: Path, image_size: int | Sequence[int] | None, grayscale: bool | None
) -> tuple[tuple[int, int], bool]:
    from PIL import Image

    with Image.open(first) as im:
        w, h = im.size
        single = im.mode in ("1", "L", "I", "I;16", "F", "LA")
    if image_size is None:
        size = (h, w)
    elif isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = (int(image_size[0]), int(image_size[1]))
    if min(size) < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return size, single if grayscale is None else bool(grayscale)


def _read_image(path: Path, size: tuple[int, int], gray: bool) -> np.ndarray:
    """[C, H, W] float32 in [0, 1]; resized (bilinear) to ``size`` = (H, W) where it differs."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if gray else "RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
    except OSError as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    return a[None] if gray else a.transpose(2, 0, 1)


def read_cifar_source(root: str | Path, *, label: str = "fine") -> Data:
    """:func:`~obliviate.data.datasets.read_cifar` with a :class:`Source`, for :func:`from_file`."""
    import pandas as pd

    data = read_cifar(root, label=label)
    n, m = len(data.train), len(data.test)
    options = {"label": label} if data.name == "cifar100" else {}
    table = pd.DataFrame({"batch_row": np.arange(n)})
    return _finish(data, "cifar", root, options, table, None, None, np.arange(n), n + np.arange(m))


# ---- text --------------------------------------------------------------------------------------


def read_text(
    path: str | Path,
    *,
    text_column: str | None = None,
    subject: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    length: int | None = None,
    tokenizer: Any = None,
    vocab_size: int = 4096,
) -> TextData:
    """Text rows as causal-LM :class:`~obliviate.data.TextData`, one sequence per row:

    - ``.txt``: one sequence per non-empty line;
    - ``.jsonl`` / ``.json`` (a list of objects or strings) / ``.parquet`` / ``.csv``: the ``text_column``
      (default ``text``), or, where the rows have ``question`` and ``answer`` fields and no text column
      is named, a question-answer pair scored on the answer only (TOFU's convention).

    ``subject`` names a field tying each row to a person or entity. ``tokenizer`` (a Hugging Face
    tokenizer) defaults to a byte-level BPE of ``vocab_size`` trained on the training rows here;
    ``length`` (tokens per row) defaults to the longest row, and a longer row is an error.
    """
    path = _existing(path)
    table = _text_table(path)
    _check_fraction(test_fraction)
    if text_column is None and "text" not in table.columns and {"question", "answer"} <= set(table.columns):
        text_column = None  # question-answer rows
    elif text_column is None:
        text_column = "text"
    for what, col in (("text", text_column), ("subject", subject)):
        if col is not None and col not in table.columns:
            raise ValueError(f"{what} column {col!r} is not in {path.name} (fields: {list(table.columns)})")
    options = {"text_column": text_column, "subject": subject, "test_fraction": test_fraction, "seed": seed}
    return _text_data(
        table, path, "text", options, text_column, subject, test_fraction, seed, length, tokenizer, vocab_size
    )


def read_tofu(
    root: str | Path,
    *,
    subject: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    length: int | None = None,
    tokenizer: Any = None,
    vocab_size: int = 4096,
) -> TextData:
    """A TOFU dump on disk (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", 2024; the
    Hugging Face dataset ``locuslab/TOFU``): a folder holding ``full.json`` (older snapshots:
    ``all_dataset.json``; or ``full.parquet``), JSON lines of ``{"question", "answer"}``, with
    ``forget01/05/10.json`` and ``retain90/95/99.json`` beside it.

    The rows are 200 fictitious authors' 20 question-answer pairs each, in author order, and forgetXX
    is the last XX% of authors; so without a ``subject`` field each row's subject is its author,
    ``author = row // 20`` (column ``author`` of ``train_table``), and ``subject = 'author-199'`` or
    ``author >= 180`` (forget10) select authors. Rows are scored on the answer only; ``test_fraction``
    of the authors are held out whole (never-seen people, the MIA non-members).
    """
    root = _existing(root)
    file = _tofu_file(root)
    if file is None:
        raise ValueError(f"{root} is not a TOFU dump: no full.json, all_dataset.json or full.parquet in it")
    table = _text_table(file)
    missing = {"question", "answer"} - set(table.columns)
    if missing:
        raise ValueError(f"{file} lacks the TOFU fields {sorted(missing)} (fields: {list(table.columns)})")
    options = {"subject": subject, "test_fraction": test_fraction, "seed": seed}
    if subject is None:
        table["author"] = [f"author-{i // TOFU_PAIRS_PER_AUTHOR}" for i in range(len(table))]
        subject = "author"
    elif subject not in table.columns:
        raise ValueError(f"subject column {subject!r} is not in {file.name} (fields: {list(table.columns)})")
    _check_fraction(test_fraction)
    return _text_data(table, root, "tofu", options, None, subject, test_fraction, seed, length, tokenizer, vocab_size)


def read_muse(
    root: str | Path,
    *,
    subject: str | None = None,
    length: int | None = None,
    tokenizer: Any = None,
    vocab_size: int = 4096,
) -> TextData:
    """A MUSE dump on disk (Shi et al., "MUSE: Machine Unlearning Six-Way Evaluation for Language
    Models", 2024; ``muse-bench/MUSE-News`` / ``MUSE-Books``): the ``raw`` subset as files named after
    its splits, ``forget``, ``retain1``, ``retain2`` (trained on) and ``holdout`` (never trained on: the
    test set), each ``.txt`` (one corpus), ``.json`` (a list of documents, as in the MUSE repository) or
    ``.parquet`` (a ``text`` column, as on the Hub), in ``root`` or ``root/raw``.

    Documents are cut into rows of ``length`` tokens (default 128); ``train_table`` has ``part`` (the
    split), ``doc`` (the document's number in it) and ``text``, so ``part = 'forget'`` is MUSE's forget
    set. ``subject`` may name ``part`` or ``doc`` to tie rows to a subject.
    """
    import pandas as pd

    root = _existing(root)
    folder = root / "raw" if (root / "raw").is_dir() else root
    parts = {name: f for name in ("forget", "retain1", "retain2", "holdout") if (f := _muse_file(folder, name))}
    if "forget" not in parts or "holdout" not in parts:
        raise ValueError(f"{folder} is not a MUSE dump: it needs forget and holdout files (.txt, .json or .parquet)")
    length = length or 128
    docs = {name: _muse_docs(f) for name, f in parts.items()}
    if tokenizer is None:
        tokenizer = train_tokenizer([d for name, ds in docs.items() if name != "holdout" for d in ds], vocab_size)
    rows = []
    for name, ds in docs.items():
        for i, d in enumerate(ds):
            rows += [{"part": name, "doc": f"{name}/{i}", "text": c} for c in _chunks(tokenizer, d, length)]
    table = pd.DataFrame(rows, columns=["part", "doc", "text"])
    if subject is not None and subject not in ("part", "doc"):
        raise ValueError(f"a MUSE dump's subject can be 'part' or 'doc', not {subject!r}")
    test = (table["part"] == "holdout").to_numpy()
    rows_idx = np.arange(len(table))
    options = {"subject": subject, "length": length}
    return _make_text_data(
        table, root, "muse", options, "text", subject, rows_idx[~test], rows_idx[test], length, tokenizer
    )


def _chunks(tokenizer: Any, text: str, length: int) -> list[str]:
    """Consecutive stretches of ``length`` − 1 tokens of ``text`` (room for the end token); the tail too."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    step = length - 1
    return [tokenizer.decode(ids[i : i + step]) for i in range(0, len(ids), step)]


def _tofu_file(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    return next((root / n for n in ("full.json", "all_dataset.json", "full.parquet") if (root / n).is_file()), None)


def _muse_file(folder: Path, name: str) -> Path | None:
    return next(
        (folder / f"{name}{s}" for s in (".parquet", ".json", ".txt") if (folder / f"{name}{s}").is_file()), None
    )


def _muse_docs(path: Path) -> list[str]:
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8")
        return [text] if text.strip() else []
    if path.suffix == ".json":
        docs = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            raise ValueError(f"{path} must hold a JSON list of documents (strings)")
        return [d for d in docs if d.strip()]
    table = read_table_file(path)
    if "text" not in table.columns:
        raise ValueError(f"{path} has no 'text' column (columns: {list(table.columns)})")
    return [str(t) for t in table["text"] if str(t).strip()]


def _text_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = [line.rstrip("\r\n") for line in path.read_text(encoding="utf-8").splitlines()]
        table = pd.DataFrame({"text": [line for line in lines if line.strip()]})
    elif suffix == ".json":
        raw = path.read_text(encoding="utf-8")
        try:
            rows = json.loads(raw)
        except json.JSONDecodeError:  # JSON lines saved as .json (TOFU's files are)
            rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
        if isinstance(rows, list) and rows and all(isinstance(r, str) for r in rows):
            rows = [{"text": r} for r in rows]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path} must hold a JSON list of objects or strings, or JSON lines of objects")
        table = pd.DataFrame(rows)
    elif suffix == ".jsonl":
        table = pd.DataFrame(
            [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        )
    elif suffix in TABLE_SUFFIXES:
        table = read_table_file(path)
    else:
        raise ValueError(f"unknown text format {path.suffix!r} for {path}; use .txt, .jsonl, .json, .parquet or .csv")
    if len(table) == 0:
        raise ValueError(f"{path} has no rows")
    table.columns = [str(c) for c in table.columns]
    return table


def _text_data(
    table: pd.DataFrame,
    path: Path,
    kind: str,
    options: dict[str, Any],
    text_column: str | None,
    subject: str | None,
    test_fraction: float,
    seed: int,
    length: int | None,
    tokenizer: Any,
    vocab_size: int,
) -> TextData:
    """Split the rows (by subject where given), fit a tokenizer on the training rows if none is given."""
    for col in [text_column] if text_column else ["question", "answer"]:
        if table[col].isna().any():
            raise ValueError(f"{path.name}: field {col!r} is missing in {int(table[col].isna().sum())} rows")
    _, codes = _subjects(table, subject)
    train_rows, test_rows = split_rows(len(table), groups=codes, test_fraction=test_fraction, seed=seed)
    if tokenizer is None:
        texts = _texts(table.iloc[train_rows], text_column)
        tokenizer = train_tokenizer([p + t for p, t in zip(*texts)], vocab_size)
    return _make_text_data(table, path, kind, options, text_column, subject, train_rows, test_rows, length, tokenizer)


def _texts(table: pd.DataFrame, text_column: str | None) -> tuple[list[str], list[str]]:
    """(prompts, texts): empty prompts for text rows; ``Question: q Answer:`` and `` a`` for QA rows."""
    if text_column is not None:
        texts = [str(t) for t in table[text_column].tolist()]
        return [""] * len(texts), texts
    prompts = [f"Question: {q} Answer:" for q in table["question"].tolist()]
    return prompts, [f" {a}" for a in table["answer"].tolist()]


def _make_text_data(
    table: pd.DataFrame,
    path: Path,
    kind: str,
    options: dict[str, Any],
    text_column: str | None,
    subject: str | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    length: int | None,
    tokenizer: Any,
) -> TextData:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs an end-of-sequence token (rows end with it and are padded with it)")
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ValueError(f"{path.name}: {len(train_rows)} training and {len(test_rows)} test rows; both are needed")
    prompts, texts = _texts(table, text_column)
    qa = text_column is None
    if length is None:
        counts = [len(tokenizer(p + t, add_special_tokens=False)["input_ids"]) + 1 for p, t in zip(prompts, texts)]
        length = max(counts)

    def rows(ids: np.ndarray) -> TextDataset:
        return TextDataset.from_texts(
            tokenizer,
            [texts[i] for i in ids],
            length,
            prompts=[prompts[i] for i in ids] if qa else None,
            truncate=kind == "muse",
        )

    train, test = rows(train_rows), rows(test_rows)
    data = TextData(path.stem, train, test, len(tokenizer), (length,), tokenizer=tokenizer)
    options = {**options, "length": length}
    return _finish(
        data,
        kind,
        path,
        options,
        table.iloc[train_rows].reset_index(drop=True),
        subject,
        _subjects(table, subject)[1],
        train_rows,
        test_rows,
    )


# ---- the common end: subjects, fingerprint, source ---------------------------------------------------


def _finish(
    data: D,
    kind: str,
    path: str | Path,
    options: dict[str, Any],
    train_table: pd.DataFrame,
    subject: str | None,
    codes: np.ndarray | None,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    encoder: TableEncoder | None = None,
    names: np.ndarray | None = None,
) -> D:
    groups = None if codes is None else codes[train_rows]
    data = replace(data, train_table=train_table, subject=subject, groups=groups)
    source = Source(
        kind, str(Path(path).resolve()), options, fingerprint(data), np.asarray(train_rows, dtype=np.int64), encoder
    )
    return replace(data, source=source)


def fingerprint(data: Data) -> str:
    """sha256 of the training rows: the model's inputs and labels (features, pixels or token ids with
    their scored positions and weights) and the raw ``train_table`` values, in row order."""
    h = hashlib.sha256(b"obliviate/data/v1\x00")
    train = data.train
    if isinstance(train, ArrayDataset):
        h.update(str((tuple(train.x.shape), str(train.x.dtype))).encode())
        h.update(train.x.contiguous().numpy().tobytes())
        h.update(train.y.numpy().astype("<i8").tobytes())
    elif isinstance(train, TextDataset):
        h.update(str(tuple(train.ids.shape)).encode())
        for t in (train.ids, train.labels):
            h.update(t.numpy().astype("<i8").tobytes())
        h.update(train.weights.numpy().astype("<f4").tobytes())
    else:
        raise TypeError(f"cannot fingerprint a {type(train).__name__}")
    if data.train_table is not None:
        h.update(data.train_table.to_csv(index=False, lineterminator="\n").encode())
    return h.hexdigest()


# ---- one entry point, and the saved-run round trip ------------------------------------------------


def detect_kind(path: str | Path, *, target: str | None = None, text_column: str | None = None) -> str:
    """What :func:`from_file` would read ``path`` as: ``table``, ``images``, ``cifar``, ``text``,
    ``tofu`` or ``muse``."""
    path = _existing(path)
    if path.is_dir():
        if any(path.glob("data_batch_*.bin")) or ((path / "train.bin").is_file() and (path / "test.bin").is_file()):
            return "cifar"
        if _tofu_file(path) is not None:
            return "tofu"
        raw = path / "raw" if (path / "raw").is_dir() else path
        if _muse_file(raw, "forget") is not None and _muse_file(raw, "holdout") is not None:
            return "muse"
        if _class_dirs(path):
            return "images"
        raise ValueError(
            f"cannot tell what the folder {path} holds: expected class folders of images, CIFAR binary batches, "
            "a TOFU dump (full.json) or a MUSE dump (forget / holdout files)"
        )
    suffix = path.suffix.lower()
    if suffix not in (*TABLE_SUFFIXES, *TEXT_SUFFIXES):
        raise ValueError(
            f"unknown format {path.suffix or '(no suffix)'!r} for {path}: tables are .csv, .tsv or .parquet (with a "
            "target column), text is .txt, .jsonl, .json or .parquet, images a folder of class folders"
        )
    if target is not None:
        if suffix in (".txt", ".json"):
            raise ValueError(f"{path.name} is text; target= applies to tables (.csv, .tsv, .parquet, .jsonl)")
        return "table"
    if suffix in TEXT_SUFFIXES or text_column is not None:
        return "text"
    columns = list(read_table_file(path).columns)
    if "text" in columns or {"question", "answer"} <= set(columns):
        return "text"
    raise ValueError(
        f"{path.name} is a table: give target= (the column to predict) to train a classifier on it, or "
        f"text_column= to read it as text (columns: {columns})"
    )


def from_file(
    path: str | Path,
    *,
    target: str | None = None,
    subject: str | None = None,
    text_column: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    kind: str | None = None,
    features: Sequence[str] | None = None,
    ignore: Sequence[str] = (),
    encoder: TableEncoder | None = None,
    image_size: int | tuple[int, int] | None = None,
    grayscale: bool | None = None,
    label: str = "fine",
    length: int | None = None,
    tokenizer: Any = None,
    vocab_size: int = 4096,
) -> Data:
    """A user's data file or folder as :class:`~obliviate.data.Data`, the reader picked by what it is
    (:func:`detect_kind`; ``kind=`` forces one):

    - a ``.csv`` / ``.tsv`` / ``.parquet`` table with a ``target`` column: :func:`read_table`
      (``features``, ``ignore``, ``encoder``);
    - a folder of class folders of images: :func:`read_image_folder` (``image_size``, ``grayscale``);
    - a folder of CIFAR-10/100 binary batches: :func:`read_cifar` (``label``);
    - text rows (``.txt``, ``.jsonl``, ``.json``, or a table with ``text_column``): :func:`read_text`;
      a TOFU dump: :func:`read_tofu`; a MUSE dump: :func:`read_muse` (``length``, ``tokenizer``, ``vocab_size``).

    ``subject`` names the column tying rows to a person or entity; ``test_fraction`` and ``seed`` fix the
    train/test split. Every option is checked before any file is read in full.
    """
    kind = kind or detect_kind(path, target=target, text_column=text_column)
    given = {
        "target": target,
        "text_column": text_column,
        "features": features,
        "ignore": tuple(ignore) or None,
        "encoder": encoder,
        "image_size": image_size,
        "grayscale": grayscale,
        "length": length,
        "tokenizer": tokenizer,
    }
    applies = {
        "table": {"target", "features", "ignore", "encoder"},
        "images": {"image_size", "grayscale"},
        "cifar": set(),
        "text": {"text_column", "length", "tokenizer"},
        "tofu": {"length", "tokenizer"},
        "muse": {"length", "tokenizer"},
    }
    if kind not in applies:
        raise ValueError(f"unknown kind {kind!r}; use one of {sorted(applies)}")
    wrong = [k for k, v in given.items() if v is not None and k not in applies[kind]]
    if wrong:
        raise ValueError(f"{Path(path).name} reads as {kind}: option(s) {wrong} do not apply to it")
    if kind in ("images", "cifar") and subject is not None:
        raise ValueError(f"{Path(path).name} reads as {kind}, which has no subject column")
    if kind == "table":
        if target is None:
            raise ValueError(f"{Path(path).name} is a table: give target= (the column to predict)")
        return read_table(
            path,
            target,
            subject=subject,
            features=features,
            ignore=ignore,
            test_fraction=test_fraction,
            seed=seed,
            encoder=encoder,
        )
    if kind == "images":
        return read_image_folder(
            path, image_size=image_size, grayscale=grayscale, test_fraction=test_fraction, seed=seed
        )
    if kind == "cifar":
        return read_cifar_source(path, label=label)
    if kind == "tofu":
        return read_tofu(
            path,
            subject=subject,
            test_fraction=test_fraction,
            seed=seed,
            length=length,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
        )
    if kind == "muse":
        return read_muse(path, subject=subject, length=length, tokenizer=tokenizer, vocab_size=vocab_size)
    return read_text(
        path,
        text_column=text_column,
        subject=subject,
        test_fraction=test_fraction,
        seed=seed,
        length=length,
        tokenizer=tokenizer,
        vocab_size=vocab_size,
    )


def save_source(data: Data, folder: str | Path) -> dict[str, Any]:
    """Write what reading ``data``'s file again needs into ``folder`` (``encoder.json`` for a table, the
    tokenizer's ``tokenizer.json`` and config for text) and return the manifest entry
    ``{"kind", "path", "options", "fingerprint"}`` that :func:`from_run` reads (under the manifest's ``data`` key)."""
    source = data.source
    if not isinstance(source, Source):
        raise ValueError(f"{data.name!r} was not read from a file by ob.datasets.from_file: nothing to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if source.encoder is not None:
        source.encoder.save(folder / ENCODER_FILE)
    tokenizer = getattr(data, "tokenizer", None)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    return source.to_dict()


def load_tokenizer(folder: str | Path) -> Any:
    """The tokenizer :func:`save_source` wrote (``folder/tokenizer``), from local files only."""
    from transformers import AutoTokenizer

    path = Path(folder) / TOKENIZER_DIR
    if not path.is_dir():
        raise FileNotFoundError(f"{folder} has no saved tokenizer ({path})")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def from_run(folder: str | Path, path: str | Path | None = None) -> Data:
    """The data a saved run was trained on, read again from ``path`` (default: the path in the manifest)
    with the run's options, encoder and tokenizer, so rows, split and features are the same.

    Raises ``ValueError`` when the folder has no manifest or no data entry, and when the data's
    fingerprint differs from the manifest's (the file changed since training: its rows are not the
    ones the model learned from).
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"{folder} has no manifest.json: is it a model folder written by `obliviate train`?")
    entry = read_json(manifest_path).get("data")
    if not isinstance(entry, dict) or "kind" not in entry:
        raise ValueError(f"{manifest_path} records no data file (it was not trained with `obliviate train --data`)")
    kind, options = entry["kind"], dict(entry.get("options", {}))
    file = Path(path) if path is not None else Path(entry["path"])
    extra: dict[str, Any] = {}
    if kind == "table":
        extra["encoder"] = load_encoder(folder / ENCODER_FILE)
    elif kind in ("text", "tofu", "muse"):
        extra["tokenizer"] = load_tokenizer(folder)
    if kind == "images":
        options["image_size"] = tuple(options["image_size"])
        options.pop("classes", None)
        if options.get("test_fraction") is None:
            options.pop("test_fraction")
    data = from_file(file, kind=kind, **options, **extra)
    saved = entry.get("fingerprint")
    if saved and data.source.fingerprint != saved:
        raise ValueError(
            f"the data in {file} differs from what the model in {folder} was trained on: fingerprint "
            f"{data.source.fingerprint[:16]}… here, {saved[:16]}… in the manifest"
        )
    return data


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data file or folder {str(path)!r} does not exist")
    return path


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


__all__ = [
    "Source",
    "TableEncoder",
    "detect_kind",
    "fingerprint",
    "from_file",
    "from_run",
    "load_encoder",
    "load_tokenizer",
    "read_cifar_source",
    "read_image_folder",
    "read_muse",
    "read_table",
    "read_text",
    "read_tofu",
    "save_source",
    "split_rows",
]
