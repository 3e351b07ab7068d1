"""ESD for a class-conditional denoiser: conformance, bad input, and that it forgets."""

import functools

import pytest
import torch

import obliviate as ob
from obliviate.evaluation.generative import SamplingPlan, evaluate_generative, train_judge
from obliviate.testing import _denoiser, check_method
from obliviate.train.diffusion import DiffusionRecipe, train_diffusion


@functools.lru_cache(maxsize=1)
def digits():
    return ob.datasets.load("digits")


def test_esd_conforms():
    assert "esd" in ob.methods.available("diffusion")
    assert set(check_method("esd", params={"steps": 4})) >= {"untouched", "deterministic", "reads", "recorded"}


def test_bad_input_is_refused_before_any_work():
    data = digits()
    model = _denoiser()
    split = ob.ForgetSplit.by_class(data.train, [3])
    with pytest.raises(ValueError, match="eta must be > 0"):
        ob.unlearn(model, data.train, split, method="esd", eta=0)
    with pytest.raises(ValueError, match="whole classes"):
        ob.unlearn(model, data.train, ob.ForgetSplit.random(data.train, 0.1), method="esd", steps=1)
    no_null = train_diffusion(DiffusionRecipe(config="unit-test", steps=1, p_uncond=0.0), data.train, progress=False)
    with pytest.raises(ValueError, match="trained without it"):
        ob.unlearn(no_null, data.train, split, method="esd", steps=1)
    with pytest.raises(ValueError, match="no training examples"):
        ob.ForgetSplit.by_class(data.train, [11])
    with pytest.raises(ValueError):  # forgetting every class leaves nothing to retain
        ob.ForgetSplit.by_class(data.train, range(10))
    with pytest.raises(ValueError, match="written for"):  # a classifier is not a diffusion model
        ob.unlearn(ob.train(ob.Recipe.default_for(data).replace(epochs=1), data.train), data.train, split, "esd")


def test_class_embedding_only_leaves_every_other_class_bit_identical():
    data = digits()
    model = _denoiser()
    split = ob.ForgetSplit.by_class(data.train, [3])
    out = ob.unlearn(model, data.train, split, method="esd", steps=3, params="class", alpha=0.0).model
    before, after = model.state_dict(), out.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["unet.class_embedding.weight"]
    rows = (before[changed[0]] != after[changed[0]]).any(1)
    assert rows.nonzero().flatten().tolist() == [3]


@pytest.mark.slow
def test_esd_forgets_the_class_and_keeps_the_rest():
    """On a digits denoiser (T = 100, 150 steps): the forget-class rate falls to near the oracle's
    while the retained classes' conditional accuracy stays within 10 points of the original's."""
    data = digits()
    recipe = DiffusionRecipe(config="digits-demo", steps=150, overrides={"num_train_timesteps": 100})
    original = train_diffusion(recipe, data.train, seed=0, progress=False)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    split = ob.ForgetSplit.by_class(data.train, [0])
    result = ob.unlearn(original, data.train, split, method="esd", seed=0, steps=30)
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in before.items())  # caller's model untouched
    again = ob.unlearn(original, data.train, split, method="esd", seed=0, steps=30)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in result.model.state_dict().items())
    plan = SamplingPlan(per_class=10, forget_per_class=30, steps=10)
    judge = train_judge(data)
    orig = evaluate_generative(original, data, [0], classifier=judge, plan=plan)
    esd = evaluate_generative(result.model, data, [0], classifier=judge, plan=plan)
    assert orig["forget_class_rate"] > 0.5
    assert esd["forget_class_rate"] < 0.2
    assert esd["retained_class_acc"] > orig["retained_class_acc"] - 0.10


def test_esd_moves_the_forgotten_label_toward_the_negatively_guided_target():
    data = digits()
    model = _denoiser()
    split = ob.ForgetSplit.by_class(data.train, [3])
    out = ob.unlearn(model, data.train, split, method="esd", steps=20, alpha=0.0).model
    g = torch.Generator().manual_seed(1)
    x0 = data.train.x[data.train.y == 3][:64] * 2 - 1
    t, eps = torch.randint(0, 100, (64,), generator=g), torch.randn(x0.shape, generator=g)
    f, null = torch.full((64,), 3), torch.full((64,), 10)
    with torch.no_grad():
        x_t = model.noisy(x0, t, eps)
        cond, uncond = model(x_t, t, f), model(x_t, t, null)
        target = uncond - 1.0 * (cond - uncond)  # η = 1

        def err(m):
            return float((m(x_t, t, f) - target).pow(2).mean())

        assert err(out) < 0.5 * err(model)
