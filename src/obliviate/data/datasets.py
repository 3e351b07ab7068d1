"""Built-in offline datasets and user arrays, all as in-memory tensor datasets.

Everything here is loaded from local files or packages: nothing is downloaded at run time.
"""

from __future__ import annotations

import gzip
import hashlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get install -y dataset-fashion-mnist"


class SizedDataset(Protocol):
    """What obliviate reads of a dataset: its length and its rows by index.

    ``torch.utils.data.Dataset`` does not declare ``__len__``; every dataset obliviate handles
    (:class:`ArrayDataset`, ``TextDataset``, ``Subset``, ``ConcatDataset``, ``TensorDataset``) has one.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any, /) -> Any: ...


class ArrayDataset(Dataset):
    """A dataset held as two tensors, ``x`` [N, ...] and integer labels ``y`` [N].

    Training and evaluation index these tensors directly (no per-item collation), which is what
    makes small-model unlearning runs take seconds rather than minutes on a CPU.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)} labels")
        if y.dim() != 1:
            raise ValueError(f"labels must be a 1-D tensor, got shape {tuple(y.shape)}")
        self.x = x
        self.y = y.long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def subset(self, ids: torch.Tensor) -> ArrayDataset:
        return ArrayDataset(self.x[ids], self.y[ids])

    @property
    def targets(self) -> torch.Tensor:
        return self.y

    def fingerprint(self) -> str:
        """Content hash (sha256 of shapes, features and labels), used to key caches and manifests."""
        h = hashlib.sha256()
        h.update(str((tuple(self.x.shape), str(self.x.dtype))).encode())
        h.update(self.x.contiguous().numpy().tobytes())
        h.update(self.y.numpy().tobytes())
        return h.hexdigest()[:16]


_D = TypeVar("_D", bound="Data")


@dataclass(frozen=True)
class Data:
    """A named train/test pair (and an optional validation set) of one classification task."""

    name: str
    train: SizedDataset
    test: SizedDataset
    num_classes: int
    input_shape: tuple[int, ...]
    val: SizedDataset | None = None
    #: tabular sets: the training rows' raw (unstandardised) columns, row i = training example i, for
    #: SQL deletion requests in the units users know (``ForgetSplit.where(data.train_table, ...)``)
    train_table: Any = None
    #: per training row, the subject (person, entity) it is about as an integer code, -1 for none: one
    #: notion for tables, images and text (a subject column's values, the people scenario's persons).
    #: Deleting a person removes their rows; the relearning attack relearns some subjects, measures others
    groups: np.ndarray | None = None
    #: the ``train_table`` column holding each row's subject name (``groups`` codes those names)
    subject: str | None = None
    #: user files: how the data was read (:class:`obliviate.data.user.Source`), to read it again identically
    source: Any = None

    def subset_train(self: _D, ids: torch.Tensor) -> _D:
        """The same data with only training rows ``ids`` (and their table rows and subjects)."""
        table = None if self.train_table is None else self.train_table.iloc[ids.numpy()].reset_index(drop=True)
        groups = None if self.groups is None else self.groups[ids.numpy()]
        return replace(self, train=subset(self.train, ids), train_table=table, groups=groups)

    def with_validation(self, fraction: float = 0.5, seed: int = 0) -> Data:
        """Carve a stratified validation set out of the *test* set.

        The training set, and so the original model, stays unchanged; this follows the NeurIPS 2023
        starting kit, which splits the test set 50/50 into test and validation.
        """
        if not 0 < fraction < 1:
            raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
        from sklearn.model_selection import train_test_split

        test = _as_array_dataset(self.test)
        idx = np.arange(len(test))
        test_idx, val_idx = train_test_split(idx, test_size=fraction, random_state=seed, stratify=test.y.numpy())
        return replace(
            self,
            test=test.subset(torch.as_tensor(np.sort(test_idx))),
            val=test.subset(torch.as_tensor(np.sort(val_idx))),
        )


