"""Composite scores over accuracies (in [0, 1]) and MIA values of a model and the oracle."""

from __future__ import annotations


def avg_gap(unlearned: dict[str, float], oracle: dict[str, float], mia_key: str = "mia_efficacy") -> float:
    """SalUn's "Avg. Gap" (ℓ1-sparse: "Disparity Ave."), in percentage points (reference §6.2):
    ¼(|UA_u − UA_r| + |RA_u − RA_r| + |TA_u − TA_r| + |MIA_u − MIA_r|), UA = 1 − forget accuracy,
    MIA = MIA-efficacy. Lower is better; 0 = indistinguishable from the oracle on these four."""
    keys = ("forget_acc", "retain_acc", "test_acc", mia_key)
    return 100 * sum(abs(unlearned[k] - oracle[k]) for k in keys) / 4


def tow(unlearned: dict[str, float], oracle: dict[str, float]) -> float:
    """RUM's Tug-of-War (``surgical_plugins/analysis.py``; reference §2.5): the product of
    (1 − |gap|) over forget, retain and test accuracy. In [0, 1], higher is better."""
    out = 1.0
    for k in ("forget_acc", "retain_acc", "test_acc"):
        out *= 1 - abs(unlearned[k] - oracle[k])
    return out


def tow_mia(unlearned: dict[str, float], oracle: dict[str, float], mia_key: str = "mia_efficacy") -> float:
    """ToW with the forget term replaced by (1 − |MIA_u − MIA_r|), MIA = MIA-efficacy in [0, 1]
    (RUM ``analysis_mia.py``)."""
    out = 1 - abs(unlearned[mia_key] - oracle[mia_key])
    for k in ("retain_acc", "test_acc"):
        out *= 1 - abs(unlearned[k] - oracle[k])
    return out


def avg_gap_ma(unlearned: dict[str, float], oracle: dict[str, float]) -> float:
    """Avg.Gap's causal-LM analogue (obliviate's; SalUn's §6.2 form over per-sequence memorization):
    ⅓(|Δ forget MA| + |Δ retain MA| + |Δ test MA|) to the oracle, in points. Forgetting the forget
    set without hurting the retained and unseen sequences is what the oracle does; 0 is ideal."""
    return 100 * sum(abs(unlearned[k] - oracle[k]) for k in ("forget_ma", "retain_ma", "test_ma")) / 3
