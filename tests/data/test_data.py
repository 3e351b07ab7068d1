import gzip
import struct

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.data import ForgetSplit, parse_forget_spec


def test_builtin_datasets_load_offline():
    d = ob.datasets.load("digits")
    assert d.num_classes == 10 and d.input_shape == (1, 8, 8)
    assert len(d.train) + len(d.test) == 1797
    assert 0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1
    b = ob.datasets.load("breast-cancer")
    assert b.num_classes == 2 and b.input_shape == (30,)
    assert abs(float(b.train.x.mean())) < 1e-3  # standardised with training statistics
    w = ob.datasets.load("wine")
    assert w.num_classes == 3 and len(w.train) + len(w.test) == 178


def test_validation_split_is_carved_from_test_stratified(digits):
    full = ob.datasets.load("digits")
    assert len(digits.train) == len(full.train)
    assert len(digits.val) + len(digits.test) == len(full.test)
    counts = torch.bincount(digits.val.y, minlength=10)
    assert counts.min() >= 15  # every class present


def test_unknown_dataset_names_alternatives():
    with pytest.raises(ValueError, match="available"):
        ob.datasets.load("cifar-1000")


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_on_a_fake_tree(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in [("train", 12), ("t10k", 5)]:
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    d = ob.datasets.load("fashion-mnist", root=tmp_path)
    assert d.input_shape == (1, 28, 28) and len(d.train) == 12 and len(d.test) == 5
    assert d.train.y.tolist() == [i % 10 for i in range(12)]
    assert float(d.train.x.max()) <= 1.0


def test_fashion_mnist_missing_names_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        ob.datasets.load("fashion-mnist", root=tmp_path)


def test_from_arrays_and_npz(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 4))
    y = np.arange(20) % 3
    d = ob.datasets.from_arrays(x, y, x[:6], y[:6], name="mine")
    assert d.num_classes == 3 and d.input_shape == (4,)
    with pytest.raises(ValueError, match="shape"):
        ob.datasets.from_arrays(x, y, x[:6, :3], y[:6])
    with pytest.raises(ValueError, match="negative"):
        ob.datasets.from_arrays(x, y - 1, x[:6], y[:6])
    with pytest.raises(ValueError, match="rows"):
        ob.datasets.from_arrays(x, y[:5], x[:6], y[:6])
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    assert len(ob.datasets.load(str(tmp_path / "mine.npz")).train) == 20


def test_random_split_fraction_count_and_seed(digits):
    a = ForgetSplit.random(digits.train, fraction=0.1, seed=0)
    b = ForgetSplit.random(digits.train, fraction=0.1, seed=0)
    c = ForgetSplit.random(digits.train, fraction=0.1, seed=1)
    assert len(a) == round(0.1 * len(digits.train))
    assert a.hash == b.hash and a.hash != c.hash
    assert len(ForgetSplit.random(digits.train, count=7)) == 7
    retain, forget = a.retain_set(digits.train), a.forget_set(digits.train)
    assert len(retain) + len(forget) == len(digits.train)
    assert torch.equal(forget.x, digits.train.x[a.forget_ids])
    assert not set(a.retain_ids.tolist()) & set(a.forget_ids.tolist())


def test_class_split_takes_every_example_of_the_class(digits):
    s = ForgetSplit.by_class(digits.train, 3)
    assert s.classes == (3,)
    assert (s.forget_set(digits.train).y == 3).all()
    assert int((s.retain_set(digits.train).y == 3).sum()) == 0
    with pytest.raises(ValueError, match="no training examples"):
        ForgetSplit.by_class(digits.train, [11])


def test_from_ids_hash_ignores_order_and_kind(digits):
    a = ForgetSplit.from_ids(digits.train, [5, 1, 9])
    b = ForgetSplit.from_ids(digits.train, np.array([9, 5, 1]))
    assert a.hash == b.hash and a.forget_ids.tolist() == [1, 5, 9]


@pytest.mark.parametrize(
    "ids, message",
    [
        ([], "empty"),
        ([0, 5000], "out of range"),
        ([-1, 3], "out of range"),
        ([3, 3, 4], "duplicates"),
        ([0.5, 2.0], "integers"),
    ],
)
def test_bad_forget_ids_fail_clearly(digits, ids, message):
    with pytest.raises(ValueError, match=message):
        ForgetSplit.from_ids(digits.train, ids)


def test_forgetting_the_whole_training_set_is_refused(digits):
    with pytest.raises(ValueError, match="whole training set"):
        ForgetSplit.from_ids(digits.train, range(len(digits.train)))


def test_bad_fractions_fail(digits):
    for bad in (0, -0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            ForgetSplit.random(digits.train, fraction=bad)
    with pytest.raises(ValueError, match="exactly one"):
        ForgetSplit.random(digits.train)


def test_split_save_load_and_tamper_detection(tmp_path, digits):
    s = ForgetSplit.random(digits.train, fraction=0.05, seed=3)
    s.save(tmp_path / "split.json")
    t = ForgetSplit.load(tmp_path / "split.json")
    assert t.hash == s.hash and t.kind == s.kind
    d = s.to_dict()
    d["forget_ids"] = d["forget_ids"][:-1]
    with pytest.raises(ValueError, match="hash mismatch"):
        ForgetSplit.from_dict(d)


def test_split_size_must_match_dataset(digits):
    s = ForgetSplit.from_ids(100, [1, 2])
    with pytest.raises(ValueError, match="made for 100"):
        s.retain_set(digits.train)


def test_forget_specs(digits):
    assert parse_forget_spec("random:0.1", digits.train).kind == "random:0.1"
    assert len(parse_forget_spec("random:20", digits.train)) == 20
    assert parse_forget_spec("class:2,4", digits.train).classes == (2, 4)
    with pytest.raises(ValueError, match="bad forget spec"):
        parse_forget_spec("everything", digits.train)
