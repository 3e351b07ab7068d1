"""evaluate_generative: one Report with the oracle, the gap and oracle B's noise floor."""

import functools
from dataclasses import replace

import pytest
import torch

import obliviate as ob
from obliviate.evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from obliviate.metrics import Modality
from obliviate.metrics.catalogue import available
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


def test_ob_evaluate_dispatches_a_denoiser_to_the_generative_report():
    """ob.evaluate on a denoiser: the diffusion rows of the catalogue, judged against oracle A with B's
    floor, equal to evaluate_generative's with the same judge and plan (the sampling seed is ob.evaluate's)."""
    data, model, oracles, _ = setup()
    split = ob.ForgetSplit.by_class(data.train, [3])
    cache: dict = {}
    sampling = {"per_class": 4, "forget_per_class": 6, "steps": 3}
    rep = ob.evaluate(model, data, split, oracle=oracles, sampling=sampling, seed=2, cache=cache)
    assert rep.modality is Modality.DIFFUSION
    assert set(available(Modality.DIFFUSION)) <= set(rep.values) and "forget_acc" not in rep.values
    assert set(rep.floor) == set(available(Modality.DIFFUSION))
    judge = cache[("diffusion-judge", id(data))][1]  # one judge per dataset, kept in the cache
    direct = evaluate_generative(model, data, [3], classifier=judge, oracle=oracles, plan=replace(PLAN, seed=2))
    assert rep.values == direct.values and rep.oracle == direct.oracle and rep.floor == direct.floor
    other_seed = ob.evaluate(model, data, split, oracle=oracles, sampling=sampling, seed=3, cache=cache)
    assert not torch.equal(other_seed.details["images"], rep.details["images"])  # the noise follows the seed
    # a subset of rows, and the oracles' cost as the retraining reference
    result = ob.methods.UnlearningResult(model, "none", {}, 1.0, 0, split.hash)
    timed = [ob.methods.UnlearningResult(o, "retrain", {}, 4.0, s, split.hash) for o, s in zip(oracles, (0, 1))]
    small = ob.evaluate(
        result, data, split, oracle=timed, sampling=sampling, metrics=["forget_class_rate"], cache=cache
    )
    assert set(small.values) == {"forget_class_rate", "seconds", "cost_ratio"} and small["cost_ratio"] == 0.25


def test_ob_evaluate_refuses_what_a_denoiser_cannot_be_judged_on():
    data, model, oracles, _ = setup()
    split = ob.ForgetSplit.by_class(data.train, [3])
    with pytest.raises(ValueError, match="whole classes"):
        ob.evaluate(model, data, ob.ForgetSplit.random(data.train, 0.1), oracle=oracles)
    with pytest.raises(ValueError, match="not defined for diffusion"):
        ob.evaluate(model, data, split, oracle=oracles, attacks=["quantize-int8"])
    with pytest.raises(ValueError, match="unknown metrics"):
        ob.evaluate(model, data, split, oracle=oracles, metrics=["forget_acc"])
    with pytest.raises(ValueError, match="unknown sampling fields"):
        ob.evaluate(model, data, split, oracle=oracles, sampling={"eta": 1})
    with pytest.raises(ValueError, match="guidance scale must be > 0"):
        ob.evaluate(model, data, split, oracle=oracles, sampling={"guidance": 0})
    classifier = ob.train(ob.Recipe.default_for(data).replace(epochs=1), data.train)
    with pytest.raises(ValueError, match="sampling= is how a diffusion model"):
        ob.evaluate(classifier, data, split, sampling={"steps": 3})
