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


def test_ob_train_trains_a_denoiser_recipe_that_retrain_and_load_model_rebuild(tmp_path):
    """A Recipe with architecture "denoiser" is what bench grids train: ob.train returns the same
    denoiser as train_diffusion of the equivalent DiffusionRecipe, with an architecture spec (so a
    saved checkpoint reloads) and a training log (so retrain finds the recipe: the oracle)."""
    from obliviate.models.store import load_model, save_model
    from obliviate.train.diffusion import diffusion_recipe

    data = digits()
    recipe = ob.Recipe.default_for(data).replace(
        architecture="denoiser", arch_kwargs={"config": "unit-test"}, steps=3, batch_size=32, lr=2e-3
    )
    model = ob.train(recipe, data.train, seed=0)
    same = train_diffusion(
        DiffusionRecipe(config="unit-test", steps=3, batch_size=32, lr=2e-3), data.train, seed=0, progress=False
    )
    assert all(torch.equal(v, state(same)[k]) for k, v in state(model).items())
    assert diffusion_recipe(recipe).final_lr == 0.1  # cosine decays to 0.1·lr, DiffusionRecipe's default
    save_model(model, tmp_path / "m")
    loaded, _ = load_model(tmp_path / "m")
    assert all(torch.equal(v, state(loaded)[k]) for k, v in state(model).items()) and bool(loaded.null_trained)
    split = ob.ForgetSplit.by_class(data.train, [3])
    oracle = ob.unlearn(model, data.train, split, method="retrain", seed=0)  # recipe read from the training log
    direct = ob.train(recipe, split.retain_set(data.train), seed=0)
    assert all(torch.equal(v, state(direct)[k]) for k, v in state(oracle.model).items())
    assert oracle.model.num_classes == 10  # the forgotten class keeps its (untrained) embedding row


def test_a_denoiser_recipe_refuses_what_it_cannot_honour():
    data = digits()
    base = ob.Recipe.default_for(data).replace(architecture="denoiser", arch_kwargs={"config": "unit-test"}, steps=1)
    for bad, match in [
        (base.replace(steps=None), "counts optimiser steps"),
        (base.replace(optimizer="sgd"), "Adam without weight decay"),
        (base.replace(schedule="step"), "constant or cosine"),
    ]:
        with pytest.raises(ValueError, match=match):
            ob.train(bad, data.train)
    with pytest.raises(ValueError, match="log_updates"):
        ob.train(base, data.train, log_updates=True)


def test_fashion_mnist_loads_average_pooled():
    try:
        full = ob.datasets.load("fashion-mnist")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    small = ob.datasets.load("fashion-mnist", size=14)
    assert small.input_shape == (1, 14, 14) and len(small.train) == len(full.train)
    pooled = torch.nn.functional.avg_pool2d(full.train.x[:20], 2)
    assert torch.allclose(small.train.x[:20], pooled, atol=1e-6)
    with pytest.raises(ValueError, match="size must divide 28"):
        ob.datasets.load("fashion-mnist", size=10)