def _as_array_dataset(ds: SizedDataset) -> ArrayDataset:
    if isinstance(ds, ArrayDataset):
        return ds
    raise TypeError(f"expected an ArrayDataset, got {type(ds).__name__}")


def subset(ds: SizedDataset, ids: torch.Tensor) -> SizedDataset:
    """Rows ``ids`` of a dataset: sliced tensors for an :class:`ArrayDataset`, else a ``Subset``."""
    if hasattr(ds, "subset"):  # ArrayDataset, lm.TextDataset: sliced tensors
        return ds.subset(ids)
    # ``Subset`` only indexes ``ds``: any sized, indexable dataset will do, not just a torch ``Dataset``
    return torch.utils.data.Subset(cast(Dataset, ds), torch.as_tensor(ids).tolist())


def labels_of(ds: SizedDataset) -> torch.Tensor:
    """Integer labels of any classification dataset (``.y``, ``.targets`` or by iterating)."""
    if isinstance(ds, ArrayDataset):
        return ds.y
    if isinstance(ds, torch.utils.data.Subset):
        return labels_of(cast(SizedDataset, ds.dataset))[torch.as_tensor(ds.indices)]
    targets = getattr(ds, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets).long()
    return torch.as_tensor([int(ds[i][1]) for i in range(len(ds))])


def from_arrays(x_train, y_train, x_test, y_test, *, name: str = "arrays", num_classes: int | None = None) -> Data:
    """Wrap user arrays (numpy or torch) as a :class:`Data`; labels must be integers 0..C-1."""
    xt, yt = _tensor(x_train, torch.float32), _tensor(y_train, torch.long)
    xs, ys = _tensor(x_test, torch.float32), _tensor(y_test, torch.long)
    if xt.shape[1:] != xs.shape[1:]:
        raise ValueError(f"train features have shape {tuple(xt.shape[1:])} but test features {tuple(xs.shape[1:])}")
    for part, y in (("y_train", yt), ("y_test", ys)):
        if len(y) and int(y.min()) < 0:
            raise ValueError(f"{part} has negative labels; expected integers 0..C-1")
    seen = int(max(yt.max(), ys.max())) + 1
    num_classes = num_classes or seen
    if seen > num_classes:
        raise ValueError(f"labels go up to {seen - 1} but num_classes={num_classes}")
    return Data(
        name=name,
        train=ArrayDataset(xt, yt),
        test=ArrayDataset(xs, ys),
        num_classes=num_classes,
        input_shape=tuple(xt.shape[1:]),
    )


