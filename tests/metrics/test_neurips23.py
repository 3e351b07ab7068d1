"""NeurIPS 2023 competition forgetting score (reference §4.3-4.4): the vectorised ε equals a plain
loop reference of the released scorer exactly; known answers; φ; input validation."""

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from obliviate.metrics.neurips23 import (
    _bin_points,
    _linspace_counts,
    logit_scaled_confidence,
    neurips23_epsilons,
    neurips23_final_score,
    neurips23_score,
)

# The loop reference lives beside the speed benchmark, which times against it (one copy only).
_spec = importlib.util.spec_from_file_location(
    "_neurips23_reference", Path(__file__).resolve().parents[2] / "benchmarks" / "_neurips23_reference.py"
)
_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reference)
reference_epsilons = _reference.reference_epsilons


def _columns(rng: np.random.Generator, kind: str, m_u: int, m_o: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    normal = rng.normal
    if kind == "shifted":
        return normal(size=(m_u, n)), normal(0.3, 1.2, size=(m_o, n))
    if kind == "ties-0.5":  # many exact ties within and across the samples
        return np.round(normal(size=(m_u, n)) * 2) / 2, np.round(normal(size=(m_o, n)) * 2) / 2
    if kind == "grid-0.01":  # φ on a 0.01 lattice: thresholds land on sample values
        return np.round(normal(size=(m_u, n)) * 100) / 100, np.round(normal(0.1, 1, size=(m_o, n)) * 100) / 100
    if kind == "peaked":  # spread ratios around the 1% degenerate limit
        scale = rng.choice([0.003, 0.008, 0.012, 0.03], size=n)
        return normal(size=(m_u, n)), normal(0.1, 1, size=(m_o, n)) * scale
    if kind == "separable":
        return normal(size=(m_u, n)), normal(6, 1, size=(m_o, n))
    if kind == "phi-extremes":  # φ saturated at the 1e-45 floor, as from very confident models
        return rng.choice([-103.6, 0.0, 103.6], size=(m_u, n)), rng.choice([-103.6, 1.0, 103.6], size=(m_o, n))
    raise ValueError(kind)


@pytest.mark.parametrize("m_u, m_o", [(16, 16), (9, 23)])
@pytest.mark.parametrize("kind", ["shifted", "ties-0.5", "grid-0.01", "peaked", "separable", "phi-extremes"])
def test_vectorised_equals_loop_reference(kind, m_u, m_o):
    u, o = _columns(np.random.default_rng([m_u, *kind.encode()]), kind, m_u, m_o, 6)
    np.testing.assert_array_equal(neurips23_epsilons(u, o), reference_epsilons(u, o))


def test_vectorised_equals_loop_reference_mixed_columns_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    parts = [_columns(rng, kind, 12, 12, 3) for kind in ["shifted", "peaked", "grid-0.01", "separable"]]
    u, o = np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1)
    want = reference_epsilons(u, o)
    np.testing.assert_array_equal(neurips23_epsilons(torch.from_numpy(u), torch.from_numpy(o)), want)
    monkeypatch.setattr("obliviate.metrics.neurips23._CHUNK_ELEMENTS", 1)  # one example per chunk
    np.testing.assert_array_equal(neurips23_epsilons(u, o), want)


def test_linspace_counts_exact_on_and_next_to_grid_points():
    rng = np.random.default_rng(1)
    start = rng.normal(size=(1, 4, 1)) * 50
    stop = start + 4.0
    grids = np.linspace(start[0, :, 0], stop[0, :, 0], 400, axis=-1)
    z = np.sort(
        np.concatenate(
            [
                grids.ravel(),
                np.nextafter(grids.ravel(), np.inf),
                np.nextafter(grids.ravel(), -np.inf),
                rng.uniform(-250, 250, 50),
            ]
        )
    )
    want = np.stack([np.searchsorted(g, z, side="right") for g in grids])
    got = _linspace_counts(z[None, None], start, stop, 400)
    np.testing.assert_array_equal(got[0, :, 1:-1], want)


