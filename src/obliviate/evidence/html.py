"""``evidence.html``: the bundle as one self-contained page a non-specialist can read.

Order (reference/evidence-and-ledger.md §7): verdict banner; what was asked; what it matched (counts,
rule, review candidates; never row contents); what was done and why; the checks, one row each
phrased as a question, with value, threshold, reference and verdict, and their plots; what remains;
the record (hashes, ledger link, the commands that re-check it); the raw JSON. CSS is inline, plots
are PNG ``data:`` URIs, and a Content-Security-Policy blocks every fetch, so the page works offline
and reveals nothing by loading.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
COLORS = {"PASS": "#1b7f3b", "FAIL": "#b3261e", "INCONCLUSIVE": "#a86b00"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.banner{padding:1em 1.2em;border-radius:8px;color:#fff;font-size:1.25em}
table{border-collapse:collapse;width:100%;font-size:.92em}
td,th{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f5f5f7}.v{font-weight:600}.PASS{color:#1b7f3b}.FAIL{color:#b3261e}.INCONCLUSIVE{color:#a86b00}
code,pre{font-family:ui-monospace,Menlo,monospace;font-size:.88em;background:#f5f5f7;padding:.1em .3em;
border-radius:3px;word-break:break-all}
pre{padding:.8em;overflow-x:auto;white-space:pre-wrap}.muted{color:#666}figure{margin:1em 0}img{max-width:100%}
"""


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items() if k != "phi")
    return _e(v)


def _threshold(c: dict[str, Any]) -> str:
    t, r = c["threshold"], c.get("reference") or {}
    rule = t["rule"]
    if rule == "pred_interval":
        return (
            f"within ±{t['half_width']:.4g} of the oracles' mean {r['mean']:.4g} "
            f"(k = {t['k']:.3g} × sd {r['sd']:.3g} over {r['n_oracles']} oracles, at least {t['resolution']:.3g})"
        )
    if rule == "fisher":
        source = _e(r.get("source", ""))
        return f"combined p ≥ {t['p_min']} against {r.get('n_models')} models that never saw the rows ({source})"
    if rule == "wilson_tpr":
        return (
            "flag rate on deleted rows ≤ the upper 95% bound on never-seen rows, threshold at "
            f"{100 * t['fpr']:g}% false positives"
        )
    if rule == "extraction":
        return "verbatim rate on deleted rows ≤ the upper 95% bound on never-seen rows"
    if rule == "max_drop":
        return f"at most {t['max_drop']:g} below the original's {r['original']:.4g}"
    if rule == "equal":
        return "equal to the recorded value"
    if rule == "certified_bound":
        return (
            f"gradient residual ≤ its accumulated bound ≤ the budget {t['budget']:.4g} for ε = {t['eps']:g}, "
            f"δ = {t['delta']:g} (σ = {r.get('sigma', 0):g}), or a retrain with fresh noise"
        )
    return "must hold"


