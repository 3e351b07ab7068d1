import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.evaluation.ulira import _leave_one_out_scores, ulira


def _masks(k=40, t=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    trained = torch.rand(k, t, generator=g) < 0.5
    forgotten = trained & (torch.rand(k, t, generator=g) < 0.5)
    return forgotten, ~trained


@pytest.mark.parametrize("offline", [False, True])
def test_likelihood_ratio_separates_shifted_confidences(offline):
    forgotten, never = _masks()
    phi = torch.randn(forgotten.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    phi = phi + 6.0 * forgotten  # still-memorised examples: much higher confidence
    scores, labels = _leave_one_out_scores(phi, forgotten, never, offline)
    attack = ob.metrics.threshold_attack(scores[labels == 1], scores[labels == 0])
    assert attack["auc"] > 0.99


def test_likelihood_ratio_is_chance_when_unlearning_is_perfect():
    forgotten, never = _masks()
    phi = torch.randn(forgotten.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    scores, labels = _leave_one_out_scores(phi, forgotten, never, offline=False)
    attack = ob.metrics.threshold_attack(scores[labels == 1], scores[labels == 0])
    assert abs(attack["auc"] - 0.5) < 0.06
    assert set(np.unique(labels)) == {0.0, 1.0}


def test_ulira_end_to_end_retrain_is_at_chance_and_doing_nothing_is_not(digits):
    """On a 200-example slice of digits an MLP trained 60 epochs memorises its half: the attack
    finds examples the unlearned model still holds (``none``) and is at chance against retraining
    without them, the ideal it is calibrated to."""
    small = digits.subset_train(torch.arange(200))
    recipe = ob.Recipe.default_for(small).replace(epochs=60)
    kw = {"n_shadow": 12, "n_targets": 100, "seed": 0, "progress": False}
    retrain, nothing = ulira(recipe, small, "retrain", **kw), ulira(recipe, small, "none", **kw)
    assert set(retrain) == {"ulira_acc", "ulira_auc", "ulira_tpr@1%fpr", "ulira_tpr@0.1%fpr"}
    assert len(retrain.details["scores"]) == len(retrain.details["labels"]) > 100
    assert abs(retrain["ulira_auc"] - 0.5) < 0.1 and abs(retrain["ulira_acc"] - 0.5) < 0.1
    assert nothing["ulira_auc"] > 0.7 and nothing["ulira_acc"] > 0.62
    assert nothing["ulira_auc"] - retrain["ulira_auc"] > 0.15
    with pytest.raises(ValueError, match="n_shadow"):
        ulira(recipe, small, "none", n_shadow=2)
    tiny = digits.subset_train(torch.arange(40))  # 4 shadows: no target forgotten in 3 of them
    with pytest.raises(ValueError, match="use n_shadow >= 16"):
        ulira(recipe.replace(epochs=2), tiny, "none", n_shadow=4, n_targets=20, progress=False)
