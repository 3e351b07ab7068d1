"""Bench grids: config errors located before any training, caching, resumption after a kill, results."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import obliviate as ob
from obliviate.bench import ConfigError, load_config, read_table, run
from obliviate.bench.runner import TIMING_METRICS
from obliviate.cli import app

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: t
seeds: [0]
threads: 1
datasets:
  - name: digits
forget:
  - random: 0.1
methods:
  - none
  - finetune: {epochs: 1}
metrics: [forget_acc, test_acc, avg_gap]
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(text=text)
    return str(e.value)


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("  - finetune: {epochs: 1}", "  - finetun: {epochs: 1}", 10, "unknown method 'finetun'"),
        ("  - name: digits", "  - name: digitz", 5, "unknown dataset 'digitz'"),
        ("[forget_acc, test_acc", "[forget_acc, test_accuracy", 11, "unknown metric 'test_accuracy'"),
        ("  - random: 0.1", "  - random: -0.1", 7, "fraction"),
        ("  - random: 0.1", "  - random: 0.1\n  - memorization: {bin: top, count: 5}", 8, "bin must be one of"),
        ("  - finetune: {epochs: 1}", "  - finetune: {epochs: 1, lr: -1}", 10, "lr must be > 0"),
        ("  - finetune: {epochs: 1}", "  - finetune: {epoch: 1}", 10, "finetune has no parameter 'epoch'"),
        ("seeds: [0]", "seeds: [0, 0]", 2, "seeds repeat"),
        ("threads: 1", "threads: 1\nworkers: 3", 4, "unknown key 'workers'"),
        ("forget:\n  - random: 0.1", "forget:\n  - random: 0.1\n  - predicate: ''", 8, "predicate takes"),
        ("  - name: digits", "  - name: digits\n    recipe: {epochs: 0}", 6, "bad recipe"),
        ("  - none", "  - none\n  - scrub: {tune: {budget: 0}}", 10, "must be >= 1"),
        ("threads: 1", "threads: 1\nattacks: [prune]", 4, "unknown attack 'prune'"),
        ("threads: 1", "threads: 1\nattacks: [{relearn: {epochs: 2}}]", 4, "bad parameters for attack"),
    ],
)
def test_bad_config_names_the_line(old: str, new: str, line: int, words: str) -> None:
    assert old in GOOD
    msg = _error(GOOD.replace(old, new))
    assert msg.startswith(f"<config>:{line}:"), msg
    assert words in msg, msg


def test_malformed_yaml_names_the_line() -> None:
    msg = _error(GOOD.replace("  - none", "  - none: [unclosed"))
    assert "malformed YAML" in msg and msg.startswith("<config>:"), msg
    assert int(msg.split(":")[1]) in (9, 10, 11), msg


def test_config_defaults_and_all_methods() -> None:
    cfg = load_config(text=GOOD.replace("  - none\n  - finetune: {epochs: 1}", "  - all\n  - retrain"))
    names = [m.name for m in cfg.methods]
    assert "retrain" in names and names.count("retrain") == 1 and "scrub" in names
    assert cfg.oracles == 2 and cfg.composite == "avg_gap" and cfg.roc is True


def test_data_dependent_errors_come_before_training(tmp_path: Path) -> None:
    """A class the data lacks, or a predicate matching nothing, fails in run() before any model is trained."""
    for forget, words in [
        ("  - class: 42", "classes [42] have no training examples"),
        ('  - predicate: "label = 99"', "matches no rows"),
        ('  - predicate: "colour = 3"', "does not fit the table"),
    ]:
        cfg = load_config(text=GOOD.replace("  - random: 0.1", forget))
        with pytest.raises(ConfigError, match=re.escape(words)) as e:
            run(cfg, tmp_path / "r", progress=False)
        assert str(e.value).startswith("<config>:7:")
        assert not any((tmp_path / "r").rglob("model.safetensors"))


def test_cli_reports_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("  - none", "  - nothing"))
    res = CliRunner().invoke(app, ["bench", str(path), "--out", str(tmp_path / "o"), "--no-report"])
    assert res.exit_code == 2
    assert f"{path}:9: unknown method 'nothing'" in " ".join(res.output.split())


GRID = """\
name: resume
seeds: [0, 1, 2]
threads: 1
datasets:
  - name: digits
forget:
  - random: 0.1
methods:
  - none
  - finetune
  - neggrad+
  - random-label
  - scrub
