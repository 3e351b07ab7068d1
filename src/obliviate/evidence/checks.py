"""The checks an evidence bundle records, and the rules that turn each into PASS / FAIL / INCONCLUSIVE.

A :class:`Check` holds what it measures (``probe``), the reference it is judged against
(``reference``: oracle values, per-row shadow statistics, the original's utility) and its rule
(``threshold``); :func:`judge` computes a model's value and verdict from those alone, so
``obliviate verify`` re-judges another artifact against the references recorded at forget time
without retraining anything.

Rules (reference/evidence-and-ledger.md §4; thresholds are written into every check):

* ``pred_interval`` (oracle-referenced): R oracles retrained without the rows, mean μ, sd s; PASS
  iff |m − μ| ≤ max(k·s, resolution) with k = t(1 − α/(2m), R − 1)·√(1 + 1/R), a two-sided
  prediction interval for one more oracle, Bonferroni-corrected over the m required interval checks.
  ``resolution`` is one example's worth (1/n) for an accuracy over n rows: a discrete metric cannot
  resolve less, and R oracles that all agree would otherwise leave an interval of width 0 (a choice
  made here). With R < 5 a value outside the noise floor is INCONCLUSIVE, not FAIL.
* ``fisher`` (per-example MIA, offline LiRA): per forget row i, a Gaussian N(μ_i, σ_i) of the
  logit-scaled confidence φ (text: −mean token NLL) over models that never trained on it (the
  oracles, or shadows on halves of the retain set); p_i = 1 − Φ((φ_i − μ_i)/σ_i); Fisher's
  −2 Σ ln p_i ~ χ²(2n); FAIL iff p < 0.01. σ_i is floored at half the pooled sd (LiRA's
  stabilisation with few shadows, as ``evaluation/ulira.py``). Shadows on halves of the data are
  calibrated on never-trained rows instead: p_i is the rank of row i's z-score among theirs.
* ``wilson_tpr`` (population MIA): threshold at 1 % FPR on half of the never-seen rows; TPR on the
  forget rows vs on the other half, Wilson 95 % intervals: PASS iff TPR_f ≤ upper(TPR_h), FAIL iff
  lower(TPR_f) > upper(TPR_h), else INCONCLUSIVE. Required from 50 forget rows on.
* ``extraction`` (text): share of forget rows whose greedy completion is verbatim ≤ the upper
  Wilson bound of that share on never-seen rows.
* ``max_drop`` (utility without oracles): test accuracy at most ``max_drop`` below the original's.
* ``guarantee`` / ``equal``: a recorded fact (exact retrain, SISA shard lists; a hash).
* ``certified_bound``: certified removal's gradient residual ≤ its accumulated bound ≤ the (ε, δ)
  budget σε′/√(2 ln(1.5/δ′)), or a retrain with fresh noise (:mod:`obliviate.evidence.guarantee`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..data.datasets import Data, labels_of
from ..data.splits import ForgetSplit
from ..data.text import TextData
from ..evaluation import evaluate
from ..evaluation.attacks import parse_attack
from ..evaluation.sequences import sequence_scores
from ..metrics.neurips23 import logit_scaled_confidence
from ..objectives import CausalLMTask, ClassificationTask

VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE")
#: significance of the oracle prediction intervals (split over the required interval checks)
ALPHA = 0.05
#: Fisher's combined p below this fails the per-example MIA
FISHER_ALPHA = 0.01
#: population MIA: the false-positive rate the threshold is set at, and the forget-set size from
#: which the check is required
FPR = 0.01
POPULATION_MIN_ROWS = 50
#: oracle-free utility: test accuracy may fall at most this much below the original's
MAX_UTILITY_DROP = 0.03
#: prediction intervals from fewer oracles than this are INCONCLUSIVE outside the noise floor
MIN_ORACLES = 5


@dataclass
class Check:
    """One check of an evidence bundle (``to_dict`` is its JSON form)."""

    id: str
    question: str
    kind: str  # oracle | oracle_free | guarantee | integrity | utility
    required: bool
    probe: dict[str, Any]
    threshold: dict[str, Any]
    reference: dict[str, Any] = field(default_factory=dict)
    value: Any = None
    verdict: str = "NOT RUN"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Check:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _finite(obj: Any) -> Any:
    """JSON-safe: NaN / inf become None (RFC 8785 has no NaN), numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def overall(checks: list[Check]) -> dict[str, Any]:
    """``all_required_pass_v1``: FAIL if a required check fails; PASS if every required check passes
    and at least one of them tests the forgetting itself (not only utility or integrity); else
    INCONCLUSIVE, which is never shown as PASS."""
    required = [c for c in checks if c.required]
    forgetting = [c for c in required if c.kind in ("oracle", "oracle_free", "guarantee")]
    if any(c.verdict == "FAIL" for c in required):
        verdict = "FAIL"
    elif forgetting and all(c.verdict == "PASS" for c in required):
        verdict = "PASS"
    else:
        verdict = "INCONCLUSIVE"
    return {
        "overall": verdict,
        "rule": "all_required_pass_v1",
        "required": len(required),
        "failed": [c.id for c in required if c.verdict == "FAIL"],
        "inconclusive": [c.id for c in required if c.verdict not in ("PASS", "FAIL")],
    }


