"""Generate the documentation's result pages from ``benchmarks/results/`` when the site is built.

Used as a MkDocs hook (``hooks:`` in ``mkdocs.yml``), so ``mkdocs build`` always shows the result
files as they are on disk: re-running a benchmark updates the docs, and no generated page is
committed. Two things are generated:

- the page ``benchmarks/results.md``: one section per folder of ``benchmarks/results/`` (Markdown
  tables included, bench runs rendered from their ``summary.csv`` + ``manifest.json``, small JSON
  and text files shown as they are);
- markers inside hand-written pages: ``<!-- leaderboard: RUN -->`` becomes the Markdown leaderboard
  of the bench run in ``benchmarks/results/RUN/``, ``<!-- attack-table: RUN -->`` its recovery under
  each attack (:func:`obliviate.report.attack_markdown`), ``<!-- lm-table: FILE KIND -->`` a table of an
  LM grid summary or older ``lm-demo`` result file (KIND: ``sequence``, ``entity``, ``relearn`` or ``more``),
  ``<!-- metrics: MODALITY -->`` the metric catalogue's rows for that modality, read from the code.

``python docs/gen_pages.py [OUT_DIR]`` writes the generated page to OUT_DIR (default: print it).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_PAGE = "benchmarks/results.md"

#: folder -> (section title, one line on what produced it); folders not listed get a generic section
SECTIONS: dict[str, tuple[str, str]] = {
    "methods-digits": (
        "Method benchmark",
        (
            "every method, 3 seeds, two oracles, cost vs retrain and vs one forward+backward "
            "pass over D_f (measured by the former `benchmarks/methods.py`; now "
            "`benchmarks/methods-digits.yaml`)"
        ),
    ),
    "methods-fashion-mnist": ("Method benchmark", ""),
    "digits": (
        "Core methods",
        (
            "the core methods vs the oracle, random 10% and class 3 (measured by the former "
            "`benchmarks/core.py`; now `obliviate bench benchmarks/core.yaml`)"
        ),
    ),
    "fashion-mnist": ("Core methods", ""),
    "demo-digits": ("Demo", "`obliviate demo --out DIR` on digits"),
    "memorization": ("Memorization proxies", "`benchmarks/memorization_proxies.py`: proxies vs Feldman's estimate"),
    "detect": ("Detection", "`benchmarks/detect_unlearn.py`: detect injected label noise, unlearn it"),
    "sisa": ("SISA", "`benchmarks/sisa.py`: deletion vs retrain, accuracy vs one model, exactness"),
    "certified": ("Certified removal", "`benchmarks/certified.py`: certified removal vs retrain"),
    "tabular": (
        "Sequential requests on randhie",
        ("`benchmarks/tabular_requests.py`: five predicate deletions, each vs its own oracle"),
    ),
    "neurips23": ("NeurIPS 2023 score", "`benchmarks/neurips23.py`"),
    "ensemble": ("Ensemble", "`benchmarks/ensemble_speed.py`: K oracles as one vectorised ensemble"),
    "mia-fix": ("MIA-efficacy fix", "`benchmarks/mia_before_after.py`: the old vs SalUn's MIA-efficacy"),
    "lm": ("Language models (older runs)", "the LM benchmark scripts and the pre-grid lm-demo's other methods"),
    "lm-people": (
        "Language models: the people scenario",
        "`obliviate lm-demo` = `obliviate bench benchmarks/lm-people.yaml`: every row vs oracle A, floor oracle B",
    ),
}
#: JSON files larger than this are linked by name only
MAX_JSON = 4000


def _demote(md: str, min_level: int = 3) -> str:
    """Shift headings so an included file nests under its section's ``##`` heading."""

    def fix(m: re.Match[str]) -> str:
        level = len(m.group(1))
        return "#" * max(level, min_level) + " "

    return re.sub(r"^(#{1,6}) ", fix, md, flags=re.MULTILINE)


def is_bench_run(folder: Path) -> bool:
    return (folder / "config.yaml").exists() and (
        (folder / "summary.csv").exists() or (folder / "leaderboard.md").exists()
    )


