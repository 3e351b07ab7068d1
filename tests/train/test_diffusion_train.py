"""Training a denoiser: seeded, and it learns (loss drops; a real-data classifier recognises its samples)."""

import functools

import pytest
import torch

import obliviate as ob
from obliviate.evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from obliviate.objectives.diffusion import DiffusionTask
from obliviate.train.diffusion import DiffusionRecipe, train_diffusion

RECIPE = DiffusionRecipe(config="digits-demo", steps=150, overrides={"num_train_timesteps": 100})


@functools.lru_cache(maxsize=1)
def digits():
    return ob.datasets.load("digits")


def state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_training_is_seeded_and_records_the_null_class():
    data = digits()
    small = RECIPE.replace(config="unit-test", overrides={}, steps=3)
    a, b = (train_diffusion(small, data.train, seed=0, progress=False) for _ in range(2))
    c = train_diffusion(small, data.train, seed=1, progress=False)
    assert all(torch.equal(v, state(b)[k]) for k, v in state(a).items())
    assert any(not torch.equal(v, state(c)[k]) for k, v in state(a).items())
    assert bool(a.null_trained) and not a.training
    assert not bool(train_diffusion(small.replace(p_uncond=0.0), data.train, progress=False).null_trained)


def test_bad_recipes_and_data_are_refused():
    data = digits()
    with pytest.raises(ValueError, match="p_uncond"):
        DiffusionRecipe(p_uncond=1.0)
    with pytest.raises(ValueError, match="num_classes=None"):
        train_diffusion(DiffusionRecipe(config="unit-test", overrides={"num_classes": None}), data.train)
    with pytest.raises(ValueError, match="num_classes=5"):
        train_diffusion(DiffusionRecipe(config="unit-test", steps=1), data.train, num_classes=5)


@pytest.mark.slow
def test_the_denoiser_learns():
    data = digits()
    model = train_diffusion(RECIPE, data.train, seed=0, progress=False)
    untrained = train_diffusion(RECIPE.replace(steps=1), data.train, seed=0, progress=False)
    task = DiffusionTask.of(model)
    test_loss = {
        name: float(task.losses(task.predict(m, data.test)[0], None).mean())
        for name, m in [("trained", model), ("untrained", untrained)]
    }
    assert test_loss["trained"] < 0.5 * test_loss["untrained"]
    judge = train_judge(data)
    plan = SamplingPlan(per_class=10, forget_per_class=10, steps=10)
    rep = evaluate_generative(model, data, [0], classifier=judge, plan=plan)
    # conditional samples of the retained classes are recognised far above chance (0.1)
    assert rep["retained_class_acc"] > 0.4