def test_identical_samples_give_zero_epsilon_and_full_score():
    confs = np.random.default_rng(2).normal(size=(32, 20))
    score, eps = neurips23_score(confs, confs.copy())
    np.testing.assert_array_equal(eps, 0.0)  # every attack has TPR = FPR, so every bound is <= 0
    assert score == 1.0


def test_independent_samples_of_one_distribution_small_n():
    """What the estimator gives for a perfect unlearner: small-count tails in the max over ~160k
    attacks make ε ≈ log(k) for a k:1 count ratio, not 0. Measured F ≈ 0.16-0.21 for N = 16-512."""
    rng = np.random.default_rng(3)
    score, eps = neurips23_score(rng.normal(size=(16, 40)), rng.normal(size=(16, 40)))
    assert np.all((eps > 0) & (eps < 3))
    assert 0.08 < score < 0.35


def test_perfectly_separable_samples_hit_the_cap_and_score_zero():
    rng = np.random.default_rng(4)
    score, eps = neurips23_score(rng.normal(size=(16, 10)), rng.normal(20, 1, size=(16, 10)))
    np.testing.assert_array_equal(eps, 50.0)  # FPR = FNR = 0 -> inf, clipped to the cap
    assert score == 0.0
    assert np.all(neurips23_epsilons(rng.normal(size=(8, 3)), rng.normal(20, 1, size=(8, 3)), cap=7.5) == 7.5)


def test_degenerate_spread_rule():
    rng = np.random.default_rng(5)
    wide = rng.normal(size=(16, 1))
    wide = (wide - wide.min()) / (wide.max() - wide.min())  # range exactly 1
    narrow = 0.5 + np.linspace(-0.5, 0.5, 16)[:, None]  # range 1, inside the wide sample once scaled
    # Overlapping samples, but one is < 1% as spread as the other: ε = cap whatever the attacks say.
    assert neurips23_epsilons(wide, narrow * 0.009)[0] == 50.0
    assert neurips23_epsilons(narrow * 0.009, wide)[0] == 50.0
    assert neurips23_epsilons(wide, narrow * 0.011)[0] < 50.0  # the rule does not fire at 1.1%
    # Both ranges 0: the released ratio is 0/0 = NaN and the rule does not fire either.
    assert neurips23_epsilons(np.zeros((4, 1)), np.ones((4, 1)))[0] == 50.0  # separable -> inf -> cap
    with pytest.warns(RuntimeWarning, match="no usable attack"):
        eps = neurips23_epsilons(np.zeros((4, 1)), np.zeros((4, 1)))  # every attack discarded
    assert np.isnan(eps[0]) and np.isnan(reference_epsilons(np.zeros((4, 1)), np.zeros((4, 1)))[0])


def test_bins_follow_the_released_code():
    eps = np.array([0.0, 0.49, 0.5, 1.2, 6.99, 7.0, 50.0, np.nan])
    # N = 512: 14 bins of width 0.5 up to ceil(ln 511) = 7.
    np.testing.assert_array_equal(_bin_points(eps, 512), [1, 1, 0.5, 0.25, 2.0**-13, 0, 0, 0])
    # N = 64: bins up to ceil(ln 63) = 5; N = 2: ceil(ln 1) = 0, no bins at all.
    np.testing.assert_array_equal(_bin_points(np.array([4.99, 5.0]), 64), [2.0**-9, 0])
    np.testing.assert_array_equal(_bin_points(np.array([0.0]), 2), [0])


def test_score_is_the_mean_of_points_and_uses_the_unlearned_model_count():
    rng = np.random.default_rng(6)
    same = rng.normal(size=(8, 3))
    u = np.concatenate([same, rng.normal(size=(8, 1))], 1)
    o = np.concatenate([same, rng.normal(30, 1, size=(8, 1))], 1)
    score, eps = neurips23_score(u, o)
    np.testing.assert_array_equal(eps, [0, 0, 0, 50])
    assert score == 0.75
    # Equal empirical distributions (the oracle sample is the unlearned one twice) give ε = 0, but
    # the bins come from the unlearned count N: N = 2 leaves no bin (ceil(ln 1) = 0), N = 4 has 4.
    pair = rng.normal(size=(2, 5))
    assert neurips23_score(pair, np.concatenate([pair, pair])) == (0.0, pytest.approx(np.zeros(5)))
    assert neurips23_score(np.concatenate([pair, pair]), pair)[0] == 1.0