# ---- measuring ---------------------------------------------------------------------------------------
@dataclass
class Context:
    """What every probe needs: the data, the resolved split, the seed and the device."""

    data: Data
    split: ForgetSplit
    seed: int = 0
    device: torch.device | None = None
    _attacked: dict[tuple[int, str], tuple[nn.Module, ForgetSplit]] = field(default_factory=dict)

    @property
    def text(self) -> bool:
        return isinstance(self.data, TextData)

    @property
    def task(self) -> ClassificationTask | CausalLMTask:
        if isinstance(self.data, TextData):
            return CausalLMTask(self.data.tokenizer)
        return ClassificationTask(self.data.num_classes)

    def attacked(self, model: nn.Module, attack: str | None) -> tuple[nn.Module, ForgetSplit]:
        """``model`` under ``attack`` (the same seed and budget for every model) and the split it is
        measured on; the model itself for no attack. Kept per (model, attack) for this context."""
        if attack is None:
            return model, self.split
        key = (id(model), attack)
        if key not in self._attacked:
            a = parse_attack(attack)
            self._attacked[key] = a.apply(model, self.data, self.split, self.task, seed=self.seed)
        return self._attacked[key]


def metric(model: nn.Module, ctx: Context, name: str, attack: str | None = None) -> float:
    """One catalogue metric of ``model`` (under ``attack``) through ``ob.evaluate``."""
    net, split = ctx.attacked(model, attack)
    return float(evaluate(net, ctx.data, split, metrics=[name], seed=ctx.seed, device=ctx.device)[name])


def phi(model: nn.Module, ctx: Context, rows: str = "forget", attack: str | None = None) -> np.ndarray:
    """Per-row membership statistic, higher = more member-like: the logit-scaled confidence of the
    true label (classifiers) or minus the mean token NLL (text), on the forget rows or the test rows."""
    net, _ = ctx.attacked(model, attack)
    ds = ctx.split.forget_set(ctx.data.train) if rows == "forget" else ctx.data.test
    if ctx.text:
        return -sequence_scores(net, ds, device=ctx.device).nll  # type: ignore[arg-type]
    logits, _ = ClassificationTask(ctx.data.num_classes).predict(net, ds, device=ctx.device)
    return logit_scaled_confidence(logits, labels_of(ds)).numpy()