def _interval_plot(checks: list[dict[str, Any]]) -> str | None:
    rows = [c for c in checks if c["threshold"]["rule"] == "pred_interval" and c["value"] is not None]
    if not rows:
        return None
    fig = Figure(figsize=(7.5, 0.55 * len(rows) + 1.0))
    ax = fig.add_subplot()
    for i, c in enumerate(rows):
        r, t = c["reference"], c["threshold"]
        ax.barh(i, 2 * t["half_width"], left=r["mean"] - t["half_width"], color="#cfe3d6", height=0.6)
        ax.scatter(
            r["values"],
            [i] * len(r["values"]),
            color="#555",
            s=12,
            zorder=2,
            label="retrained oracles" if i == 0 else None,
        )
        ax.scatter(
            [c["value"]],
            [i],
            color=COLORS.get(c["verdict"], "#333"),
            marker="D",
            s=60,
            zorder=3,
            label="this model" if i == 0 else None,
        )
    ax.set_yticks(range(len(rows)), [c["id"] for c in rows])
    ax.set_xlabel("value (green band: where a model retrained without the rows lands, 95%)")
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _mia_plot(checks: list[dict[str, Any]]) -> str | None:
    c = next((c for c in checks if c["threshold"]["rule"] == "fisher" and c["value"] and "phi" in c["value"]), None)
    if c is None:
        return None
    phi = np.asarray(c["value"]["phi"], dtype=float)[:60]
    mu = np.asarray(c["reference"]["mu"], dtype=float)[:60]
    sd = np.asarray(c["reference"]["sigma"], dtype=float)[:60]
    x = np.arange(len(phi))
    fig = Figure(figsize=(7.5, 3.0))
    ax = fig.add_subplot()
    ax.errorbar(
        x, mu, yerr=2 * sd, fmt="o", color="#555", ms=3, capsize=2, label="models that never saw the row (mean ± 2 sd)"
    )
    ax.scatter(x, phi, color=COLORS.get(c["verdict"], "#333"), marker="D", s=22, zorder=3, label="this model")
    ax.set_xlabel("deleted row (in id order)")
    ax.set_ylabel("confidence on the row")
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def _guarantee_plot(ev: dict[str, Any]) -> str | None:
    """SISA: per constituent, whether it held deleted rows and was retrained; certified: the bound
    against the budget."""
    kind = ev["model"].get("kind")
    checks = {c["id"]: c for c in ev["checks"]}
    if kind == "sisa" and "sisa_shards_retrained" in checks:
        ref = checks["sisa_shards_retrained"]["reference"]
        n = len(ev["model"]["after"]["constituents_tensors_sha256"])
        held = {int(s) for s in ref["holding"]}
        retrained = {int(s) for s in ref["retrained_from"]}
        fig = Figure(figsize=(7.5, 0.4 * n + 1.2))
        ax = fig.add_subplot()
        for s in range(n):
            color = "#1b7f3b" if s in retrained else "#bbb"
            ax.barh(s, 1, color=color, edgecolor="#b3261e" if s in held else "#888", linewidth=2 if s in held else 1)
            label = "held deleted rows: retrained" if s in held and s in retrained else "unchanged"
            if s in held and s not in retrained:
                label = "held deleted rows: NOT retrained"
            ax.text(0.02, s, label, va="center", fontsize=8)
        ax.set_yticks(range(n), [f"constituent {s}" for s in range(n)])
        ax.set_xticks([])
        ax.set_xlabel("SISA constituents (green: retrained without the rows)")
        return _png(fig)
    if kind == "certified" and "certified_bound" in checks:
        c = checks["certified_bound"]
        v, t = c["value"], c["threshold"]
        fig = Figure(figsize=(7.5, 2.0))
        ax = fig.add_subplot()
        names = ["gradient residual", "accumulated bound", "budget"]
        vals = [max(float(x), 1e-16) for x in (v["gradient_residual"], v["accumulated_bound"], t["budget"])]
        ax.barh(range(3), vals, color=["#555", COLORS.get(c["verdict"], "#333"), "#cfe3d6"])
        ax.set_yticks(range(3), names)
        ax.set_xscale("log")
        ax.set_xlabel("norm (log scale): certified while the bound stays within the budget")
        return _png(fig)
    return None


