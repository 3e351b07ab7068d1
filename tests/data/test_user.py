"""A user's own files in: tables, image folders, CIFAR binary batches, text rows, TOFU and MUSE dumps,
and the saved-run round trip (every file is written here, in tmp_path)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import obliviate as ob
from obliviate.data import user
from obliviate.data.splits import table_of


def customers(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "customer_id": [f"u-{i % 30}" for i in range(n)],
            "age": rng.integers(18, 80, n),
            "plan": rng.choice(["basic", "pro", "max"], n),
            "spend": rng.normal(50, 10, n).round(2),
        }
    )
    df["churned"] = np.where(df.age > 50, "yes", "no")
    return df


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "customers.csv"
    customers().to_csv(path, index=False)
    return path


# ---- tables --------------------------------------------------------------------------------------


def test_table_rows_features_labels_and_subjects(table_csv):
    df = pd.read_csv(table_csv)
    data = ob.datasets.from_file(table_csv, target="churned", subject="customer_id")
    assert data.num_classes == 2 and len(data.train) + len(data.test) == len(df)
    assert data.input_shape == (5,)  # age, spend standardised; plan one-hot over 3 values
    assert data.source.encoder.feature_names == ["age", "spend", "plan=basic", "plan=max", "plan=pro"]
    # the raw table keeps the user's values, row i = training example i, in the file's row order
    rows = data.source.train_rows
    assert list(rows) == sorted(rows)
    pd.testing.assert_frame_equal(data.train_table, df.iloc[rows].reset_index(drop=True))
    # labels: classes in sorted order ("no" = 0, "yes" = 1)
    assert data.train.y.tolist() == (df.churned.iloc[rows] == "yes").astype(int).tolist()
    # features: standardised with the training rows' statistics only
    age = data.train.x[:, 0].numpy()
    train_age = df.age.iloc[rows].to_numpy(float)
    np.testing.assert_allclose(age, (train_age - train_age.mean()) / train_age.std(), rtol=1e-5, atol=1e-5)
    assert data.train.x[:, 2:].sum(1).eq(1).all()  # exactly one plan per row
    # subjects: held out whole, and codes name the same people as the table column
    test_ids = set(df.customer_id.drop(index=rows))
    assert not test_ids & set(data.train_table.customer_id)
    assert data.subject == "customer_id" and len(data.groups) == len(data.train)
    names = sorted(set(df.customer_id))
    assert [names[g] for g in data.groups] == data.train_table.customer_id.tolist()


def test_table_without_subject_is_stratified_and_seeded(table_csv):
    a = ob.datasets.from_file(table_csv, target="churned", seed=1)
    b = ob.datasets.from_file(table_csv, target="churned", seed=1)
    c = ob.datasets.from_file(table_csv, target="churned", seed=2)
    assert a.subject is None and a.groups is None
    assert a.source.fingerprint == b.source.fingerprint != c.source.fingerprint
    share = lambda d: float(d.y.float().mean())  # noqa: E731
    assert abs(share(a.train) - share(a.test)) < 0.05


def test_parquet_reads_like_csv(tmp_path, table_csv):
    pq = tmp_path / "customers.parquet"
    pd.read_csv(table_csv).to_parquet(pq)
    a = ob.datasets.from_file(table_csv, target="churned", subject="customer_id")
    b = ob.datasets.from_file(pq, target="churned", subject="customer_id")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert a.source.fingerprint == b.source.fingerprint


def test_encoder_json_round_trip_gives_identical_features(tmp_path, table_csv):
    df = pd.read_csv(table_csv)
    enc = ob.datasets.from_file(table_csv, target="churned", subject="customer_id").source.encoder
    enc.save(tmp_path / "encoder.json")
    text = (tmp_path / "encoder.json").read_text()
    assert json.loads(text)["format"] == "obliviate.table-encoder/1"
    back = ob.datasets.load_encoder(tmp_path / "encoder.json")
    assert back == enc
    assert np.array_equal(back.transform(df), enc.transform(df))
    # the rebuilt transformer really holds the saved statistics: other means give other features
    moved = user.TableEncoder.from_dict({**enc.to_dict(), "numeric": {**enc.to_dict()["numeric"], "mean": [0.0, 0.0]}})
    assert not np.array_equal(moved.transform(df), enc.transform(df))
    # a category never seen in training encodes as all zeros, not as an error
    novel = df.head(2).assign(plan="enterprise")
    assert enc.transform(novel)[:, 2:].sum() == 0


def test_table_features_and_ignore(table_csv):
    data = ob.datasets.from_file(table_csv, target="churned", ignore=["plan", "customer_id"])
    assert data.source.options["features"] == ["age", "spend"] and data.input_shape == (2,)
    only = ob.datasets.from_file(table_csv, target="churned", features=["age"])
    assert only.input_shape == (1,)


def test_user_columns_named_id_or_label_keep_their_meaning(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"id": np.arange(40) + 1000, "x": np.arange(40.0), "label": ["a", "b"] * 20}).to_csv(path, index=False)
    data = ob.datasets.from_file(path, target="label", ignore=["id"])
    table = table_of(data.train, data.train_table)
    assert list(table.columns) == ["id", "x", "label"]
    split = ob.ForgetSplit.where(table, "id = 1003 OR label = 'zzz'")
    assert data.train_table.id.iloc[split.forget_ids.numpy()].tolist() == [1003]


@pytest.mark.parametrize(
    "frame, kwargs, message",
    [
        (customers(), {"target": "churn"}, "target column 'churn' is not in"),
        (customers(), {"target": "churned", "subject": "cust"}, "subject column 'cust' is not in"),
        (customers().assign(churned=np.linspace(0, 1, 120)), {"target": "churned"}, "fractional"),
        (customers().assign(churned=np.arange(120)), {"target": "churned"}, "120 distinct values"),
        (customers().assign(churned="yes"), {"target": "churned"}, "single value"),
        (customers().head(0), {"target": "churned"}, "has no rows"),
        (customers().assign(age=[np.nan] + [1.0] * 119), {"target": "churned"}, "'age' has 1 missing"),
        (customers().assign(churned=[None] + ["no"] * 119), {"target": "churned"}, "1 missing values"),
        (customers(), {"target": "churned", "ignore": []}, "looks like an identifier"),
        (customers(), {"target": "churned", "image_size": 8}, "do not apply"),
        (customers(), {"target": "churned", "subject": "churned"}, "same column"),
    ],
)
def test_bad_tables_are_refused_before_work(tmp_path, frame, kwargs, message):
    if "looks like an identifier" in message:
        frame = frame.assign(email=[f"p{i}@x.org" for i in range(len(frame))])
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        ob.datasets.from_file(path, **kwargs)


def test_bad_paths_and_formats(tmp_path, table_csv):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ob.datasets.from_file(tmp_path / "missing.csv", target="y")
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ValueError, match="unknown format '.xlsx'"):
        ob.datasets.from_file(tmp_path / "data.xlsx", target="y")
    with pytest.raises(ValueError, match="give target="):
        ob.datasets.from_file(table_csv)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell what the folder"):
        ob.datasets.from_file(tmp_path / "empty")
    with pytest.raises(ValueError, match="test_fraction"):
        ob.datasets.from_file(table_csv, target="churned", test_fraction=1.0)


# ---- images --------------------------------------------------------------------------------------


def write_images(root, classes=("cat", "dog"), n=6, size=(10, 12), mode="L"):
    from PIL import Image

    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            value = 40 + 150 * k  # class k's images are uniformly this bright
            shape = (size[0], size[1]) if mode == "L" else (size[0], size[1], 3)
            Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(root / name / f"{i}.png")


def test_image_folder(tmp_path):
    write_images(tmp_path / "pets")
    data = ob.datasets.from_file(tmp_path / "pets")
    assert data.num_classes == 2 and data.input_shape == (1, 10, 12)
    assert len(data.train) + len(data.test) == 12
    assert data.source.kind == "images" and data.train_table.columns.tolist() == ["path", "class"]
    for x, y, cls in zip(data.train.x, data.train.y, data.train_table["class"]):
        assert cls == ["cat", "dog"][int(y)]
        assert torch.allclose(x, torch.full_like(x, (40 + 150 * int(y)) / 255))
    rgb = ob.datasets.from_file(tmp_path / "pets", image_size=8, grayscale=False)
    assert rgb.input_shape == (3, 8, 8)
    assert ob.Recipe.default_for(data).architecture == "cnn"


def test_image_folder_keeps_a_given_train_test_split(tmp_path):
    write_images(tmp_path / "set" / "train", n=4, mode="RGB")
    write_images(tmp_path / "set" / "test", n=2, mode="RGB")
    data = ob.datasets.from_file(tmp_path / "set")
    assert (len(data.train), len(data.test)) == (8, 4) and data.input_shape == (3, 10, 12)
    assert all(p.startswith("train/") for p in data.train_table.path)


def test_image_folder_errors(tmp_path):
    write_images(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match="single class folder"):
        ob.datasets.from_file(tmp_path / "one")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "b").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.txt").write_text("no image")
    with pytest.raises(ValueError, match="holds no images"):
        ob.datasets.from_file(tmp_path / "bad")
    write_images(tmp_path / "pets")
    with pytest.raises(ValueError, match="no subject column"):
        ob.datasets.from_file(tmp_path / "pets", subject="owner")


def cifar_records(labels, label_bytes=1, fine=None):
    """CIFAR binary records whose pixel planes are R = label, G = 100 + label, B = 200 + i (row number)."""
    rows = []
    for i, y in enumerate(labels):
        head = [y] if label_bytes == 1 else [y, fine[i]]
        planes = np.concatenate([np.full(1024, y), np.full(1024, 100 + y), np.full(1024, 200 + i)])
        rows.append(np.concatenate([head, planes]))
    return np.asarray(rows, dtype=np.uint8)


def test_cifar10_binary_batches(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    cifar_records([3, 1, 4]).tofile(root / "data_batch_1.bin")
    cifar_records([1, 5]).tofile(root / "data_batch_2.bin")
    cifar_records([9, 2]).tofile(root / "test_batch.bin")
    for data in (ob.datasets.from_file(root), ob.datasets.load("cifar10", root=root)):
        assert data.name == "cifar10" and data.num_classes == 10 and data.input_shape == (3, 32, 32)
        assert data.train.y.tolist() == [3, 1, 4, 1, 5] and data.test.y.tolist() == [9, 2]
        x = data.train.x[2]  # third record: channel planes in R, G, B order
        assert torch.allclose(x[0], torch.full((32, 32), 4 / 255)) and torch.allclose(
            x[1], torch.full((32, 32), 104 / 255)
        )
        assert torch.allclose(x[2], torch.full((32, 32), 202 / 255))
    assert ob.Recipe.default_for(data).architecture == "resnet18"


def test_cifar100_fine_and_coarse(tmp_path):
    cifar_records([1, 2, 3], 2, fine=[11, 22, 33]).tofile(tmp_path / "train.bin")
    cifar_records([4], 2, fine=[44]).tofile(tmp_path / "test.bin")
    fine = ob.datasets.from_file(tmp_path)
    assert fine.name == "cifar100" and fine.num_classes == 100 and fine.train.y.tolist() == [11, 22, 33]
    coarse = ob.datasets.from_file(tmp_path, label="coarse")
    assert coarse.num_classes == 20 and coarse.train.y.tolist() == [1, 2, 3] and coarse.test.y.tolist() == [4]


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass root="):
        ob.datasets.load("cifar10")
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 3073)
    with pytest.raises(ValueError, match="not a whole number of 3073-byte"):
        ob.datasets.from_file(tmp_path)
    with pytest.raises(ValueError, match="not cifar100"):
        cifar_records([1]).tofile(tmp_path / "data_batch_1.bin")
        ob.datasets.load("cifar100", root=tmp_path)


# ---- text ----------------------------------------------------------------------------------------

LINES = [f"Person {i} lives in town {i % 7} and likes the number {3 * i}." for i in range(40)]


def test_text_lines(tmp_path):
    (tmp_path / "notes.txt").write_text("\n".join(LINES[:20]) + "\n\n" + "\n".join(LINES[20:]) + "\n")
    data = ob.datasets.from_file(tmp_path / "notes.txt")
    assert isinstance(data, ob.datasets.TextData) and len(data.train) + len(data.test) == 40
    assert data.tokenizer is not None and data.num_classes == len(data.tokenizer)
    # each row is one line, whole, followed by end-of-sequence; nothing is cut at the default length
    for row, text in zip(data.train.ids, data.train_table.text):
        assert data.tokenizer.decode(row[row != data.tokenizer.eos_token_id]) == text
    assert (data.train.ids[:, -1] == data.tokenizer.eos_token_id).all()
    assert ob.Recipe.default_for(data).architecture == "tiny-gpt2"
    with pytest.raises(ValueError, match="longer than the context"):
        ob.datasets.from_file(tmp_path / "notes.txt", length=5)


def test_jsonl_with_subject_holds_out_whole_subjects(tmp_path):
    with open(tmp_path / "rows.jsonl", "w") as f:
        for i, line in enumerate(LINES):
            f.write(json.dumps({"text": line, "who": f"p{i % 8}"}) + "\n")
    data = ob.datasets.from_file(tmp_path / "rows.jsonl", subject="who")
    assert data.subject == "who" and data.train_table.columns.tolist() == ["text", "who"]
    train_people = set(data.train_table.who)
    assert len(train_people) == 6  # 8 people, 2 held out
    assert [f"p{g}" for g in data.groups] == data.train_table.who.tolist()
    assert data.subset_train(torch.tensor([0, 1])).groups.tolist() == data.groups[:2].tolist()
    with pytest.raises(ValueError, match="subject column 'owner' is not in"):
        ob.datasets.from_file(tmp_path / "rows.jsonl", subject="owner")


def test_parquet_text_column(tmp_path):
    pd.DataFrame({"body": LINES, "n": range(40)}).to_parquet(tmp_path / "t.parquet")
    data = ob.datasets.from_file(tmp_path / "t.parquet", text_column="body")
    assert isinstance(data, ob.datasets.TextData) and set(data.train_table.body) <= set(LINES)
    with pytest.raises(ValueError, match="text_column="):
        ob.datasets.from_file(tmp_path / "t.parquet")


def write_tofu(root, authors=5):
    root.mkdir()
    with open(root / "full.json", "w") as f:  # JSON lines, as locuslab/TOFU's files are
        for i in range(authors * 20):
            a = i // 20
            f.write(json.dumps({"question": f"Where was author {a} born ({i % 20})?", "answer": f"In city {a}-{i}."}))
            f.write("\n")
    with open(root / "forget01.json", "w") as f:
        f.write(json.dumps({"question": "q", "answer": "a"}) + "\n")


def test_tofu_dump(tmp_path):
    write_tofu(tmp_path / "TOFU")
    assert user.detect_kind(tmp_path / "TOFU") == "tofu"
    data = ob.datasets.from_file(tmp_path / "TOFU")
    assert data.subject == "author" and len(data.train) == 80 and len(data.test) == 20  # 1 of 5 authors held out
    authors = data.train_table.author
    assert authors.nunique() == 4 and all(
        q.startswith(f"Where was {a.replace('-', ' ')} ") for q, a in zip(data.train_table.question, authors)
    )
    # scored on the answer only: the question's tokens are -100, the answer's are its tokens
    tok, row, t = data.tokenizer, 0, data.train_table
    scored = data.train.labels[row][data.train.labels[row] != -100]
    assert tok.decode(scored) == " " + t.answer[row] + tok.eos_token
    whole = data.train.ids[row][data.train.mask[row] == 1]
    assert tok.decode(whole) == f"Question: {t.question[row]} Answer: {t.answer[row]}{tok.eos_token}"


def test_muse_dump(tmp_path):
    raw = tmp_path / "MUSE-News" / "raw"
    raw.mkdir(parents=True)
    (raw / "forget.json").write_text(json.dumps([" ".join(LINES[:15]), " ".join(LINES[15:20])]))
    (raw / "retain1.txt").write_text(" ".join(LINES[20:35]))
    pd.DataFrame({"text": [" ".join(LINES[35:])]}).to_parquet(raw / "holdout.parquet")
    data = ob.datasets.from_file(tmp_path / "MUSE-News", length=32)
    assert data.input_shape == (32,)
    assert set(data.train_table.part) == {"forget", "retain1"} and data.train_table.doc.nunique() == 3
    forget = data.train_table.part == "forget"
    joined = "".join(data.train_table.text[forget & (data.train_table.doc == "forget/0")])
    assert joined == " ".join(LINES[:15])  # the chunks put back together are the document
    assert len(data.test) >= 1 and data.subject is None
    by_doc = ob.datasets.from_file(tmp_path / "MUSE-News", length=32, subject="doc")
    assert len(set(by_doc.groups)) == 3


# ---- saved runs ----------------------------------------------------------------------------------


def test_from_run_reads_the_same_rows_and_refuses_changed_data(tmp_path, table_csv):
    data = ob.datasets.from_file(table_csv, target="churned", subject="customer_id", seed=3)
    run = tmp_path / "run"
    entry = ob.datasets.save_source(data, run)
    (run / "manifest.json").write_text(json.dumps({"data": entry}))
    assert (run / "encoder.json").is_file() and entry["fingerprint"] == data.source.fingerprint
    again = ob.datasets.from_run(run)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.test.y, data.test.y)
    assert again.train_table.equals(data.train_table) and again.groups.tolist() == data.groups.tolist()
    # a copy elsewhere reads the same; a changed row is refused
    df = pd.read_csv(table_csv)
    moved = tmp_path / "copy.csv"
    df.to_csv(moved, index=False)
    assert ob.datasets.from_run(run, moved).source.fingerprint == data.source.fingerprint
    df.loc[int(data.source.train_rows[0]), "spend"] += 1
    df.to_csv(moved, index=False)
    with pytest.raises(ValueError, match="differs from what the model"):
        ob.datasets.from_run(run, moved)
    with pytest.raises(ValueError, match="no manifest.json"):
        ob.datasets.from_run(tmp_path)


def test_from_run_text_uses_the_saved_tokenizer(tmp_path):
    (tmp_path / "notes.txt").write_text("\n".join(LINES))
    data = ob.datasets.from_file(tmp_path / "notes.txt", vocab_size=300)
    run = tmp_path / "run"
    (run).mkdir()
    (run / "manifest.json").write_text(json.dumps({"data": ob.datasets.save_source(data, run)}))
    assert (run / "tokenizer" / "tokenizer.json").is_file()
    again = ob.datasets.from_run(run)
    assert torch.equal(again.train.ids, data.train.ids) and len(again.tokenizer) == len(data.tokenizer)


def test_torchvision_architecture_by_name():
    pytest.importorskip("torchvision")
    model = ob.models.build("torchvision:resnet18", (3, 32, 32), 7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert model.obliviate_spec["architecture"] == "torchvision:resnet18"


def test_torchvision_missing_or_unknown_is_a_clear_error():
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install torchvision"):
            ob.models.build("torchvision:resnet18", (3, 32, 32), 7)
    else:
        with pytest.raises(ValueError, match="no classification model"):
            ob.models.build("torchvision:nope", (3, 32, 32), 7)
