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


def test_ulira_end_to_end_on_digits(digits):
    recipe = ob.Recipe.default_for(digits).replace(epochs=5)
    report = ulira(recipe, digits, "neggrad+", n_shadow=8, n_targets=40, progress=False, epochs=1)
    assert set(report) == {"ulira_acc", "ulira_auc", "ulira_tpr@1%fpr", "ulira_tpr@0.1%fpr"}
    assert 0 <= report["ulira_acc"] <= 1 and 0 <= report["ulira_auc"] <= 1
    assert len(report.details["scores"]) == len(report.details["labels"]) > 0
    with pytest.raises(ValueError, match="n_shadow"):
        ulira(recipe, digits, "none", n_shadow=2)
