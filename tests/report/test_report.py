"""obliviate.report: a self-contained HTML page from a real (tiny) bench run."""

import base64
import json
import re

import pytest

import obliviate.bench as bench
from obliviate.report import build_report

CONFIG = """
name: tiny-report
seeds: [0, 1]
threads: 1
datasets:
  - name: digits
forget:
  - random: 0.1
methods:
  - none
  - finetune
metrics: [forget_acc, retain_acc, test_acc, mia_efficacy, avg_gap]
epsilon: {n_models: 4, methods: [finetune]}
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPLCONFIGDIR", str(tmp / "mpl"))  # matplotlib writes its cache under HOME otherwise
        (tmp / "c.yaml").write_text(CONFIG)
        bench.run(tmp / "c.yaml", tmp / "out", progress=False)
        yield tmp / "out"


@pytest.fixture(scope="module")
def page(run_dir):
    path = build_report(run_dir)
    assert path == run_dir / "report.html" and path.exists()
    return path.read_text()


def _table(page: str, cls: str) -> str:
    start = page.index(f'<table class="{cls}"')
    return page[start : page.index("</table>", start)]


def test_self_contained(page):
    assert "http://" not in page and "https://" not in page
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "<script" not in page and "<link" not in page


def test_one_embedded_png_per_plot(page):
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    # trade-off, cost vs quality, MIA ROC, epsilon histogram: one (dataset, forget) section
    assert len(imgs) == 4
    assert all(base64.b64decode(b).startswith(PNG) for b in imgs)


def test_leaderboard_follows_composite(page, run_dir):
    summary = bench.read_table(run_dir / "summary.csv")
    comp = summary[(summary.metric == "avg_gap") & (summary.method != "oracle")].sort_values("mean")
    rows = re.findall(r'<tr class="(?:ref|row)" data-method="([^"]+)"', _table(page, "leaderboard"))
    assert rows == ["oracle", *comp["method"]]  # the oracle row first, as the floor reference
    assert set(rows) == {"oracle", "none", "finetune"}
    head = _table(page, "leaderboard")
    assert "avg_gap" in head and "test_acc (%)" in head and "cost_ratio" in head and "↓ ideal 0" in head


def test_params_table_lists_finetune(page, run_dir):
    cell = next(
        c for c in bench.runner.iter_cells(run_dir) if c["cell"]["method"] == "finetune" and c["cell"]["seed"] == 0
    )
    table = _table(page, "params")
    row = re.search(r'<tr data-method="finetune">(.*?)</tr>', table).group(1)
    assert cell["params"] and all(f"{k}={v}" in row for k, v in cell["params"].items())


def test_manifest_section(page, run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "tiny-report" in page and "<details>" in page
    assert all(h in page for h in manifest["checkpoints"].values())


def test_composite_override_and_out(run_dir, tmp_path):
    out = build_report(run_dir, tmp_path / "r.html", composite="mia_efficacy")
    summary = bench.read_table(run_dir / "summary.csv")
    comp = summary[(summary.metric == "mia_efficacy") & (summary.method != "oracle")].sort_values("gap")
    rows = re.findall(r'data-method="([^"]+)"', _table(out.read_text(), "leaderboard"))
    assert rows == ["oracle", *comp["method"]]  # a "closer to oracle" composite ranks by its gap


def test_no_results_raises(tmp_path):
    with pytest.raises(ValueError, match="no bench results"):
        build_report(tmp_path / "missing")
    with pytest.raises(ValueError, match="no bench results"):
        build_report(tmp_path)


def test_report_in_a_real_browser(run_dir, page, tmp_path):
    """The report as a reader gets it: no console errors, no request leaves the file, every plot decodes."""
    from conftest import open_in_chromium

    path = run_dir / "report.html"
    errors, requests, decoded, text = open_in_chromium(path, tmp_path / "report.png")
    assert not errors, errors
    assert all(u == path.as_uri() or u.startswith("data:") for u in requests), requests
    assert len(decoded) == page.count("<img") and all(decoded)
    assert "finetune" in text and (tmp_path / "report.png").stat().st_size > 10_000