def render(ev: dict[str, Any]) -> str:
    """The page for one evidence dict."""
    v = ev["verdict"]["overall"]
    res, method, plan = ev["resolution"], ev["method"], ev["checks_plan"]
    checks = ev["checks"]
    head = {
        "PASS": "PASS: the checks could not tell this model from one retrained without the data.",
        "FAIL": "FAIL: at least one required check shows the data's effect is still there.",
        "INCONCLUSIVE": "INCONCLUSIVE: the checks that ran cannot decide; do not treat this as a pass.",
    }[v]
    if v == "PASS" and plan["mode"] == "guarantee":
        head = "PASS: the model's own guarantee holds (" + (
            "its constituents were retrained without the data)."
            if ev["model"].get("kind") == "sisa"
            else "the removal is certified within its (ε, δ) bound)."
        )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        f"<title>Erasure evidence {_e(ev['request']['id'])}: {v}</title><style>{STYLE}</style></head><body>",
        f"<h1>Erasure evidence for request {_e(ev['request']['id'])}</h1>",
        f"<div class='banner' id='verdict' style='background:{COLORS[v]}'>{_e(head)}</div>",
        f"<p class='muted'>{len([c for c in checks if c['required']])} required checks, rule "
        f"<code>{_e(ev['verdict']['rule'])}</code>; written {_e(ev['request']['received'])}.</p>",
        "<h2>1. What was asked</h2>",
        f"<p>Request <code>{_e(ev['request']['text'])}</code> (received {_e(ev['request']['received'])}).</p>",
        "<h2>2. What it matched</h2>",
        f"<p>Rule <b>{_e(res['rule'])}</b>: {res['n_rows']} of {res['n_train']} training rows. The set is fixed by the "
        f"hash <code>{_e(res['ids_sha256'])}</code> of its row ids (<code>resolved_ids.json</code>); "
        "no row contents are in this document.</p>",
    ]
    if res.get("candidates"):
        parts.append("<p>Rows that resemble the matched ones were listed for review and <b>not</b> deleted:</p><table>")
        parts.append("<tr><th>row id</th><th>similarity</th><th>how found</th><th>decision</th></tr>")
        for c in res["candidates"]:
            parts.append(
                f"<tr><td>{c['id']}</td><td>{c['score']:.3f}</td><td>{_e(c['method'])}</td><td>{_e(c['decision'])}</td></tr>"
            )
        parts.append("</table>")
    params = ", ".join(f"{k}={_fmt(x)}" for k, x in (method.get("params") or {}).items()) or "defaults"
    parts += [
        "<h2>3. What was done and why</h2>",
        f"<p>Method <b>{_e(method['name'])}</b> ({_e(method['class'])}), seed {method['seed']}, "
        f"{method['seconds']:.2f} s. Why: {_e(method['why'])}.</p><p class='muted'>Parameters: {params}</p>",
        f"<p>Checks: <b>{_e(plan['mode'])}</b>. {_e(plan['why'])}.</p>",
    ]
    parts += [f"<p class='muted'>{_e(n)}</p>" for n in plan.get("notes", []) + method.get("notes", [])]
    parts += [
        "<h2>4. What was checked, against what</h2><table>",
        "<tr><th>question</th><th>check</th><th>result</th><th>passes if</th><th>verdict</th></tr>",
    ]
    for c in checks:
        req = "" if c["required"] else " <span class='muted'>(informational)</span>"
        note = f"<br><span class='muted'>{_e(c['note'])}</span>" if c.get("note") else ""
        parts.append(
            f"<tr><td>{_e(c['question'])}{note}</td><td><code>{_e(c['id'])}</code>{req}</td><td>{_fmt(c['value'])}</td>"
            f"<td>{_threshold(c)}</td><td class='v {_e(c['verdict'])}'>{_e(c['verdict'])}</td></tr>"
        )
    parts.append("</table>")
    for title, img in (
        ("Each check's value against models retrained without the rows", _interval_plot(checks)),
        ("Per deleted row: this model's confidence against models that never saw it", _mia_plot(checks)),
        ("The deletion guarantee", _guarantee_plot(ev)),
    ):
        if img:
            parts.append(f"<figure><img alt='{_e(title)}' src='{img}'><figcaption>{_e(title)}</figcaption></figure>")
    if ev.get("comparison"):
        parts.append("<details><summary>All metrics against oracle A, oracle B as the noise floor</summary><table>")
        parts.append("<tr><th>metric</th><th>value</th><th>oracle</th><th>gap</th><th>floor</th></tr>")
        for r in ev["comparison"]:
            parts.append(
                f"<tr><td>{_e(r['metric'])}</td>"
                + "".join(f"<td>{_fmt(r.get(k))}</td>" for k in ("value", "oracle", "gap", "floor"))
                + "</tr>"
            )
        parts.append("</table></details>")
    parts += ["<h2>5. What remains</h2><ul>", *(f"<li>{_e(r)}</li>" for r in ev["residual_risk"]), "</ul>"]
    m = ev["model"]
    raw = json.dumps(ev).replace("</", "<\\/")  # a JSON data block that no string can close early
    parts += [
        "<h2>6. Record</h2><table>",
        f"<tr><th>model before</th><td><code>{_e(m['before']['sha256'])}</code></td></tr>",
        f"<tr><th>model after</th><td><code>{_e(m['after']['sha256'])}</code></td></tr>",
        f"<tr><th>data fingerprint</th><td><code>{_e(ev['data']['fingerprint'])}</code></td></tr>",
        f"<tr><th>previous ledger entry</th><td><code>{_e(ev['previous_entry'])}</code></td></tr>",
        f"<tr><th>software</th><td>{_e(', '.join(f'{k} {x}' for k, x in ev['environment'].items()))}</td></tr>",
        "</table><p>Re-check the record with <code>obliviate ledger verify FOLDER</code>, and a deployed copy "
        "of the model with <code>obliviate verify COPY --evidence FOLDER/evidence.json</code>.</p>",
        "<details><summary>Raw evidence (JSON)</summary>",
        f"<pre>{_e(json.dumps(ev, indent=1))}</pre></details>",
        f"<script type='application/json' id='evidence'>{raw}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
