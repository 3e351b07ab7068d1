import json

import pandas as pd
from typer.testing import CliRunner

import obliviate as ob
from obliviate.cli import app
from obliviate.evaluation.oracles import floor_seed

runner = CliRunner()


def test_demo_writes_table_results_and_models(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--methods", "neggrad+,scrub", "--epochs", "10", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "oracle (retrain)" in res.output and "noise floor" in res.output
    table = pd.read_csv(out / "results.csv")
    assert table["method"].tolist() == ["oracle (retrain)", "oracle #2 (floor)", "none", "neggrad+", "scrub"]
    methods = table.set_index("method")
    # "none" costs only the copy and checks around it; a loose bound, since CI machines are noisy.
    assert methods.loc["none", "cost_ratio"] < 0.25 and methods.loc["oracle (retrain)", "cost_ratio"] == 1
    assert methods.loc["oracle #2 (floor)", "tow"] > 0.9 and "kl_forget" in table.columns
    meta = json.loads((out / "results.json").read_text())
    assert meta["split_hash"] == ob.ForgetSplit.load(out / "split.json").hash
    loaded = ob.UnlearningResult.load(out / "models" / "scrub")
    assert loaded.method == "scrub" and loaded.split_hash == meta["split_hash"]
    model, manifest = ob.load_model(out / "models" / "oracle")
    assert manifest["role"] == "oracle"


def test_train_then_unlearn_from_an_id_file(tmp_path):
    res = runner.invoke(app, ["train", "--epochs", "5", "--out", str(tmp_path / "orig")])
    assert res.exit_code == 0, res.output
    (tmp_path / "ids.txt").write_text("\n".join(map(str, range(0, 100, 3))))
    res = runner.invoke(
        app,
        [
            "unlearn",
            str(tmp_path / "orig"),
            "--forget-ids",
            str(tmp_path / "ids.txt"),
            "--method",
            "neggrad+",
            "--param",
            "epochs=1",
            "--param",
            "lr=0.01",
            "--out",
            str(tmp_path / "un"),
        ],
    )
    assert res.exit_code == 0, res.output
    result = ob.UnlearningResult.load(tmp_path / "un")
    assert result.params["epochs"] == 1 and result.params["lr"] == 0.01


def test_cli_bad_input_exits_with_a_message(tmp_path):
    runner.invoke(app, ["train", "--epochs", "1", "--out", str(tmp_path / "orig")])
    (tmp_path / "ids.txt").write_text("1\n1\n")
    res = runner.invoke(app, ["unlearn", str(tmp_path / "orig"), "--forget-ids", str(tmp_path / "ids.txt")])
    assert res.exit_code == 2 and "duplicates" in res.output
    res = runner.invoke(app, ["demo", "--methods", "nope"])
    assert res.exit_code == 2 and "unknown method" in res.output
    res = runner.invoke(app, ["unlearn", str(tmp_path / "orig"), "--forget", "random:0.1", "--param", "lr"])
    assert res.exit_code != 0


def test_methods_command_lists_registry():
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0 and "scrub+r" in res.output


def test_evaluate_command_against_saved_oracles(tmp_path):
    out = tmp_path / "demo"
    assert runner.invoke(app, ["demo", "--methods", "neggrad+", "--epochs", "5", "--out", str(out)]).exit_code == 0
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(out / "models" / "neggrad+"),
            "--oracle",
            str(out / "models" / "oracle"),
            "--oracle",
            str(out / "models" / "retrain"),
            "--split",
            str(out / "split.json"),
            "--dataset",
            "digits",
            "--out",
            str(tmp_path / "report.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(tmp_path / "report.csv")
    assert {"forget_acc", "kl_forget", "tow"} <= set(frame["metric"]) and frame["floor"].notna().any()
    res = runner.invoke(app, ["evaluate", str(out / "models" / "none"), "--dataset", "digits"])
    assert res.exit_code == 2 and "exactly one" in res.output


def test_readme_evaluate_command_needs_no_dataset_and_the_floor_oracle_has_the_policy_seed(tmp_path):
    """The README's ``obliviate evaluate runs/demo/models/scrub --oracle runs/demo/models/retrain --split
    runs/demo/split.json``: every model the demo writes names its dataset in its manifest."""
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--methods", "scrub", "--epochs", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "evaluate",
            str(out / "models" / "scrub"),
            "--oracle",
            str(out / "models" / "retrain"),
            "--split",
            str(out / "split.json"),
            "--out",
            str(tmp_path / "r.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "r.csv").set_index("metric").loc["avg_gap", "value"] > 0
    assert {ob.load_model(out / "models" / m)[1]["dataset"] for m in ("original", "oracle", "retrain", "none")} == {
        "digits"
    }
    assert ob.UnlearningResult.load(out / "models" / "retrain").seed == floor_seed(0)


def test_tune_command_writes_trials_and_prints_the_unlearn_call(tmp_path):
    res = runner.invoke(app, ["train", "--epochs", "5", "--out", str(tmp_path / "orig")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "tune",
            str(tmp_path / "orig"),
            "--method",
            "finetune",
            "--forget",
            "class:3",
            "--budget",
            "2",
            "--out",
            str(tmp_path / "tune.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    tuned = ob.TuneResult.load(tmp_path / "tune.json")
    assert len(tuned.trials) == 2 and set(tuned.best_params) == {"lr", "epochs"}
    assert "obliviate unlearn" in res.output and "--param lr=" in res.output
    res = runner.invoke(
        app, ["tune", str(tmp_path / "orig"), "--method", "finetune", "--forget", "class:3", "--objective", "accuracy"]
    )
    assert res.exit_code != 0 and "objective" in res.output


def test_detect_lists_injected_noise_and_writes_a_forget_list(tmp_path):
    out = tmp_path / "found.csv"
    res = runner.invoke(app, ["detect", "--noise", "0.05", "--top", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "injected 67: precision" in text and "label issue" in text
    found = pd.read_csv(out)
    assert found.columns[0] == "id" and set(found.kind) <= {"label issue", "outlier"}
    digits = ob.datasets.load("digits")
    assert len(ob.ForgetSplit.from_ids(digits.train, found.id.to_numpy())) == len(found)


def test_detect_unlearn_needs_noise():
    res = runner.invoke(app, ["detect", "--unlearn", "finetune"])
    assert res.exit_code == 2 and "--unlearn needs --noise" in " ".join(res.output.split())