def extraction_rates(model: nn.Module, ctx: Context, attack: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    net, _ = ctx.attacked(model, attack)
    forget = sequence_scores(net, ctx.split.forget_set(ctx.data.train), device=ctx.device)  # type: ignore[arg-type]
    test = sequence_scores(net, ctx.data.test, device=ctx.device)  # type: ignore[arg-type]
    return forget.extracted.astype(bool), test.extracted.astype(bool)


# ---- statistics ----------------------------------------------------------------------------------------
def interval_factor(n_oracles: int, m: int = 1, alpha: float = ALPHA) -> float:
    """k = t(1 − α/(2m), R − 1)·√(1 + 1/R): R = 2, 3, 5, 8, 16 give 15.6, 5.0, 3.0, 2.5, 2.2 for m = 1."""
    if n_oracles < 2:
        raise ValueError("a prediction interval needs at least 2 oracles")
    return float(stats.t.ppf(1 - alpha / (2 * m), n_oracles - 1) * math.sqrt(1 + 1 / n_oracles))


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_p(values: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Fisher's combined p of the one-sided per-row tests "more member-like than never-trained models"."""
    z = (np.asarray(values, dtype=np.float64) - mu) / sigma
    log_p = stats.norm.logsf(z)
    return float(stats.chi2.sf(-2 * log_p.sum(), 2 * len(z)))


def gaussians(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and sd of ``samples`` [models, rows], sd floored at half the pooled sd."""
    mu = samples.mean(0)
    sd = samples.std(0, ddof=1)
    pooled = float(samples.std(ddof=1))
    return mu, np.maximum(sd, pooled / 2 + 1e-12)


# ---- building checks from references --------------------------------------------------------------------
def interval_check(
    id: str,
    question: str,
    probe: dict[str, Any],
    oracle_values: list[float],
    *,
    m: int,
    resolution: float = 0.0,
    kind: str = "oracle",
    required: bool = True,
) -> Check:
    values = [float(v) for v in oracle_values]
    r = len(values)
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    k = interval_factor(r, m)
    return Check(
        id,
        question,
        kind,
        required,
        probe,
        {
            "rule": "pred_interval",
            "k": k,
            "alpha": ALPHA,
            "m": m,
            "half_width": max(k * sd, resolution),
            "resolution": resolution,
            "noise_floor": abs(values[1] - values[0]),
        },
        {"n_oracles": r, "mean": mean, "sd": sd, "values": values},
    )


def lira_check(
    id: str,
    question: str,
    probe: dict[str, Any],
    samples: np.ndarray,
    kind: str,
    source: str,
    test_samples: np.ndarray | None = None,
) -> Check:
    """A per-example MIA check; with ``test_samples`` (the same models on never-trained rows) the
    per-row p-values are calibrated empirically on those rows (see :func:`judge`)."""
    mu, sigma = gaussians(samples)
    ref: dict[str, Any] = {
        "source": source,
        "n_models": int(samples.shape[0]),
        "mu": mu.tolist(),
        "sigma": sigma.tolist(),
    }
    if test_samples is not None:
        mu_t, sigma_t = gaussians(test_samples)
        ref.update(mu_test=mu_t.tolist(), sigma_test=sigma_t.tolist())
    return Check(id, question, kind, True, probe, {"rule": "fisher", "p_min": FISHER_ALPHA}, ref)


def judge(check: Check, model: nn.Module, ctx: Context) -> Check:
    """Measure ``model`` as ``check.probe`` says and set ``check.value`` and ``check.verdict`` by its rule."""
    rule, p, t, ref = check.threshold["rule"], check.probe, check.threshold, check.reference
    attack = p.get("attack")
    if rule == "pred_interval":
        v = metric(model, ctx, p["metric"], attack)
        gap = abs(v - ref["mean"])
        if gap <= t["half_width"]:
            verdict = "PASS"
        elif ref["n_oracles"] < MIN_ORACLES:
            verdict = "PASS" if gap <= max(t["noise_floor"], t["resolution"]) else "INCONCLUSIVE"
        else:
            verdict = "FAIL"
        check.value, check.verdict = v, verdict
    elif rule == "fisher":
        values = phi(model, ctx, "forget", attack)
        if "mu_test" in ref:  # shadows on part of the data: calibrate z on never-trained rows
            z = (values - np.asarray(ref["mu"])) / np.asarray(ref["sigma"])
            z_null = (phi(model, ctx, "test", attack) - np.asarray(ref["mu_test"])) / np.asarray(ref["sigma_test"])
            p_rows = (1 + (z_null[None, :] >= z[:, None]).sum(1)) / (1 + len(z_null))
            pv = float(stats.chi2.sf(-2 * np.log(p_rows).sum(), 2 * len(p_rows)))
        else:
            pv = fisher_p(values, np.asarray(ref["mu"]), np.asarray(ref["sigma"]))
        check.value = {"fisher_p": pv, "n": len(values), "phi": values.tolist()}
        check.verdict = "PASS" if pv >= t["p_min"] else "FAIL"
    elif rule == "wilson_tpr":
        forget, test = phi(model, ctx, "forget", attack), phi(model, ctx, "test", attack)
        order = np.random.default_rng(ctx.seed).permutation(len(test))
        calib, held = test[order[: len(test) // 2]], test[order[len(test) // 2 :]]
        thr = float(np.quantile(calib, 1 - t["fpr"]))
        kf, kh = int((forget > thr).sum()), int((held > thr).sum())
        lo_f, _ = wilson(kf, len(forget))
        _, up_h = wilson(kh, len(held))
        tpr_f = kf / len(forget)
        check.value = {
            "tpr_forget": tpr_f,
            "tpr_heldout": kh / len(held),
            "n_forget": len(forget),
            "n_heldout": len(held),
        }
        check.verdict = "PASS" if tpr_f <= up_h else "FAIL" if lo_f > up_h else "INCONCLUSIVE"
        check.reference = {**ref, "threshold": thr, "heldout_upper": up_h, "forget_lower": lo_f}
    elif rule == "extraction":
        f, te = extraction_rates(model, ctx, attack)
        _, up = wilson(int(te.sum()), len(te))
        check.value = {"rate_forget": float(f.mean()), "rate_test": float(te.mean()), "test_upper": up}
        check.verdict = "PASS" if f.mean() <= up else "FAIL"
    elif rule == "max_drop":
        v = metric(model, ctx, p["metric"], attack)
        check.value = v
        check.verdict = "PASS" if v >= ref["original"] - t["max_drop"] else "FAIL"
    elif rule == "certified_bound":
        check.verdict = certified_verdict(check.value, t)
    elif rule in ("guarantee", "equal"):
        check.verdict = "PASS" if check.value in (True, ref.get("expected", True)) else "FAIL"
    else:
        raise ValueError(f"check {check.id!r} has an unknown rule {rule!r}")
    return check


def forget_metric(ctx: Context) -> str:
    return "forget_ma" if ctx.text else "forget_acc"


def utility_metric(ctx: Context) -> str:
    return "test_ma" if ctx.text else "test_acc"


def oracle_checks(oracles: list[nn.Module], ctx: Context, attacks: list[str]) -> list[Check]:
    """Checks referenced to R retrained oracles: the forget metric and test utility in the prediction
    interval (also under each attack), and the per-example MIA with the oracles as never-trained models."""
    fm, um = forget_metric(ctx), utility_metric(ctx)
    n_f, n_test = len(ctx.split), len(ctx.data.test)
    res_f = 0.0 if ctx.text else 1 / n_f
    res_u = 0.0 if ctx.text else 1 / n_test
    plan: list[tuple[str, str, dict[str, Any], float, str]] = [
        (
            fm,
            "Does the model treat the deleted rows as a model retrained without them does?",
            {"metric": fm},
            res_f,
            "oracle",
        ),
        (um, "Is the model still as useful as one retrained without the rows?", {"metric": um}, res_u, "utility"),
    ]
    for a in attacks:
        plan.append(
            (
                f"{a}/{fm}",
                f"After the {a} attack, does the model still treat the deleted rows as a retrained one does?",
                {"metric": fm, "attack": a},
                res_f,
                "oracle",
            )
        )
    m = len(plan)
    checks = [
        interval_check(
            cid,
            q,
            probe,
            [metric(o, ctx, probe["metric"], probe.get("attack")) for o in oracles],
            m=m,
            resolution=res,
            kind=kind,
        )
        for cid, q, probe, res, kind in plan
    ]
    samples = np.stack([phi(o, ctx) for o in oracles])
    checks.insert(
        1,
        lira_check(
            "mia_lira_out",
            "Can a per-example membership attack tell the deleted rows were trained on?",
            {"stat": "phi"},
            samples,
            "oracle",
            f"{len(oracles)} oracles retrained without the rows",
        ),
    )
    return checks


def shadow_checks(shadows: list[nn.Module], ctx: Context, attacks: list[str]) -> list[Check]:
    """Per-example MIA with shadows trained on halves of the retain set (never on the forget rows),
    on the model and on its quantized copies. Shadows on half the data are less confident on unseen
    rows than a model trained on all of it, so each row's z-score is turned into a p-value by its rank
    among the z-scores of never-trained test rows (same shadows, same model), which share that offset."""
    samples = np.stack([phi(s, ctx) for s in shadows])
    test_samples = np.stack([phi(s, ctx, "test") for s in shadows])
    out = [
        lira_check(
            "mia_lira_out",
            "Can a per-example membership attack tell the deleted rows were trained on?",
            {"stat": "phi"},
            samples,
            "oracle_free",
            f"{len(shadows)} shadow models on random halves of the retained rows",
            test_samples,
        )
    ]
    for a in attacks:
        if a.startswith("quantize"):
            c = lira_check(
                f"{a}/mia_lira_out",
                f"After {a}, can the attack tell the deleted rows were trained on?",
                {"stat": "phi", "attack": a},
                samples,
                "oracle_free",
                f"{len(shadows)} shadow models on random halves of the retained rows (not quantized)",
                test_samples,
            )
            out.append(c)
    return out


def population_checks(ctx: Context, attacks: list[str]) -> list[Check]:
    """Oracle-free checks against never-seen rows: the population MIA (and, for text, extraction)."""
    required = len(ctx.split) >= POPULATION_MIN_ROWS
    out = []
    for a in [None, *(x for x in attacks if x.startswith("quantize"))]:
        tag = "" if a is None else f"{a}/"
        c = Check(
            f"{tag}mia_population",
            "Are the deleted rows flagged as members more often than rows never trained on?"
            + ("" if a is None else f" (after {a})"),
            "oracle_free",
            required,
            {"stat": "phi", **({"attack": a} if a else {})},
            {"rule": "wilson_tpr", "fpr": FPR},
            {"heldout": "the never-trained test rows, half calibrate the threshold"},
        )
        if not required:
            c.note = f"informational: {len(ctx.split)} rows, required from {POPULATION_MIN_ROWS}"
        out.append(c)
        if ctx.text:
            out.append(
                Check(
                    f"{tag}extraction",
                    "Does greedy decoding reproduce the deleted rows more often than never-trained rows?"
                    + ("" if a is None else f" (after {a})"),
                    "oracle_free",
                    True,
                    {"stat": "extraction", **({"attack": a} if a else {})},
                    {"rule": "extraction"},
                    {"heldout": "the never-trained test rows"},
                )
            )
    return out


def utility_check(original: nn.Module, ctx: Context) -> Check:
    um = utility_metric(ctx)
    return Check(
        um,
        "Is the model still about as useful as before?",
        "utility",
        True,
        {"metric": um},
        {"rule": "max_drop", "max_drop": MAX_UTILITY_DROP},
        {"original": metric(original, ctx, um)},
    )


def certified_verdict(value: dict[str, Any], threshold: dict[str, Any]) -> str:
    """PASS iff the model was retrained with fresh noise (exact), or the gradient residual is within the
    accumulated bound and that bound within the budget."""
    if value.get("retrained"):
        return "PASS"
    ok = value["gradient_residual"] <= value["accumulated_bound"] * (1 + 1e-9) + 1e-12
    return "PASS" if ok and value["accumulated_bound"] <= threshold["budget"] else "FAIL"
