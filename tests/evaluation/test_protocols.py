"""The NeurIPS 2023 protocol end to end: ε checked example by example against the loop port of the
released scorer, F and the final score recomputed from it, φ and accuracies of ``none`` recomputed
from the original, and retraining scoring where an honest estimator puts it."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.objectives import ClassificationTask

_spec = importlib.util.spec_from_file_location(
    "_neurips23_reference", Path(__file__).resolve().parents[2] / "benchmarks" / "_neurips23_reference.py"
)
_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reference)


@pytest.fixture(scope="module")
def small(digits):
    recipe = ob.Recipe.default_for(digits).replace(epochs=10)
    original = ob.train(recipe, digits.train, seed=0, progress=False)
    split = ob.ForgetSplit.random(digits.train, fraction=0.1, seed=0)
    return original, split


def forget_quality(eps, n_models):
    """F of the released scorer: 2/2^n points for ε in bin n = 1, 2, ... of width 0.5, bins up to
    ceil(ln(N − 1)); NaN and ε beyond score 0."""
    last = math.ceil(math.log(n_models - 1))
    points = [0.5 ** math.floor(e / 0.5) if e < last else 0.0 for e in np.nan_to_num(eps, nan=np.inf)]
    return float(np.mean(points))


def test_neurips23_protocol_scores_are_the_released_scorers(digits, small, monkeypatch):
    original, split = small
    trained = []
    train_ensemble = ob.evaluation.protocols.train_ensemble
    monkeypatch.setattr(
        ob.evaluation.protocols, "train_ensemble", lambda *a, **k: trained.append(1) or train_ensemble(*a, **k)
    )
    kw = {"protocol": "neurips23", "n_models": 6, "progress": False, "cache": {}}
    retrain = ob.evaluate(original, digits, split, method="retrain", **kw)
    nothing = ob.evaluate(original, digits, split, method="none", **kw)
    assert len(trained) == 1  # both methods are scored against the one cached ensemble
    np.testing.assert_array_equal(retrain.details["oracle_confidences"], nothing.details["oracle_confidences"])
    for rep in (retrain, nothing):
        u, o, eps = (rep.details[k] for k in ("unlearned_confidences", "oracle_confidences", "epsilons"))
        assert u.shape == o.shape == (6, len(split)) and eps.shape == (len(split),)
        np.testing.assert_array_equal(eps[:25], _reference.reference_epsilons(u[:, :25], o[:, :25]))
        assert rep["forget_quality"] == pytest.approx(forget_quality(eps, 6), abs=1e-12)
        ratios = (rep["retain_acc"] / rep.oracle["retain_acc"]) * (rep["test_acc"] / rep.oracle["test_acc"])
        assert rep["neurips23_score"] == pytest.approx(rep["forget_quality"] * ratios, rel=1e-12)
    # `none`: six copies of the original; φ = z_y − logsumexp(z_k≠y) and accuracies recomputed here
    task = ClassificationTask(10)
    logits, y = task.predict(original, split.forget_set(digits.train))
    z = logits.double()
    others = z.masked_fill(torch.nn.functional.one_hot(y, 10).bool(), -torch.inf)
    phi = z.gather(1, y[:, None])[:, 0] - others.logsumexp(1)
    np.testing.assert_allclose(nothing.details["unlearned_confidences"], np.tile(phi.numpy(), (6, 1)), rtol=1e-5)
    for view, key in ((split.retain_set(digits.train), "retain_acc"), (digits.test, "test_acc")):
        assert nothing[key] == pytest.approx(ob.metrics.accuracy(*task.predict(original, view)), abs=1e-12)
    assert (nothing.details["epsilons"] == 50).all() and nothing["forget_quality"] == 0  # zero spread: cap
    # retraining is what the oracles are: F near an honest estimator's ceiling (~0.2 at few models), utility 1:1
    assert retrain["forget_quality"] > 0.15 and retrain["neurips23_score"] > 0.15
    assert retrain["retain_acc"] == pytest.approx(retrain.oracle["retain_acc"], abs=0.02)
    assert retrain["test_acc"] == pytest.approx(retrain.oracle["test_acc"], abs=0.03)
    assert retrain.oracle["retain_acc"] > 0.9


def test_neurips23_protocol_bad_input(digits, small):
    original, split = small
    with pytest.raises(ValueError, match="n_models"):
        ob.evaluate(original, digits, split, method="none", protocol="neurips23", n_models=1)
    bare = ob.models.build("mlp", (1, 8, 8), 10, hidden=[256])
    with pytest.raises(ValueError, match="recipe"):
        ob.evaluate(bare, digits, split, method="none", protocol="neurips23", n_models=2)
