import numpy as np
import pytest

import obliviate as ob


@pytest.fixture(scope="module")
def small(digits):
    recipe = ob.Recipe.default_for(digits).replace(epochs=10)
    original = ob.train(recipe, digits.train, seed=0, progress=False)
    split = ob.ForgetSplit.random(digits.train, fraction=0.1, seed=0)
    return original, split


def test_neurips23_protocol_ranks_retrain_above_doing_nothing(digits, small):
    original, split = small
    kw = dict(protocol="neurips23", n_models=6, progress=False)
    retrain = ob.evaluate(original, digits, split, method="retrain", **kw)
    nothing = ob.evaluate(original, digits, split, method="none", **kw)
    assert retrain["forget_quality"] > nothing["forget_quality"]
    assert nothing["forget_quality"] == 0  # six identical copies of the original: perfectly separable
    eps = retrain.details["epsilons"]
    assert eps.shape == (len(split),) and np.nanmax(eps) <= 50
    assert retrain.details["unlearned_confidences"].shape == (6, len(split))
    assert 0 <= retrain["neurips23_score"] <= 1.2 and retrain.oracle["retain_acc"] > 0.9


def test_neurips23_protocol_bad_input(digits, small):
    original, split = small
    with pytest.raises(ValueError, match="n_models"):
        ob.evaluate(original, digits, split, method="none", protocol="neurips23", n_models=1)
    bare = ob.models.build("mlp", (1, 8, 8), 10, hidden=[256])
    with pytest.raises(ValueError, match="recipe"):
        ob.evaluate(bare, digits, split, method="none", protocol="neurips23", n_models=2)