def from_npz(path: str | Path, name: str | None = None) -> Data:
    """Load ``x_train, y_train, x_test, y_test`` from an ``.npz`` file (pickles are refused)."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}")
        return from_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"], name=name or Path(path).stem)


def _tensor(a, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a)).to(dtype)


def _sklearn(loader: Callable, name: str, image_shape: tuple[int, ...] | None) -> Data:
    """A fixed stratified 75/25 split (random_state=0) of a scikit-learn bundled set."""
    from sklearn.model_selection import train_test_split

    x, y = loader(return_X_y=True)
    x = x.astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    if image_shape is None:  # tabular: standardise with training statistics
        mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-8
        x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    else:  # digits: pixel values 0..16 -> [0, 1] images
        x_tr = x_tr.reshape(-1, *image_shape) / 16.0
        x_te = x_te.reshape(-1, *image_shape) / 16.0
    return from_arrays(x_tr, y_tr, x_te, y_te, name=name)


def _randhie() -> Data:
    """RAND Health Insurance Experiment (statsmodels, public domain): 20,190 person-years, 9 columns.

    Target: outpatient doctor visits in the year, as 3 classes (0 = none, 1 = 1-3, 2 = 4 or more).
    Features standardised with training statistics; ``train_table`` keeps the raw columns (lncoins,
    idp, lpi, fmde, physlm, disea, hlthg, hlthf, hlthp) for predicate deletions.
    """
    try:
        from statsmodels.datasets import randhie
    except ImportError:
        raise ValueError("the randhie dataset ships with statsmodels: pip install statsmodels") from None
    from sklearn.model_selection import train_test_split

    df = randhie.load_pandas().data
    y = np.digitize(df["mdvis"].to_numpy(), [1, 4])
    x = df.drop(columns="mdvis")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mu, sd = x_tr.mean(axis=0), x_tr.std(axis=0) + 1e-8
    data = from_arrays(
        ((x_tr - mu) / sd).to_numpy(np.float32), y_tr, ((x_te - mu) / sd).to_numpy(np.float32), y_te, name="randhie"
    )
    return replace(data, train_table=x_tr.reset_index(drop=True))


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format): big-endian header, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _fashion_mnist(root: str | Path | None = None, size: int = 28) -> Data:
    """Fashion-MNIST from the Debian package's idx.gz files; ``size`` < 28 average-pools the images
    to ``size``×``size`` (14: the diffusion grid's, a quarter of the pixels to denoise)."""
    if not (isinstance(size, int) and 1 <= size <= 28 and 28 % size == 0):
        raise ValueError(f"size must divide 28 (28, 14, 7, 4, 2, 1), got {size!r}")
    root = Path(root) if root else FASHION_MNIST_DIR
    files = {k: root / f"{k}-{kind}-idx{d}-ubyte.gz" for k, kind, d in [("train", "images", 3), ("t10k", "images", 3)]}
    labels = {k: root / f"{k}-labels-idx1-ubyte.gz" for k in ("train", "t10k")}
    missing = [str(p) for p in [*files.values(), *labels.values()] if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files not found ({missing[0]}). Install the Debian package: "
            f"{FASHION_MNIST_INSTALL}, or pass root= pointing at the idx.gz files."
        )
    x_tr = _read_idx(files["train"]).astype(np.float32)[:, None] / 255.0
    x_te = _read_idx(files["t10k"]).astype(np.float32)[:, None] / 255.0
    y_tr, y_te = _read_idx(labels["train"]), _read_idx(labels["t10k"])
    if size < 28:
        k = 28 // size
        x_tr, x_te = (x.reshape(len(x), 1, size, k, size, k).mean((3, 5)) for x in (x_tr, x_te))
    return from_arrays(x_tr, y_tr, x_te, y_te, name="fashion-mnist", num_classes=10)


def read_cifar(root: str | Path, *, label: str = "fine") -> Data:
    """CIFAR-10 or CIFAR-100 from the *binary* version in a local folder (never the Python pickles).

    CIFAR-10 (``cifar-10-batches-bin``): ``data_batch_1..5.bin`` and ``test_batch.bin``, records of
    1 label byte + 3,072 pixel bytes (1,024 red, then green, then blue, row-major 32x32). CIFAR-100
    (``cifar-100-binary``): ``train.bin`` and ``test.bin``, records of a coarse and a fine label byte +
    3,072 pixel bytes; ``label`` picks ``fine`` (100 classes) or ``coarse`` (20 superclasses).
    The official test batch is the test set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of CIFAR binary batches")
    batches = sorted(root.glob("data_batch_*.bin"))
    if batches:
        if not (root / "test_batch.bin").is_file():
            raise ValueError(f"{root} has CIFAR-10 training batches but no test_batch.bin")
        x_tr, y_tr = _cifar_records(batches, 1, 0)
        x_te, y_te = _cifar_records([root / "test_batch.bin"], 1, 0)
        name, classes = "cifar10", 10
    elif (root / "train.bin").is_file() and (root / "test.bin").is_file():
        if label not in ("fine", "coarse"):
            raise ValueError(f"label must be 'fine' or 'coarse' for CIFAR-100, got {label!r}")
        which = 1 if label == "fine" else 0
        x_tr, y_tr = _cifar_records([root / "train.bin"], 2, which)
        x_te, y_te = _cifar_records([root / "test.bin"], 2, which)
        name, classes = "cifar100", 100 if label == "fine" else 20
    else:
        raise ValueError(
            f"{root} holds no CIFAR binary batches: expected data_batch_1.bin .. test_batch.bin (CIFAR-10, "
            "'binary version') or train.bin + test.bin (CIFAR-100). The Python-pickle version is not read"
        )
    return from_arrays(x_tr, y_tr, x_te, y_te, name=name, num_classes=classes)


def _cifar_records(files: Sequence[Path], label_bytes: int, which: int) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + 3072
    raws = []
    for f in files:
        raw = np.fromfile(f, dtype=np.uint8)
        if len(raw) == 0 or len(raw) % record:
            raise ValueError(f"{f} is {len(raw)} bytes, not a whole number of {record}-byte CIFAR records")
        raws.append(raw.reshape(-1, record))
    rows = np.concatenate(raws)
    y = rows[:, which].astype(np.int64)
    x = rows[:, label_bytes:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return x, y


_LOADERS: dict[str, Callable[..., Data]] = {}
#: datasets that application packages provide, as "module:function" entry points resolved on first
#: use (as Python package entry points are): naming the loader does not make this layer import it
ENTRY_POINTS: dict[str, str] = {"people": "obliviate.lm.scenario:load_people"}


def _cifar(name: str) -> Callable[..., Data]:
    def load_cifar(root: str | Path | None = None, label: str = "fine") -> Data:
        """CIFAR-10/100 from a local folder of the binary batches (no copy ships offline)."""
        if root is None:
            raise FileNotFoundError(
                f"{name} is not shipped with obliviate: download the binary version (cifar-10-binary.tar.gz or "
                f"cifar-100-binary.tar.gz), unpack it, and pass root= pointing at the folder of .bin files"
            )
        data = read_cifar(root, label=label)
        if data.name != name:
            raise ValueError(f"{root} holds {data.name}, not {name}")
        return data

    return load_cifar


def _builtins() -> dict[str, Callable[..., Data]]:
    from sklearn import datasets as skd

    return {
        "cifar10": _cifar("cifar10"),
        "cifar100": _cifar("cifar100"),
        "digits": lambda: _sklearn(skd.load_digits, "digits", (1, 8, 8)),
        "breast-cancer": lambda: _sklearn(skd.load_breast_cancer, "breast-cancer", None),
        "wine": lambda: _sklearn(skd.load_wine, "wine", None),
        "fashion-mnist": _fashion_mnist,
        "randhie": _randhie,
    }


def register(name: str, loader: Callable[..., Data]) -> None:
    """Make ``load(name, **kwargs)`` call ``loader(**kwargs)``. Application packages register their
    scenarios here (``obliviate.lm`` registers ``"people"`` on import), so this layer never imports them."""
    if name in _builtins():
        raise ValueError(f"{name!r} is a built-in dataset")
    _LOADERS[name] = loader


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted({*_builtins(), *_LOADERS, *ENTRY_POINTS})


def load(name: str, *, val_fraction: float = 0.0, seed: int = 0, **kwargs) -> Data:
    """Load a built-in or registered dataset by name (``"people"``: the LM scenario, see
    :func:`obliviate.lm.scenario.load_people`), or an ``.npz`` file by path.

    ``val_fraction`` > 0 carves a validation set out of the test set (see :meth:`Data.with_validation`).
    ``seed`` seeds that split, and the dataset's own generation where its loader takes a seed (the
    people scenario: which people, secrets and text), so ``load("people", seed=1)`` is another scenario.
    """
    if name.endswith(".npz"):
        data = from_npz(name)
    else:
        if name not in available():
            raise ValueError(f"unknown dataset {name!r}; available: {available()} or a path to .npz")
        if name in ENTRY_POINTS and name not in _LOADERS:
            import importlib

            module, _, attr = ENTRY_POINTS[name].partition(":")
            _LOADERS[name] = getattr(importlib.import_module(module), attr)
        loader = {**_builtins(), **_LOADERS}[name]
        params = inspect.signature(loader).parameters.values()
        if any(q.name == "seed" or q.kind is q.VAR_KEYWORD for q in params):
            kwargs = {"seed": seed, **kwargs}
        data = loader(**kwargs)
    return data.with_validation(val_fraction, seed) if val_fraction else data
