"""The report as one self-contained HTML page: inline CSS, figures as base64 PNG, no network at all.

Everything shown is user or config text, so every string goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from ..bench.results import TIMING_METRICS
from ..metrics.catalogue import ATTACK_SEP
from . import plots

ARROW = {"higher": "↑", "lower": "↓", "closer to oracle": "≈"}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
 padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
.meta,.read{color:#555} .read{background:#f6f8fa;border-left:4px solid #9c9;padding:.5em .8em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.4em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3} td.m,th.m{text-align:left;font-weight:600}
tr.hint th{font-weight:normal;color:#555;font-size:12px}
td.good{background:#d6f0d6} td.comp,th.comp{border-left:2px solid #888;border-right:2px solid #888}
tr.ref td{background:#f4f4f4;color:#555;font-style:italic}
td.na{color:#bbb}
table.leaderboard td.m{position:sticky;left:0;background:#fff} table.leaderboard tr.ref td.m{background:#f4f4f4}
.figs{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:12px;max-width:560px}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:12px;margin-right:4px}
code.tuned{background:#fff3c4;font-weight:600}
td.params{text-align:left;white-space:normal}
details{margin:.5em 0} summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:12px}
.warn{color:#a60}
"""


# ---- formatting ---------------------------------------------------------------------------------------
def _num(x: float) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _pm(mean: float, ci: float, metric: str) -> str:
    """``mean ± ci95`` (accuracies in percent; no interval when n = 1)."""
    k = plots.scale_of(metric)
    if mean is None or not np.isfinite(mean):
        return "—"
    m = f"{mean * k:.1f}" if k != 1 else _num(mean)
    if ci is None or not np.isfinite(ci):
        return m
    return f"{m} ± {ci * k:.1f}" if k != 1 else f"{m} ± {ci:.2g}"


