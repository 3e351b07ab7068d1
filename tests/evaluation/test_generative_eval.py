"""evaluate_generative: one Report with the oracle, the gap and oracle B's noise floor."""

import functools

import pytest

import obliviate as ob
from obliviate.evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from obliviate.metrics import Modality
from obliviate.train.diffusion import DiffusionRecipe, train_diffusion

PLAN = SamplingPlan(per_class=4, forget_per_class=6, steps=3)


@functools.lru_cache(maxsize=1)
def setup():
    data = ob.datasets.load("digits")
    retain = ob.ForgetSplit.by_class(data.train, [3]).retain_set(data.train)
    recipe = DiffusionRecipe(config="unit-test", steps=5)
    model = train_diffusion(recipe, data.train, seed=0, progress=False)
    oracles = [train_diffusion(recipe, retain, seed=s, num_classes=10, progress=False) for s in (0, 1)]
    return data, model, oracles, train_judge(data, epochs=5)


def test_report_has_oracle_gap_and_floor():
    data, model, oracles, judge = setup()
    cache: dict = {}
    rep = evaluate_generative(
        model, data, [3], classifier=judge, oracle=oracles, plan=PLAN, seconds=2.0, retrain_seconds=8.0, cache=cache
    )
    assert rep.modality is Modality.DIFFUSION
    for name in ("forget_class_rate", "retained_class_acc", "fd_retained", "fd_forget"):
        assert name in rep.oracle and name in rep.floor
        assert rep.gap(name) == pytest.approx(abs(rep[name] - rep.oracle[name]))
    for name in ("fd_oracle_retained", "fd_oracle_forget", "tv_forget_labels"):
        assert rep[name] >= 0 and name in rep.floor and name not in rep.oracle
    assert rep["cost_ratio"] == 0.25
    assert len(rep.details["images"]) == 9 * 4 + 6 and set(rep.details["class_fd"]) == set(range(10))
    # the oracle against itself: every pair distance is 0 (paired noise, same model)
    self_rep = evaluate_generative(oracles[0], data, [3], classifier=judge, oracle=oracles[:1], plan=PLAN, cache=cache)
    assert self_rep["fd_oracle_retained"] == pytest.approx(0, abs=1e-6) and self_rep["tv_forget_labels"] == 0
    assert self_rep.gap("forget_class_rate") == 0
    frame = rep.to_frame().set_index("metric")
    assert frame.loc["fd_oracle_forget", "direction"] == "lower"


def test_bad_requests_are_refused():
    data, model, _, judge = setup()
    with pytest.raises(ValueError, match="not in the data"):
        evaluate_generative(model, data, [12], classifier=judge, plan=PLAN)
    with pytest.raises(ValueError, match="forget between 1 and 9"):
        evaluate_generative(model, data, list(range(10)), classifier=judge, plan=PLAN)
    with pytest.raises(ValueError, match="guidance scale must be > 0"):
        SamplingPlan(guidance=-1.0)
