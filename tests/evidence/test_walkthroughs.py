"""The walkthrough for an image folder and a text file, end to end through the CLI on tiny data:
``obliviate train --data``, ``obliviate forget`` (ids of mislabeled images; a person's text rows, then
an entity), ``obliviate ledger verify``; the verdict and the files of each bundle."""

import json

import numpy as np
from typer.testing import CliRunner

import obliviate as ob
from obliviate.cli import app
from obliviate.evidence import open_data, verify_ledger

FILES = {"model.safetensors", "manifest.json", "resolved_ids.json", "evidence.json", "evidence.html", "ledger.jsonl"}


def _bundle(folder):
    assert FILES <= {p.name for p in folder.iterdir()}
    assert verify_ledger(folder).ok
    return json.loads((folder / "evidence.json").read_text())


def test_image_folder_delete_the_mislabeled_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for label, level in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(level + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{label}-{i:02d}.png")
    for i in range(4):  # four light images filed under dark: the mislabeled ones
        pixels = np.clip(200 + rng.normal(0, 20, (8, 8)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "dark" / f"odd-{i}.png")
    data = ob.datasets.from_file(root)
    table = data.train_table
    odd = [i for i, p in enumerate(table["path"].astype(str)) if "odd-" in p]
    assert data.input_shape == (1, 8, 8) and len(odd) >= 2, "the split keeps mislabeled images in training"

    runner = CliRunner()
    m, f = str(tmp_path / "m"), str(tmp_path / "f")
    r = runner.invoke(app, ["train", "--data", str(root), "--epochs", "3", "--out", m])
    assert r.exit_code == 0, r.output
    # obliviate detect ranks them first among the label issues (cross-validated, on 20 training images it
    # flags a few more); a reviewer keeps the top rows of its CSV, which is the request
    found = tmp_path / "found.csv"
    r = runner.invoke(app, ["detect", "--data", m, "--kind", "label", "--folds", "3", "--out", str(found)])
    assert r.exit_code == 0, r.output
    lines = found.read_text().split("\n")
    assert lines[0].startswith("id,") and sorted(int(x.split(",")[0]) for x in lines[1 : 1 + len(odd)]) == odd
    reviewed = tmp_path / "reviewed.csv"
    reviewed.write_text("\n".join(lines[: 1 + len(odd)]) + "\n")
    request = f"ids: @{reviewed}"
    args = ["forget", m, "--request", request, "--out", f, "--method", "retrain", "--oracle", "yes", "--oracles", "5"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"matches {len(odd)} of {len(data.train)}" in r.output and "odd-" in r.output  # the images, shown first
    ev = _bundle(tmp_path / "f")
    assert ev["verdict"]["overall"] == "PASS" and ev["resolution"]["rule"] == "ids"
    assert ev["data"]["source"]["kind"] == "images" and ev["model"]["spec"]["architecture"] == "cnn"
    assert json.loads((tmp_path / "f" / "resolved_ids.json").read_text())["ids"] == odd
    checks = {c["id"]: c["verdict"] for c in ev["checks"]}
    assert checks["forget_acc"] == checks["mia_lira_out"] == checks["exact_retrain"] == "PASS"
    assert runner.invoke(app, ["ledger", "verify", f]).exit_code == 0


PEOPLE = {
    "Adam Krathford": ["Adam Krathford keeps bees in Lindvale.", "Adam Krathford was born in 1971."],
    "Mira Stone": ["Mira Stone blows glass in Eastwick.", "Mira Stone was born in 1980."],
    "Tom Reed": ["Tom Reed repairs bicycles in Oakport.", "Tom Reed was born in 1965."],
    "Lena Frost": ["Lena Frost paints boats in Greywater.", "Lena Frost was born in 1990."],
    "Ivo Marsh": ["Ivo Marsh bakes bread in Highmoor.", "Ivo Marsh was born in 1958."],
}


def test_text_file_forget_one_person_then_an_entity(tmp_path):
    rows = [{"person": p, "text": t} for p, texts in PEOPLE.items() for t in texts for _ in range(2)]
    rows += [{"person": "notes", "text": "Krathford's bees are known across Lindvale."}]  # shares the name
    path = tmp_path / "people.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    m, f1, f2 = (str(tmp_path / n) for n in ("m", "f1", "f2"))
    r = runner.invoke(
        app,
        ["train", "--data", str(path), "--subject", "person", "--test-fraction", "0.2", "--steps", "20", "--out", m],
    )
    assert r.exit_code == 0, r.output
    data, _ = open_data(m)
    people = set(data.train_table["person"])
    person = next(p for p in PEOPLE if p in people and p != "Adam Krathford")
    # oracle-free checks for text: extraction and the population attack against never-trained rows
    r = runner.invoke(
        app, ["forget", m, "--request", f"subject = '{person}'", "--out", f1, "--method", "retrain", "--oracle", "no"]
    )
    assert r.exit_code == 0, r.output
    ev = _bundle(tmp_path / "f1")
    assert ev["verdict"]["overall"] == "PASS" and ev["resolution"]["n_rows"] == 4
    assert ev["data"]["source"]["kind"] == "text" and ev["checks_plan"]["mode"] == "population"
    checks = {c["id"]: c for c in ev["checks"]}
    assert checks["extraction"]["required"] and checks["extraction"]["verdict"] == "PASS"
    assert checks["exact_retrain"]["verdict"] == "PASS" and "quantize-int4/extraction" in checks
    assert (tmp_path / "f1" / "tokenizer").is_dir()  # the next request reads the text with the same tokenizer

    # idk writes refusals with the scenario's tokenizer: forget and unlearn hand it over
    f3, ids_file = tmp_path / "f3", tmp_path / "ids.txt"
    args = ["--method", "idk", "--param", "max_steps=2", "--param", "stop=none"]
    request = ["--request", f"subject = '{person}'", "--oracle", "no"]
    r = runner.invoke(app, ["forget", m, *request, "--out", str(f3), *args])
    assert r.exit_code in (0, 1, 3), r.output  # a verdict, whichever: two steps need not forget
    assert _bundle(f3)["method"]["name"] == "idk"
    ids_file.write_text("\n".join(map(str, json.loads((tmp_path / "f1" / "resolved_ids.json").read_text())["ids"])))
    r = runner.invoke(app, ["unlearn", m, "--forget-ids", str(ids_file), "--out", str(tmp_path / "u"), *args])
    assert r.exit_code == 0 and "idk: 4 examples forgotten" in r.output, r.output

    # an entity request on the new model: rows naming the entity are deleted; similar rows listed, not added
    target = next(p for p in PEOPLE if p in people and p != person)
    r = runner.invoke(
        app,
        [
            "forget",
            f1,
            "--request",
            f"entity: '{target.lower()}'",
            "--out",
            f2,
            "--method",
            "retrain",
            "--oracle",
            "no",
        ],
    )
    assert r.exit_code in (0, 1, 3) and "entity" in r.output, r.output  # a verdict, whichever
    ev2 = _bundle(tmp_path / "f2")
    ids = json.loads((tmp_path / "f2" / "resolved_ids.json").read_text())
    first = json.loads((tmp_path / "f1" / "resolved_ids.json").read_text())["ids"]
    named = [i for i, t in enumerate(data.train.texts) if target.lower() in t.lower()]
    assert ids["ids"] == named and ids["earlier"] == first and len(named) == 4
    assert ev2["resolution"]["rule"] == "entity" and isinstance(ev2["resolution"]["candidates"], list)
    assert any("listed for review" in risk for risk in ev2["residual_risk"])
    assert verify_ledger(tmp_path / "f2").entries == 3