metrics: [forget_acc, retain_acc, test_acc, mia_efficacy, js_forget, avg_gap]
"""


def _frame(out: Path) -> pd.DataFrame:
    df = read_table(out / "results.parquet")
    df = df[~df.metric.isin(TIMING_METRICS)]
    return df.sort_values(["forget", "method", "seed", "metric"]).reset_index(drop=True)


@pytest.mark.slow
def test_killed_run_resumes_computing_only_missing_cells(tmp_path: Path) -> None:
    """SIGKILL a grid mid-way; the rerun computes only the missing cells, and the results equal an
    uninterrupted run's (timings aside)."""
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(GRID)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "obliviate", "bench", str(cfg_path), "--out", str(out), "--no-report"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cells = out / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(cells.glob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    total = 3 * 6  # 3 seeds x (5 methods + oracle B)
    assert 3 <= len(before) < total, f"the kill came too late: {len(before)} cells"
    assert not list(cells.glob(".*")), "a killed run left a partial cell file behind"

    resumed = run(cfg_path, out, progress=False)
    assert (resumed.computed, resumed.reused) == (total - len(before), len(before))
    assert {p.name: p.read_bytes() for p in cells.glob("*.json") if p.name in before} == before

    again = run(cfg_path, out, progress=False)
    assert (again.computed, again.reused) == (0, total)

    fresh = run(cfg_path, tmp_path / "fresh", progress=False, cache=out / "cache")
    assert fresh.computed == total
    pd.testing.assert_frame_equal(_frame(out), _frame(tmp_path / "fresh"))


def test_results_summary_and_manifest(tmp_path: Path) -> None:
    res = run(load_config(text=GOOD.replace("seeds: [0]", "seeds: [0, 1]")), tmp_path, progress=False)
    df = read_table(tmp_path / "results.parquet")
    assert len(df) == len(pd.read_csv(tmp_path / "results.csv"))
    # one row per cell x metric: 2 seeds x (none, finetune, oracle B) x (3 metrics + the 2 more avg_gap needs
    # + seconds + cost_ratio)
    assert len(df) == 2 * 3 * 7 and set(df.method) == {"none", "finetune", "oracle"}
    s = res.summary.set_index(["method", "metric"])
    vals = df[(df.method == "finetune") & (df.metric == "test_acc")].value.to_numpy()
    assert s.loc[("finetune", "test_acc"), "mean"] == pytest.approx(vals.mean())
    assert s.loc[("finetune", "test_acc"), "ci95"] == pytest.approx(12.706 * vals.std(ddof=1) / np.sqrt(2), rel=1e-3)
    # oracle B's Avg.Gap is the floor; doing nothing is worse than the floor on random forgetting
    assert s.loc[("oracle", "avg_gap"), "mean"] == pytest.approx(s.loc[("oracle", "avg_gap"), "floor"])
    assert s.loc[("none", "avg_gap"), "direction"] == "lower"
    m = ob.io.read_json(tmp_path / "manifest.json")
    assert m["seeds"] == [0, 1] and {k: m["cells"][k] for k in ("total", "computed", "reused")} == {
        "total": 6,
        "computed": 6,
        "reused": 0,
    }
    assert len(m["cells"]["files"]) == 6
    assert m["versions"]["torch"] and len(m["splits"]) == 2 and m["data"]["digits"]["train"]
    ckpts = m["checkpoints"]
    assert sum(k.startswith("original") for k in ckpts) == 2 and sum(k.startswith("oracle") for k in ckpts) == 4
    assert all(len(h) == 64 for h in ckpts.values())


def test_originals_and_oracles_are_shared_across_methods_and_runs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run(load_config(text=GOOD), tmp_path / "a", cache=cache, progress=False)
    models = sorted(p.name for p in (cache / "models").iterdir())
    assert len(models) == 3  # one original, oracles A and B; shared by both methods
    more = GOOD.replace("  - none", "  - none\n  - neggrad+")
    res = run(load_config(text=more), tmp_path / "b", cache=cache, progress=False)
    assert sorted(p.name for p in (cache / "models").iterdir()) == models  # nothing retrained
    assert res.computed == 4  # new folder: none, finetune, neggrad+, oracle B


@pytest.mark.slow
def test_quick_config_runs_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped CI grid (benchmarks/quick.yaml) runs well within 3 minutes and gives a report."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    from obliviate.report import build_report

    start = time.perf_counter()
    res = run(ROOT / "benchmarks" / "quick.yaml", tmp_path / "q", progress=False)
    html = build_report(res.out).read_text()
    seconds = time.perf_counter() - start
    assert seconds < 180, f"quick grid took {seconds:.0f} s"
    assert res.summary.forget.nunique() == 5 and res.summary.method.nunique() == 8
    assert html.count("data:image/png;base64,") >= 5 * 3
    assert (res.summary.metric == "n23_forget_quality").any()


def test_a_changed_config_in_the_same_folder_reports_only_its_own_cells(tmp_path: Path) -> None:
    from obliviate.bench.runner import iter_cells

    run(load_config(text=GOOD), tmp_path, progress=False)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 3
    res = run(load_config(text=GOOD.replace("  - finetune: {epochs: 1}\n", "")), tmp_path, progress=False)
    assert (res.computed, res.reused) == (0, 2)
    assert sorted(c["cell"]["method"] for c in iter_cells(tmp_path)) == ["none", "oracle"]
    assert set(res.results.method) == {"none", "oracle"}


@pytest.mark.slow
def test_lm_quick_grid_judges_language_models_per_sequence_and_reports_ma_histograms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """benchmarks/lm-quick.yaml: tiny-GPT originals and oracles (seeds s and floor_seed(s)), five LM methods
    (idk writes refusals with the scenario tokenizer the grid hands it), each cell ob.evaluate's
    per-sequence report; the report draws the MA histograms."""
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from obliviate.bench.jobs import _model, data_of
    from obliviate.bench.results import iter_cells
    from obliviate.evaluation.oracles import floor_seed
    from obliviate.report import build_report

    res = run(ROOT / "benchmarks" / "lm-quick.yaml", tmp_path / "lm", progress=False)
    methods = {"ga", "grad-diff", "npo", "simnpo", "idk", "oracle"}
    assert res.computed == 2 * 6 and set(res.summary.method) == methods
    seeds = {ob.io.read_json(Path(p) / "manifest.json")["seed"] for g in res.groups for p in g.oracles}
    assert seeds == {0, 1, floor_seed(0), floor_seed(1)}
    s = res.summary.set_index(["method", "metric"])
    assert s.loc[("oracle", "avg_gap_ma"), "mean"] == pytest.approx(s.loc[("oracle", "avg_gap_ma"), "floor"])
    # gradient ascent forgets: the cells judge the unlearned model, not the original it started from
    g = res.groups[0]
    data, split = data_of(g.dataset), ob.ForgetSplit.load(g.split_path)
    before = ob.evaluate(_model(g.original, g.recipe), data, split, metrics=["forget_ma"]).values["forget_ma"]
    ga = res.results[(res.results.method == "ga") & (res.results.seed == g.seed) & (res.results.metric == "forget_ma")]
    assert ga.value.item() < before
    cells = list(iter_cells(res.out))
    assert all(len(c["forget_ma"]) == len(split) for c in cells)
    assert all(len(c["forget_ma_reference"]) == len(split) for c in cells if c["cell"]["method"] == "oracle")
    html = build_report(res.out).read_text()
    assert 'alt="per-sequence MA"' in html and "<h3>Under attack</h3>" in html and 'alt="relearning curves"' in html
    curve = cells[0]["curves"]["relearn"]
    assert curve["steps"] == [0, 1, 2, 4, 8, 10] and len(curve["model"]) == len(curve["oracle"]) == 6
    # a curve's points score the forget rows alone; its last point is the attack's full row
    rows = {(r["metric"]): r for r in cells[0]["metrics"]}
    assert curve["model"][-1] == pytest.approx(rows["relearn/forget_ma"]["value"])
    # attacked rows: every method and oracle B against oracle A under the same attack
    for row in ("relearn/forget_ma", "relearn/recovery", "quantize-int4/extraction_forget"):
        assert set(res.summary[res.summary.metric == row].method) == methods
    from obliviate.bench.presets import lm_tables

    seq, entity, relearn = lm_tables(res.summary)
    labels = ["oracle A (retrain)", "oracle B (floor)", "ga", "grad-diff", "npo", "simnpo", "idk"]
    assert [r[0] for r in seq[2]] == labels and [r[0] for r in relearn[2]] == labels
    ref = s.loc[("ga", "forget_ma"), "oracle"]
    ga_row = seq[2][2]
    assert ga_row[4] == f"{s.loc[('ga', 'forget_ma'), 'mean']:.3f} ({ref:.3f})"
    oracle_b = s.loc[("oracle", "relearn/forget_ma")]
    assert oracle_b["gap"] == pytest.approx(oracle_b["floor"]) and oracle_b["floor"] > 0


def test_grid_attacks_that_cannot_apply_are_left_out_of_those_cells(tmp_path: Path) -> None:
    """A grid-level ``relearn-related`` runs on class forgetting and is skipped (with a note) on random
    forgetting, where there is no forgotten class to take few shots of; the other attacks run on both."""
    from obliviate.bench.results import iter_cells

    text = GOOD.replace("  - random: 0.1", "  - random: 0.1\n  - class: 3").replace(
        "threads: 1", "threads: 1\nroc: false\nattacks: [relearn-related, {relearn: {steps: 2}}]"
    )
    res = run(load_config(text=text), tmp_path / "a", progress=False)
    rows = res.summary[res.summary.method == "finetune"].set_index(["forget", "metric"])
    assert ("class-3", "relearn-related/forget_acc") in rows.index and ("class-3", "relearn/recovery") in rows.index
    assert ("random-0.1", "relearn/forget_acc") in rows.index
    assert not any(m.startswith("relearn-related/") for m in rows.loc["random-0.1"].index)
    notes = {c["cell"]["forget"]: c["notes"] for c in iter_cells(res.out) if c["cell"]["method"] == "finetune"}
    assert any("relearn-related needs class forgetting" in n for n in notes["random-0.1"]) and not notes["class-3"]
    # which forgetting survives: recovery per attack (those the forget set had), oracle A's first
    from obliviate.report import attack_markdown

    md = attack_markdown(res.out)
    random_part, class_part = md.split("**digits, forget class-3**")
    assert "| method | relearn-related | relearn | survives (within the floor) |" in class_part
    rec = rows.loc[("class-3", "relearn-related/recovery")]
    assert f"| `finetune` | {rec['mean']:.2f} |" in class_part
    assert "| method | relearn | survives (within the floor) |" in random_part and "relearn-related" not in random_part


def test_tuned_reuses_a_previous_grids_tuning(tmp_path: Path) -> None:
    """``tuned: manifest.json`` hands each tuned method the parameters the earlier grid found (a labelled
    variant its base method's, plus its own fixed ones): no validation oracle, no search."""
    from obliviate.bench.results import iter_cells

    text = GOOD.replace("  - finetune: {epochs: 1}", "  - finetune: {tune: {budget: 2}}").replace(
        "threads: 1", "threads: 1\nroc: false"
    )
    first = run(load_config(text=text), tmp_path / "a", progress=False)
    found = json.loads((first.out / "manifest.json").read_text())["tuning"]["digits/random-0.1/finetune"]
    again = text + f"tuned: {first.out / 'manifest.json'}\n"
    again = again.replace("  - none", "  - none\n  - finetune: {label: ft-variant, epochs: 3, tune: {budget: 2}}")
    second = run(load_config(text=again), tmp_path / "b", progress=False)
    params = {c["cell"]["method"]: c["params"] for c in iter_cells(second.out)}
    assert {k: params["finetune"][k] for k in found} == found
    assert params["ft-variant"]["epochs"] == 3 and params["ft-variant"]["lr"] == found["lr"]

    def oracles(res):
        return len(list((res.out / "cache" / "models").glob("oracle-*")))

    assert oracles(first) == 3 and oracles(second) == 2  # A, B and, only when tuning, a validation oracle
    assert len(list((second.out / "cache" / "tuning").glob("*-given-*.json"))) == 2
    with pytest.raises(ConfigError, match="tuned must name a bench manifest"):
        load_config(text=GOOD + "tuned: /nonexistent/manifest.json\n")


def test_lm_demo_preset_is_the_lm_people_grid() -> None:
    """`obliviate lm-demo` and benchmarks/lm-people.yaml run the same grid (so the committed LM tables are
    what the demo prints); the preset's table printer reads any grid summary of that shape."""
    from obliviate.bench.presets import lm_demo_config

    def shape(cfg):
        return (
            cfg.datasets,
            [f.label for f in cfg.forget],
            [(m.name, m.params, m.label, m.tune) for m in cfg.methods],
            cfg.seeds,
            cfg.oracles,
            cfg.attacks,
            cfg.composite,
            cfg.metrics,
        )

    assert shape(lm_demo_config()) == shape(load_config(ROOT / "benchmarks" / "lm-people.yaml"))
    small = lm_demo_config([("mine", "ga", {"max_steps": 3})], steps=50, seed=2)
    assert [m.label for m in small.methods] == ["none", "mine"] and small.seeds == (2,)
    assert small.datasets[0].recipe == {"steps": 50}


@pytest.mark.slow
def test_ulira_audit_from_a_grid_config(tmp_path: Path) -> None:
    """`ulira:` audits the listed methods per cell (and retraining itself on the oracle cell); the rows
    reach the tidy results and the report."""
    from obliviate.report import build_report

    text = GOOD.replace(
        "metrics: [forget_acc, test_acc, avg_gap]",
        "metrics: [forget_acc, test_acc, avg_gap]\nroc: false\n"
        "ulira: {n_shadow: 8, n_targets: 40, methods: [finetune, oracle]}",
    )
    res = run(load_config(text=text), tmp_path / "u", progress=False)
    audited = res.results[res.results.metric == "ulira_auc"]
    assert set(audited.method) == {"finetune", "oracle"} and audited.value.between(0, 1).all()
    assert "ulira_tpr@1%fpr" in set(res.results.metric) and "ulira_auc" in build_report(res.out).read_text()
    with pytest.raises(ConfigError, match="unknown classification method 'ga-x'"):
        load_config(text=GOOD + "ulira: {methods: [ga-x]}\n")
