"""``obliviate train --data FILE``: a table, an image folder and a text file, saved so that the same rows
can be read again; and bad input refused before any work."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import obliviate as ob
from obliviate.cli import app
from obliviate.train.runs import load_run, score

runner = CliRunner()


def write_customers(path, n=200):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "customer_id": [f"u-{i % 40}" for i in range(n)],
            "age": rng.integers(18, 80, n),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    df["churned"] = (df.age > 50).astype(int)
    df.to_csv(path, index=False)
    return df


def test_train_on_a_table_saves_what_forget_needs(tmp_path):
    data_file, out = tmp_path / "customers.csv", tmp_path / "runs" / "m"
    df = write_customers(data_file)
    args = ["train", "--data", str(data_file), "--target", "churned", "--subject", "customer_id", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "trained mlp on customers (table: 160 training / 40 test rows, subject customer_id)" in res.output
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "manifest.json", "encoder.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["kind"] == "table" and manifest["subject"] == "customer_id"
    assert manifest["data"]["options"]["features"] == ["age", "plan"]
    assert manifest["scores"]["test_acc"] > 0.9  # churn is a threshold on age: an MLP finds it
    model, data, again = load_run(out)
    assert data.source.fingerprint == manifest["data"]["fingerprint"]
    assert score(model, data.test) == pytest.approx(
        {"loss": manifest["scores"]["test_loss"], "acc": manifest["scores"]["test_acc"]}
    )
    # a changed training row is refused; the same command into the same folder is refused too
    df.loc[int(data.source.train_rows[0]), "age"] += 1
    df.to_csv(tmp_path / "changed.csv", index=False)
    with pytest.raises(ValueError, match="differs from what the model"):
        load_run(out, tmp_path / "changed.csv")
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "not empty" in res.output
    # the saved run works with the existing commands: unlearn reads its data from the manifest
    res = runner.invoke(
        app,
        [
            "unlearn",
            str(out),
            "--forget",
            f"predicate:customer_id = '{data.train_table.customer_id[0]}'",
            "--method",
            "finetune",
            "--out",
            str(tmp_path / "u"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "forgotten" in res.output


def test_train_on_an_image_folder_and_a_text_file(tmp_path):
    from PIL import Image

    for k, name in enumerate(["dark", "light"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(np.full((8, 8), 30 + 180 * k + i, dtype=np.uint8)).save(
                tmp_path / "imgs" / name / f"{i}.png"
            )
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "imgs"), "--epochs", "3", "--out", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output
    assert "trained cnn on imgs (images: 12 training / 4 test rows)" in res.output
    model, data, manifest = load_run(tmp_path / "i")
    assert data.input_shape == (1, 8, 8) and manifest["data"]["options"]["image_size"] == [8, 8]

    lines = [f"Person {i} lives in town {i % 5}." for i in range(30)]
    (tmp_path / "notes.txt").write_text("\n".join(lines))
    res = runner.invoke(
        app, ["train", "--data", str(tmp_path / "notes.txt"), "--steps", "5", "--out", str(tmp_path / "t")]
    )
    assert res.exit_code == 0, res.output
    assert "trained tiny-gpt2 on notes (text: 24 training / 6 test rows)" in res.output
    assert (tmp_path / "t" / "tokenizer" / "tokenizer.json").is_file()
    model, data, manifest = load_run(tmp_path / "t")  # the GPT rebuilds from its manifest, no model= needed
    assert isinstance(data, ob.datasets.TextData) and manifest["recipe"]["steps"] == 5
    assert score(model, data.test)["loss"] == pytest.approx(manifest["scores"]["test_loss"])
    assert torch.equal(data.train.ids, ob.datasets.from_run(tmp_path / "t").train.ids)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "{dir}/nope.csv", "--target", "churned"], "does not exist"),
        (["--data", "{dir}/c.csv", "--target", "churn"], "target column 'churn' is not in c.csv"),
        (["--data", "{dir}/c.csv", "--target", "churned", "--subject", "who"], "subject column 'who' is not in"),
        (["--data", "{dir}/c.csv"], "give target="),
        (["--data", "{dir}/c.csv", "--target", "churned", "--steps", "5"], "steps= applies to language-model"),
        (["--target", "churned"], "go with --data FILE"),
    ],
)
def test_bad_input_is_refused_before_work(tmp_path, extra, message):
    write_customers(tmp_path / "c.csv")
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", *[a.format(dir=tmp_path) for a in extra], "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not (out / "model.safetensors").exists()
