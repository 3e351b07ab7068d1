"""Pure generative metrics: the Fréchet distance against its closed forms and scipy's sqrtm form."""

import numpy as np
import pytest
from scipy import linalg

from obliviate.metrics import METRICS, Modality
from obliviate.metrics.generative import (
    GenerativeOutputs,
    class_rate,
    forget_class_rate,
    forget_label_tv,
    frechet_distance,
    label_histogram,
    per_class_accuracy,
    retained_class_accuracy,
    total_variation,
    wilson_interval,
)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # equal covariances: FD = ‖Δμ‖²
    assert frechet_distance(a, a + [1.0, 2.0, 0.0]) == pytest.approx(5.0, abs=1e-6)
    # 1-d Gaussians: FD = (μ1 − μ2)² + (σ1 − σ2)²
    x, y = rng.normal(0, 1, (20000, 1)), rng.normal(3, 2, (20000, 1))
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_matches_pytorch_fids_sqrtm_form():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8)) + 0.5
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb) - 2 * np.trace(linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_frechet_distance_needs_matching_features():
    with pytest.raises(ValueError, match="same d"):
        frechet_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 2)), np.zeros((4, 2)))


def test_rates_histograms_and_intervals():
    cond = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 2, 1, 1, 0, 2])
    assert class_rate(pred, cond, 0) == 0.25
    assert per_class_accuracy(pred, cond, [1, 2]) == {1: 1.0, 2: 0.5}
    assert np.allclose(label_histogram(pred[cond == 0], 3), [0.25, 0.5, 0.25])
    assert total_variation([1, 0, 0], [0, 1, 0]) == 1.0 and total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0
    lo, hi = wilson_interval(5, 100)
    assert lo < 0.05 < hi and 0.02 < lo and hi < 0.12
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_generative_outputs_and_catalogue_entries():
    rng = np.random.default_rng(0)
    cond = np.repeat([0, 1, 2], 10)
    pred = np.where(cond == 0, 1, cond)  # forgotten class 0 always drawn as a 1
    ref = {c: rng.normal(size=(10, 2)) for c in range(3)}
    o = GenerativeOutputs(cond, pred, rng.normal(size=(30, 2)), ref, (0,), 3)
    assert forget_class_rate(o) == 0.0 and retained_class_accuracy(o) == 1.0 and o.retained == [1, 2]
    spread = GenerativeOutputs(cond, np.where(cond == 0, np.arange(30) % 3, cond), o.features, ref, (0,), 3)
    assert forget_label_tv(o, spread) == pytest.approx(0.7)  # all on 1 vs 4/3/3 on 0/1/2: ½(0.4 + 0.7 + 0.3)
    rows = [m for m in METRICS.values() if Modality.DIFFUSION in m.modalities]
    assert {m.name for m in rows} >= {"forget_class_rate", "retained_class_acc", "fd_retained", "fd_oracle_forget"}
    assert all(m.kind in ("model", "pair") for m in rows)