def leaderboard(run: str) -> str:
    """The Markdown leaderboard of a bench run: rendered from its summary, else its committed
    ``leaderboard.md``; a visible note when neither exists (a run in progress)."""
    folder = RESULTS / run
    if (folder / "summary.csv").exists() or (folder / "summary.parquet").exists():
        from obliviate.report import markdown

        return markdown(folder)
    if (folder / "leaderboard.md").exists():
        return (folder / "leaderboard.md").read_text()
    return f'!!! note "No results yet"\n    `benchmarks/results/{run}/` holds no summary: run the benchmark.\n'


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


def _f3(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _markdown(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def lm_table(path: str, kind: str) -> str:
    """A table of a language-model result: a grid's ``summary.csv`` (``obliviate lm-demo`` or
    ``obliviate bench benchmarks/lm-people.yaml``: KIND ``sequence``, ``entity`` or ``relearn``, built by
    the same :func:`obliviate.bench.presets.lm_tables` the demo prints with), or an older JSON result."""
    if path.endswith(".csv"):
        import pandas as pd

        from obliviate.bench.presets import lm_tables

        kinds = ("sequence", "entity", "relearn")
        if kind not in kinds:
            raise ValueError(f"unknown lm-table kind {kind!r} for a grid summary: {', '.join(kinds)}")
        _, head, body = lm_tables(pd.read_csv(RESULTS / path))[kinds.index(kind)]
        return _markdown(head, body)
    d: dict[str, Any] = json.loads((RESULTS / path).read_text())
    rows, oracle = d["rows"], d["rows"]["oracle"]
    oc = oracle["c"]

    def seq(name: str, r: dict[str, Any], mia: bool) -> list[str]:
        c = r["c"]
        cells = [
            name,
            f"{c['mean']} ({oc['mean']})",
            f"{c['p95']} ({oc['p95']})",
            f"{c['max']} ({oc['max']})",
            f"{r['forget_ma']:.3f} ({oracle['forget_ma']:.3f})",
            str(r["below_low"]),
            _pct(r["secret_forget"]),
            _pct(r["secret_retain"]),
        ]
        if mia:
            cells += [
                f"{r['mia_auc']['loss']:.2f} / {r['mia_auc']['memorization']:.2f}",
                f"{r['privleak']:.2f}" if "privleak" in r else "",
            ]
        cells += [
            f"{100 * r['ppl_change']:+.1f}%",
            f"{r['seconds']:.1f}" if "seconds" in r else "",
            f"{100 * r['cost']:.1f}%" if "cost" in r else "",
        ]
        return cells

    if kind in ("sequence", "more"):
        mia = kind == "sequence"
        head = [
            "model",
            "c(D_f) γ_mean",
            "γ_p95",
            "γ_max",
            "forget MA (oracle)",
            "below low",
            "secret extr. forget",
            "retained",
            *(["MIA AUC loss / mem", "PrivLeak"] if mia else []),
            "Δ ppl",
            "seconds",
            "% train",
        ]
        names = list(rows) if mia else [n for n in rows if n not in ("original", "oracle")]
        body = [seq(n, rows[n], mia) for n in names]
    elif kind == "entity":
        head = [
            "model",
            "forget QA acc",
            "forget QA prob",
            "forget quality (KS p)",
            "neighbour QA acc",
            "association forget / retained",
        ]
        body = [
            [
                n,
                _pct(e["qa_acc_forget"]),
                _f3(e["qa_prob_forget"]),
                f"{e['forget_quality']:.2g}",
                _pct(e["qa_acc_retain"]),
                f"{_pct(e['assoc_forget'])} / {_pct(e['assoc_retain'])}",
            ]
            for n, e in d["entity"].items()
        ]
    elif kind == "relearn":
        head = ["model", "held-out forget MA before", "after relearning", "recovery", "secrets after"]
        body = [
            [n, _f3(r["ma_before"]), _f3(r["ma_after"]), f"{r['recovery']:.2f}", _pct(r["secret_after"])]
            for n, r in d["relearn"].items()
        ]
    else:
        raise ValueError(f"unknown lm-table kind {kind!r}: sequence, entity, relearn or more")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def _file_block(f: Path) -> str:
    rel = f.relative_to(ROOT).as_posix()
    if f.suffix == ".md":
        return f"*`{rel}`*\n\n" + _demote(f.read_text()) + "\n"
    if f.suffix == ".txt":
        return f"*`{rel}`*\n\n```text\n{f.read_text().rstrip()}\n```\n"
    if f.suffix == ".json":
        text = f.read_text()
        if len(text) <= MAX_JSON:
            return f"*`{rel}`*\n\n```json\n{text.rstrip()}\n```\n"
        return f"*`{rel}`* ({len(text) // 1000} kB of JSON)\n"
    return ""


def results_page() -> str:
    """``benchmarks/results.md``: every folder of ``benchmarks/results/``, grouped by section."""
    out = [
        "# Results",
        "",
        (
            "Generated from the files under `benchmarks/results/` when this site is built: re-running a "
            "benchmark and rebuilding (`make docs`) updates this page. How each was run is on "
            "[Benchmarks](index.md)."
        ),
        "",
    ]
    folders = sorted(p for p in RESULTS.iterdir() if p.is_dir()) if RESULTS.is_dir() else []
    runs = [p for p in folders if is_bench_run(p)]
    if runs:
        out += [
            "## Bench runs",
            "",
            (
                "Leaderboards of `obliviate bench` runs, rendered from each run's `summary.csv` and "
                "`manifest.json` (mean over seeds, best first; oracle B is the noise floor)."
            ),
            "",
        ]
        for p in runs:
            out += [
                f"### {p.name}",
                "",
                f"Config: `benchmarks/results/{p.name}/config.yaml`.",
                "",
                _demote(leaderboard(p.name), 4),
                "",
            ]
    groups: dict[str, list[Path]] = {}
    for name, (title, _) in SECTIONS.items():  # the order of SECTIONS, then unknown folders
        if (RESULTS / name).is_dir() and RESULTS / name not in runs:
            groups.setdefault(title, []).append(RESULTS / name)
    for p in folders:
        if p.name not in SECTIONS and p not in runs:
            groups.setdefault(p.name, []).append(p)
    for title, members in groups.items():
        what = " ".join(SECTIONS[m.name][1] for m in members if m.name in SECTIONS and SECTIONS[m.name][1])
        out += [f"## {title}", ""] + ([what, ""] if what else [])
        for p in members:
            for f in sorted(p.iterdir()):
                if f.is_dir():
                    n = sum(1 for _ in f.rglob("*.json"))
                    out += [f"*`{f.relative_to(ROOT).as_posix()}/`*: {n} JSON files (e.g. every tuning trial).\n"]
                elif not (f.suffix == ".json" and f.with_suffix(".md").exists()):
                    block = _file_block(f)
                    if block:
                        out += [block]
    return "\n".join(out) + "\n"


def metrics_table(modality: str) -> str:
    """The metric catalogue (``obliviate.metrics.METRICS``) for one modality, as the code declares it."""
    from obliviate.metrics import METRICS

    head = ["metric", "meaning", "kind", "direction", "ideal", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS.values():
        if modality not in {getattr(x, "value", str(x)) for x in m.modalities}:
            continue
        direction = getattr(m.direction, "value", str(m.direction))
        ideal = getattr(m, "ideal_label", m.ideal)
        cells = [f"`{m.name}`", m.description, m.kind, str(direction), str(ideal), m.source or "—"]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


_MARKER = re.compile(r"<!-- (leaderboard|attack-table|lm-table|metrics): ([^ ]+)(?: ([a-z]+))? -->")


def expand_markers(markdown: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1) == "leaderboard":
            return leaderboard(m.group(2))
        if m.group(1) == "attack-table":
            from obliviate.report import attack_markdown

            folder = RESULTS / m.group(2)
            if not (folder / "summary.csv").exists():
                return f'!!! note "No results yet"\n    `benchmarks/results/{m.group(2)}/` holds no summary.\n'
            return attack_markdown(folder)
        if m.group(1) == "metrics":
            return metrics_table(m.group(2))
        return lm_table(m.group(2), m.group(3) or "sequence")

    return _MARKER.sub(sub, markdown)


# --- MkDocs hook events -------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, RESULTS_PAGE, content=results_page()))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand_markers(markdown)


if __name__ == "__main__":
    text = results_page()
    if len(sys.argv) > 1:
        out = Path(sys.argv[1]) / RESULTS_PAGE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(out)
    else:
        print(text)
