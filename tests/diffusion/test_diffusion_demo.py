"""The diffusion demo end to end on a tiny configuration, its table, grids and CLI errors."""

import json

import pytest
from typer.testing import CliRunner

from obliviate.cli import app
from obliviate.diffusion import DemoConfig, format_table, run_demo
from obliviate.evaluation.generative import SamplingPlan
from obliviate.train.diffusion import DiffusionRecipe

TINY = DemoConfig(
    forget=3,
    recipe=DiffusionRecipe(config="unit-test", steps=4),
    plan=SamplingPlan(per_class=3, forget_per_class=4, steps=2),
)


@pytest.mark.slow
def test_demo_runs_and_writes_results_and_grids(tmp_path):
    methods = [("esd", "esd", {"steps": 2}), ("salun", "salun", {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0})]
    result = run_demo(TINY, methods, out=tmp_path, echo=lambda _: None)
    assert list(result["rows"]) == ["original", "oracle A", "oracle B", "esd", "salun"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"]["esd"]["values"]["cost_ratio"] > 0 and saved["config"]["floor_seed"] == 500
    assert saved["rows"]["oracle A"]["values"]["fd_oracle_retained"] == pytest.approx(0, abs=1e-6)
    assert {p.name for p in (tmp_path / "grids").iterdir()} == {
        "original.png",
        "oracle-A.png",
        "oracle-B.png",
        "esd.png",
        "salun.png",
        "overview.png",
    }
    head, body = format_table(result)
    assert head[0] == "model" and head[-1] == "cost ×retrain"
    assert [r[0] for r in body] == ["original", "oracle B", "esd", "salun", "oracle A", "floor |B − A|"]
    assert all(len(r) == len(head) for r in body)


def test_bad_requests_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="class 12 is not in digits"):
        run_demo(DemoConfig(forget=12), out=tmp_path)
    with pytest.raises(ValueError, match="unknown parameter"):
        run_demo(TINY, [("x", "esd", {"bogus": 1})])
    with pytest.raises(ValueError, match="images are"):
        run_demo(DemoConfig(recipe=DiffusionRecipe(config="mnist-S")))
    result = CliRunner().invoke(app, ["diffusion-demo", "--forget", "10", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "not in digits" in result.output