def test_final_score():
    assert neurips23_final_score(0.5, 0.9, 0.95, 0.8, 0.85) == pytest.approx(0.5 * 0.9 / 0.95 * 0.8 / 0.85)
    assert neurips23_final_score(0.5, 1.0, 0.9, 1.0, 0.9) > 0.5  # no clipping of the utility ratios
    with pytest.raises(ValueError, match="oracle accuracies"):
        neurips23_final_score(0.5, 0.9, 0.0, 0.8, 0.85)


def test_logit_scaled_confidence_hand_computed():
    # softmax([2, 1, 0]), target 0: log p0 - log(p1 + p2) = 2 - log(e + 1).
    phi = logit_scaled_confidence(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([0]))
    assert phi.dtype == torch.float64
    assert phi.item() == pytest.approx(2 - math.log(math.e + 1), rel=1e-6)
    # target 2: 0 - log(e^2 + e^1)
    phi = logit_scaled_confidence(np.array([[2.0, 1.0, 0.0]]), np.array([2]))
    assert phi.item() == pytest.approx(-math.log(math.exp(2) + math.e), rel=1e-12)


def test_logit_scaled_confidence_batched_over_models():
    logits = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3, 1, 2, 3])
    phi = logit_scaled_confidence(logits, targets)
    assert phi.shape == (3, 5)
    for model in range(3):
        torch.testing.assert_close(phi[model], logit_scaled_confidence(logits[model], targets), rtol=0, atol=0)
    p = torch.softmax(logits.double(), -1)
    p_y = p[:, torch.arange(5), targets]
    torch.testing.assert_close(phi, p_y.log() - (1 - p_y).log(), rtol=1e-5, atol=1e-6)


def test_logit_scaled_confidence_extreme_logits_stay_finite():
    floor = math.log(1e-45)
    logits = torch.tensor([[1000.0, -1000.0], [-1000.0, 1000.0], [3e38, -3e38], [0.0, 0.0]])
    phi = logit_scaled_confidence(logits, torch.tensor([0, 0, 0, 1]))
    assert torch.isfinite(phi).all()
    torch.testing.assert_close(phi, torch.tensor([-floor, floor, -floor, 0.0], dtype=torch.float64))
    assert torch.isfinite(logit_scaled_confidence(logits.half().clamp(-6e4, 6e4), torch.tensor([0, 0, 0, 1]))).all()


@pytest.mark.parametrize(
    "logits, targets, match",
    [
        (torch.zeros(3), torch.tensor([0]), "logits must be"),
        (torch.zeros(2, 3), torch.tensor([0, 1, 2]), "targets must have shape"),
        (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), "integer class labels"),
        (torch.zeros(2, 3), torch.tensor([0, 3]), r"lie in \[0, 3\)"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), "NaN or inf"),
    ],
)
def test_logit_scaled_confidence_bad_input(logits, targets, match):
    with pytest.raises(ValueError, match=match):
        logit_scaled_confidence(logits, targets)


@pytest.mark.parametrize(
    "u, o, match",
    [
        (np.zeros((8, 5)), np.zeros((8, 4)), "same examples, got 5 and 4"),
        (np.zeros(8), np.zeros((8, 1)), r"unlearned_confs must be a 2-D array .* got shape \(8,\)"),
        (np.zeros((8, 1)), np.zeros((8, 1, 1)), "oracle_confs must be a 2-D array"),
        (np.zeros((1, 3)), np.zeros((8, 3)), "at least 2 models"),
        (np.zeros((8, 0)), np.zeros((8, 0)), "at least 2 models and 1 example"),
        (np.full((8, 2), np.nan), np.zeros((8, 2)), "NaN or inf"),
    ],
)
def test_bad_confidence_arrays(u, o, match):
    with pytest.raises(ValueError, match=match):
        neurips23_score(u, o)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # validation fails before any numerical warning
        with pytest.raises(ValueError, match=match):
            neurips23_epsilons(u, o)