def _img(png: bytes, alt: str, caption: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{b64}" alt="{escape(alt)}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A plain escaped table of text."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=m>{escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ordered(values: Iterable[str], preferred: Iterable[str]) -> list[str]:
    """``values`` in the config's order, anything unknown after, in order of appearance."""
    values = list(dict.fromkeys(values))
    pref = [p for p in dict.fromkeys(preferred) if p in values]
    return pref + [v for v in values if v not in pref]


# ---- leaderboard ------------------------------------------------------------------------------------
def method_order(section: pd.DataFrame, composite: str) -> tuple[list[str], str]:
    """Methods best first by the composite (the oracle pinned first as the floor reference), and a note.

    A "closer to oracle" composite is ranked by its gap; methods without it go last.
    """
    methods = list(dict.fromkeys(section["method"]))
    comp = section[section["metric"] == composite].set_index("method")
    if comp.empty:
        return sorted(methods, key=lambda m: (m != plots.ORACLE, m)), f"composite {composite!r} not in this run"
    direction = comp["direction"].iloc[0]
    key = comp["gap"] if direction == "closer to oracle" else comp["mean"]
    ranked = key.drop(plots.ORACLE, errors="ignore").sort_values(ascending=direction != "higher")
    rest = sorted(set(methods) - set(ranked.index) - {plots.ORACLE})
    head = [plots.ORACLE] if plots.ORACLE in methods else []
    by = "gap to oracle A" if direction == "closer to oracle" else direction
    return head + list(ranked.index) + rest, f"sorted by {composite} ({by} is better)"


def _metric_order(section: pd.DataFrame, composite: str) -> list[str]:
    metrics = list(dict.fromkeys(section["metric"]))
    timing = [m for m in (*TIMING_METRICS,) if m in metrics]
    body = [m for m in metrics if m != composite and m not in timing]
    return ([composite] if composite in metrics else []) + body + timing


def leaderboard(section: pd.DataFrame, composite: str, diverged: pd.Series) -> str:
    """One row per method, ``mean ± ci95`` per metric, cells green where the gap is within the noise floor."""
    order, note = method_order(section, composite)
    metrics = _metric_order(section, composite)
    s = section.assign(
        text=[_pm(m, c, k) for m, c, k in zip(section["mean"], section["ci95"], section["metric"])],
        good=section["gap"].le(section["floor"] * (1 + 1e-9) + 1e-12) & section["gap"].notna(),
        tip=[
            f"gap {_num(g)} · floor {_num(f)} · n {n}" if np.isfinite(g) else f"n {n}"
            for g, f, n in zip(section["gap"], section["floor"], section["n"])
        ],
    )
    wide = s.pivot(index="method", columns="metric", values=["text", "good", "tip"]).reindex(index=order)
    info = section.groupby("metric", sort=False).agg(
        direction=("direction", "first"), ideal=("ideal", "first"), oracle=("oracle", "mean")
    )

    def hcls(m: str) -> str:
        return ' class="comp"' if m == composite else ""

    names = "".join(f"<th{hcls(m)}>{escape(m)}{' (%)' if plots.scale_of(m) != 1 else ''}</th>" for m in metrics)
    hints = []
    for m in metrics:
        d, ideal, ora = info.at[m, "direction"], info.at[m, "ideal"], info.at[m, "oracle"]
        text = ARROW.get(d, "")
        if d == "closer to oracle":
            text += f" oracle A = {_pm(ora, np.nan, m)}" if np.isfinite(ora) else " oracle"
        elif ideal:
            text += f" ideal {ideal}"
        hints.append(f"<th{hcls(m)}>{escape(text)}</th>")
    rows = []
    for method in order:
        is_ref = method == plots.ORACLE
        label = "oracle B (noise floor)" if is_ref else method
        flag = ""
        if diverged.get(method, 0):
            flag = f' <span class="warn" title="diverged in {int(diverged[method])} seed(s)">⚠</span>'
        tds = []
        for m in metrics:
            text = wide.at[method, ("text", m)]
            if not isinstance(text, str):
                tds.append('<td class="na">—</td>')
                continue
            cls = " ".join(
                c
                for c, on in (("good", bool(wide.at[method, ("good", m)]) and not is_ref), ("comp", m == composite))
                if on
            )
            cls = f' class="{cls}"' if cls else ""
            tds.append(f'<td{cls} title="{escape(wide.at[method, ("tip", m)])}">{escape(text)}</td>')
        rows.append(
            f'<tr class="{"ref" if is_ref else "row"}" data-method="{escape(method)}">'
            f'<td class="m">{escape(label)}{flag}</td>{"".join(tds)}</tr>'
        )
    return (
        f'<p class="meta">{escape(note)}; hover a cell for its gap and floor.</p><div class="scroll">'
        f'<table class="leaderboard"><tr><th class="m">method</th>{names}</tr>'
        f'<tr class="hint"><th class="m"></th>{"".join(hints)}</tr>{"".join(rows)}</table></div>'
    )


def under_attack(section: pd.DataFrame, diverged: pd.Series) -> list[str]:
    """The attacked rows (``<attack>/<metric>``): each method and oracle B under the same attack as oracle
    A, ranked by how close the first attack's recovery lands to oracle A's."""
    recovery = [m for m in dict.fromkeys(section["metric"]) if m.endswith(ATTACK_SEP + "recovery")]
    return [
        "<h3>Under attack</h3>",
        '<p class="read">Every model and both oracles are attacked with the same seed and budget, then measured '
        "again: <i>relearn</i> fine-tunes on part of the forget set and measures the rest, <i>relearn-retain</i> "
        "fine-tunes on the retain set, <i>quantize-int8/int4</i> round-trip the weights. <i>recovery</i> is the "
        "share of the original-to-oracle distance on the forget metric that the attack takes back; oracle A's own "
        "value is what retraining concedes. A method that hid the data instead of removing it recovers far "
        "beyond oracle A.</p>",
        leaderboard(section, recovery[0] if recovery else str(section["metric"].iloc[0]), diverged),
    ]


# ---- hyper-parameters ------------------------------------------------------------------------------
def params_table(cells: pd.DataFrame, tuning: dict[str, dict], dataset: str, forget: str, order: list[str]) -> str:
    """Hyper-parameters per method as run on the smallest seed; tuned ones highlighted (★)."""
    first = cells[cells["seed"] == cells["seed"].min()].drop_duplicates("method").set_index("method")
    rows = []
    for method in [m for m in order if m in first.index]:
        r = first.loc[method]
        tuned = set(tuning.get(f"{dataset}/{forget}/{method}", {})) if r["tuned"] else set()
        chips = (
            "".join(
                f'<code class="{"tuned" if k in tuned else ""}">{"★ " if k in tuned else ""}'
                f"{escape(k)}={escape(str(v))}</code>"
                for k, v in r["params"].items()
            )
            or "—"
        )
        mine = cells[cells["method"] == method]
        notes = sorted({str(n) for ns in mine["notes"] for n in (ns or [])})
        if mine["diverged"].any():
            notes.insert(0, f"diverged in {int(mine['diverged'].sum())} of {len(mine)} seeds")
        rows.append(
            f'<tr data-method="{escape(method)}"><td class="m">{escape(method)}</td>'
            f'<td>{"yes" if r["tuned"] else "no"}</td><td class="params">{chips}</td>'
            f'<td class="params">{escape("; ".join(notes)) or "—"}</td></tr>'
        )
    return (
        '<table class="params"><tr><th class="m">method</th><th>tuned</th><th>hyper-parameters '
        f"(seed {int(cells['seed'].min())}; ★ = tuned)</th><th>notes</th></tr>{''.join(rows)}</table>"
    )


# ---- manifest ---------------------------------------------------------------------------------------
def manifest_section(manifest: dict, composite: str) -> str:
    if not manifest:
        return "<h2>Run manifest</h2><p class=meta>no manifest.json (the run did not finish).</p>"
    cfg = manifest.get("config", {})
    cells = manifest.get("cells", {})
    facts = [
        ("config", cfg.get("name", "")),
        ("finished", manifest.get("finished", "")),
        ("seeds", ", ".join(map(str, manifest.get("seeds", [])))),
        ("composite", composite),
        ("oracles", cfg.get("oracles", "")),
        ("device", manifest.get("device", "")),
        ("threads", manifest.get("threads", "")),
        ("executor", manifest.get("executor", "")),
        ("cells", " / ".join(f"{k} {v}" for k, v in cells.items())),
        ("wall seconds", manifest.get("seconds", "")),
        ("source", cfg.get("source", "")),
    ]
    out = ["<h2 id=manifest>Run manifest</h2>", _table(["", ""], [(k, v) for k, v in facts if v != ""])]
    if manifest.get("versions"):
        out += ["<h3>Versions</h3>", _table(manifest["versions"].keys(), [manifest["versions"].values()])]
    if manifest.get("data"):
        out += [
            "<h3>Data</h3>",
            _table(
                ["dataset", "train", "val", "test", "n_train"],
                [
                    (k, v.get("train"), v.get("val"), v.get("test"), v.get("n_train"))
                    for k, v in manifest["data"].items()
                ],
            ),
        ]
    if manifest.get("splits"):
        out.append(
            "<details><summary>Forget splits (content hashes)</summary>"
            + _table(
                ["split", "kind", "n_forget", "hash"],
                [(k, v.get("kind"), v.get("n_forget"), v.get("hash")) for k, v in manifest["splits"].items()],
            )
            + "</details>"
        )
    if manifest.get("checkpoints"):
        out.append(
            "<details><summary>Checkpoints (sha256)</summary>"
            + _table(["checkpoint", "sha256"], manifest["checkpoints"].items())
            + "</details>"
        )
    if manifest.get("tuning"):
        out.append(
            "<details><summary>Tuned hyper-parameters</summary>"
            + _table(
                ["dataset/forget/method", "best params"],
                [(k, json.dumps(v, sort_keys=True)) for k, v in manifest["tuning"].items()],
            )
            + "</details>"
        )
    if cfg:
        out.append(f"<details><summary>Config</summary><pre>{escape(json.dumps(cfg, indent=2))}</pre></details>")
    return "\n".join(out)


# ---- the page ---------------------------------------------------------------------------------------
def _cells_frame(cells: list[dict]) -> pd.DataFrame:
    """One row per cell record: what the tables need, plus the record itself for the figures."""
    return pd.DataFrame(
        [
            {
                **c["cell"],
                "params": c.get("params", {}),
                "tuned": bool(c.get("tuned")),
                "diverged": bool(c.get("diverged")),
                "notes": c.get("notes") or [],
                "record": c,
            }
            for c in cells
        ]
    )


def _normalized(summary: pd.DataFrame) -> pd.DataFrame:
    """Plain-string ideal / direction (CSV and Parquet read empty strings back as missing)."""
    return summary.assign(
        ideal=summary["ideal"].fillna("").astype(str).replace({"None": "", "nan": ""}),
        direction=summary["direction"].fillna("").astype(str),
    )


def render(summary: pd.DataFrame, cells: list[dict], manifest: dict, composite: str, *, note: str = "") -> str:
    """The whole page: title, how to read it, one section per (dataset, forget), the manifest."""
    summary = _normalized(summary)
    cfg = manifest.get("config", {})
    name = cfg.get("name") or "bench"
    date = manifest.get("finished") or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta = _cells_frame(cells)
    colors = plots.method_colors(sorted(summary["method"].unique()))
    datasets = _ordered(summary["dataset"], [d.get("label") or d.get("name") for d in cfg.get("datasets", [])])
    forgets = _ordered(summary["forget"], [f.get("label") for f in cfg.get("forget", [])])
    present = set(zip(summary["dataset"], summary["forget"]))
    sections = [(d, f) for d in datasets for f in forgets if (d, f) in present]

    toc = "".join(f'<li><a href="#sec-{i}">{escape(d)} · {escape(f)}</a></li>' for i, (d, f) in enumerate(sections))
    body = [
        f"<h1>obliviate bench report: {escape(name)}</h1>",
        f'<p class="meta">{escape(date)} · seeds {escape(", ".join(map(str, manifest.get("seeds", []))))}'
        f" · composite <b>{escape(composite)}</b>{(' · ' + escape(note)) if note else ''}</p>",
        '<p class="read"><b>How to read this.</b> Every metric is compared with oracle A, a model retrained '
        "without the forget set: the <i>gap</i> is how far a method lands from it. Oracle B is a second, "
        "independent retrain; its gap to oracle A is the <i>noise floor</i> (the oracle B row). A cell is "
        '<span style="background:#d6f0d6">green</span> when the method\'s gap is within that floor, i.e. '
        "indistinguishable from retraining on this metric. Values are mean ± 95% t-interval over seeds; "
        "accuracies in %. ↑ higher is better, ↓ lower is better, ≈ closest to oracle A is best.</p>",
        f'<ul>{toc}<li><a href="#manifest">run manifest</a></li></ul>',
    ]
    tuning = manifest.get("tuning", {})
    for i, (d, f) in enumerate(sections):
        sec = summary[(summary["dataset"] == d) & (summary["forget"] == f)]
        mine = meta[(meta["dataset"] == d) & (meta["forget"] == f)]
        order, _ = method_order(sec, composite)
        comp_rows = sec[sec["metric"] == composite]
        direction = comp_rows["direction"].iloc[0] if len(comp_rows) else ""
        diverged = mine.groupby("method")["diverged"].sum() if len(mine) else pd.Series(dtype=int)
        attacked = sec["metric"].str.contains(ATTACK_SEP, regex=False)
        seed0 = mine[mine["seed"] == mine["seed"].min()]["record"].tolist() if len(mine) else []
        body += [
            f'<h2 id="sec-{i}">{escape(d)} · forget {escape(f)}</h2>',
            "<h3>Leaderboard</h3>",
            leaderboard(sec[~attacked], composite, diverged),
        ]
        if attacked.any():
            body += under_attack(sec[attacked], diverged)
            png = plots.relearn_curves(seed0, colors)
            if png is not None:
                body.append(
                    _img(
                        png,
                        "relearning curves",
                        "The forget metric after each relearning step (seed "
                        f"{mine['seed'].min()}), every model against oracle A under the same attack (dashed).",
                    )
                )
        figs = [
            (
                plots.tradeoff(sec, colors),
                "trade-off",
                "Forget-side gap to oracle A (forget_acc, else mia_efficacy) vs test accuracy; bars are 95% CIs, "
                "the star is oracle A, the dotted line oracle B's gap (noise floor). Best: left and high.",
            ),
            (
                plots.cost_quality(sec, composite, direction, colors),
                "cost vs quality",
                f"Cost as a fraction of retraining (log) vs {composite}; retraining (oracle B) sits at 1.",
            ),
            (
                plots.roc(seed0, colors),
                "MIA ROC",
                f"Loss-threshold membership inference on the forget set vs test (seed {mine['seed'].min()}); "
                "a method that forgot well tracks oracle A's dashed curve."
                if len(mine)
                else "",
            ),
            (
                plots.ma_histograms(mine["record"].tolist() if len(mine) else [], colors),
                "per-sequence MA",
                "Forget-set memorization accuracy per sequence (pooled over seeds), each model's outline "
                "against oracle A's grey histogram: a method that forgot like retraining has the same shape.",
            ),
            (
                plots.epsilon_hist(mine["record"].tolist() if len(mine) else [], colors),
                "epsilon histogram",
                "Per-example ε of the NeurIPS 2023 protocol, pooled over seeds; hatched bar: ε at the cap "
                "(undefined or unbounded).",
            ),
        ]
        imgs = [_img(png, alt, cap) for png, alt, cap in figs if png is not None]
        if imgs:
            body += ["<h3>Plots</h3>", f'<div class="figs">{"".join(imgs)}</div>']
        grid = plots.sample_grids(seed0, order)
        if grid is not None:
            body += [
                "<h3>Samples</h3>",
                _img(
                    grid,
                    "sample grids",
                    f"Samples of every model (seed {mine['seed'].min()}): left, conditioned on the forgotten "
                    "class; right, one of each retained class. Sample i starts from the same noise in every "
                    "model, so a method that forgot like retraining looks like oracle A column by column.",
                ),
            ]
        if len(mine):
            body += ["<h3>Hyper-parameters</h3>", params_table(mine, tuning, d, f, order)]
    body.append(manifest_section(manifest, composite))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>obliviate report: {escape(name)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
