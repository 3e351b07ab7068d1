"""A diffusion grid through `obliviate bench`: denoiser recipes, the generative report rows, sample grids."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from obliviate.bench import ConfigError, load_config, run
from obliviate.bench.results import iter_cells
from obliviate.cli import app
from obliviate.metrics import Modality
from obliviate.metrics.catalogue import available
from obliviate.report import build_report, markdown

ROOT = Path(__file__).resolve().parents[2]

TINY = """\
name: diffusion-tiny
seeds: [0]
threads: 1
device: cpu
datasets:
  - name: digits
    val_fraction: 0
    recipe: {architecture: denoiser, arch_kwargs: {config: unit-test}, steps: 20, batch_size: 32, lr: 0.002}
forget:
  - class: 3
methods:
  - none
  - esd: {steps: 5}
  - finetune: {label: finetune-adam, optimizer: adam, lr: 0.001, weight_decay: 0.0, epochs: 1}
composite: forget_class_rate
sampling: {per_class: 3, forget_per_class: 6, steps: 3, guidance: 1.0}
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffusion-bench")
    return run(load_config(text=TINY), out, progress=False), out


def test_a_tiny_diffusion_grid_runs_through_bench(grid):
    result, out = grid
    assert result.computed == 4  # oracle B's floor cell and three methods
    rows = result.results
    assert set(rows["metric"]) == {*available(Modality.DIFFUSION), "seconds", "cost_ratio"}
    assert set(rows["method"]) == {"oracle", "none", "esd", "finetune-adam"}
    rate = rows[rows["metric"] == "forget_class_rate"].set_index("method")
    assert rate["value"].between(0, 1).all() and rate["oracle"].notna().all() and rate["floor"].notna().all()
    cells = {c["cell"]["method"]: c for c in iter_cells(out)}
    # every cell keeps up to 8 samples of each class (the forgotten one first: all its 6; 3 of each
    # retained one), 8x8 grey, for the sample grids
    for c in cells.values():
        s = c["samples"]
        assert s["classes"][0] == 3 and s["shape"] == [8, 8] and "roc" not in c
        sizes = {k: np.frombuffer(base64.b64decode(v), dtype=np.uint8).size for k, v in s["images"].items()}
        assert sizes == {str(k): (6 if k == 3 else 3) * 64 for k in range(10)}
    assert "samples_reference" in cells["oracle"]  # oracle A's, next to oracle B's own
    # "none" is the original: its samples are not oracle A's (same noise, different model)
    assert cells["none"]["samples"]["images"] != cells["oracle"]["samples_reference"]["images"]


def test_the_report_shows_sample_grids_and_the_markdown_has_diffusion_columns(grid):
    _, out = grid
    html = build_report(out).read_text()
    assert re.search(r'alt="sample grids"', html) and "forgotten class" in html
    assert "forget_class_rate" in html and "fd_oracle_forget" in html
    md = markdown(out)
    assert "retained_class_acc" in md and "fd_oracle_forget" in md and "`esd`" in md
    head = next(line for line in md.splitlines() if line.startswith("| method"))
    assert head.count("forget_class_rate") == 1  # the composite is a shown column, not a second one
    oracle_a = next(line for line in md.splitlines() if line.startswith("| oracle A"))
    assert "nan" not in md and oracle_a.count("—") == 2  # oracle A has no distance to itself


def test_a_rerun_reuses_every_cell(grid):
    _, out = grid
    again = run(load_config(text=TINY), out, progress=False)
    assert again.computed == 0 and again.reused == 4


def test_bad_sampling_and_methods_fail_at_parse_time():
    with pytest.raises(ConfigError, match=r":\d+: unknown sampling key 'eta'"):
        load_config(text=TINY.replace("guidance: 1.0}", "guidance: 1.0, eta: 1}"))
    with pytest.raises(ConfigError, match="guidance scale must be > 0"):
        load_config(text=TINY.replace("guidance: 1.0", "guidance: 0"))
    with pytest.raises(ConfigError, match="eta must be > 0"):
        load_config(text=TINY.replace("esd: {steps: 5}", "esd: {eta: -1}"))


def test_the_shipped_grid_config_parses():
    cfg = load_config(ROOT / "benchmarks" / "diffusion-fashion-mnist.yaml")
    assert len(cfg.seeds) == 3 and cfg.oracles == 2 and cfg.sampling is not None
    assert cfg.datasets[0].recipe["architecture"] == "denoiser"
    # every method registered for diffusion models is in the grid (retrain is the oracle itself)
    from obliviate.methods import available as methods

    assert {m.name for m in cfg.methods} == set(methods("diffusion")) - {"retrain"}


def test_the_cli_runs_a_diffusion_config(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        TINY.replace(
            "  - finetune: {label: finetune-adam, optimizer: adam, lr: 0.001, weight_decay: 0.0, epochs: 1}\n", ""
        )
    )
    result = CliRunner().invoke(app, ["bench", str(cfg), "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "forget_class_rate" in result.output and (tmp_path / "run" / "summary.csv").exists()
