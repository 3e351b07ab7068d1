"""Vectorised ensembles: each member is the model ``train`` would give for its seed (real digits)."""

import logging

import pytest
import torch
from torch import nn

import obliviate as ob
from obliviate.data.datasets import ArrayDataset, subset
from obliviate.train import NonFiniteLoss
from obliviate.train.ensemble import Ensemble, train_ensemble

SEEDS = list(range(8))


@pytest.fixture(scope="module")
def few(digits):
    """256 training examples, for tests of mechanics rather than of learning."""
    return subset(digits.train, torch.arange(256))


def accuracy(logits, ds):
    return (logits.argmax(-1) == ds.y).float().mean().item()


def assert_same_member(member: nn.Module, model: nn.Module, test) -> None:
    """Weights equal up to summation order, and test predictions agree on >= 99% of examples.

    Summation-order differences (bmm vs addmm, and MKL's split across threads) are ~1e-7 after one
    step, but Adam's normalised update turns a sign flip of a near-zero gradient into a step of
    size lr, so after a few hundred steps single weights can differ by ~lr; the weights are
    therefore compared by relative norm (measured: <= 1e-3 on digits, 1e-6 on one thread).
    """
    a, b = member.state_dict(), model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] - b[name]).norm() <= 1e-2 * b[name].norm() + 1e-6, name
    with torch.no_grad():
        agree = (member(test.x).argmax(1) == model(test.x).argmax(1)).float().mean().item()
    assert agree >= 0.99


@pytest.fixture(scope="module")
def mlp_recipe(recipe):
    return recipe.replace(epochs=6)


@pytest.fixture(scope="module")
def mlp_ensemble(digits, mlp_recipe):
    return train_ensemble(mlp_recipe, digits.train, SEEDS, progress=False)


@pytest.fixture(scope="module")
def sequential(digits, mlp_recipe):
    return [ob.train(mlp_recipe, digits.train, seed=s, progress=False) for s in SEEDS]


def test_mlp_members_follow_the_sequential_trajectory(digits, mlp_ensemble, sequential):
    assert len(mlp_ensemble) == len(SEEDS) and mlp_ensemble.seeds == SEEDS
    for k in (0, 3, 7):
        assert_same_member(mlp_ensemble.model(k), sequential[k], digits.test)


def test_mean_accuracy_matches_sequential(digits, mlp_ensemble, sequential):
    ensemble_acc = [accuracy(logits, digits.test) for logits in mlp_ensemble.predict(digits.test)]
    with torch.no_grad():
        sequential_acc = [accuracy(m(digits.test.x), digits.test) for m in sequential]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert mean(ensemble_acc) > 0.9
    assert abs(mean(ensemble_acc) - mean(sequential_acc)) <= 0.01


def test_bf16_members_match_sequential_statistics_not_trajectories(digits, mlp_recipe, sequential):
    fast = train_ensemble(mlp_recipe, digits.train, SEEDS, progress=False, precision="bf16")
    fast_acc = [accuracy(logits, digits.test) for logits in fast.predict(digits.test)]
    with torch.no_grad():
        sequential_acc = [accuracy(m(digits.test.x), digits.test) for m in sequential]
    assert abs(sum(fast_acc) / len(fast_acc) - sum(sequential_acc) / len(sequential_acc)) <= 0.01
    assert fast.params["1.weight"].dtype == torch.float32  # weights and optimiser stay fp32
    assert not torch.equal(fast.model(0).state_dict()["1.weight"], sequential[0].state_dict()["1.weight"])
    with pytest.raises(ValueError, match="precision"):
        train_ensemble(mlp_recipe, digits.train, SEEDS, precision="fp16")


def test_cnn_members_follow_the_sequential_trajectory(digits):
    recipe = ob.Recipe("cnn", (1, 8, 8), 10, {"widths": [8, 16], "fc": 32}, "adam", 1e-3, epochs=2, batch_size=128)
    ensemble = train_ensemble(recipe, digits.train, [0, 1], progress=False)
    for k in range(2):
        assert_same_member(ensemble.model(k), ob.train(recipe, digits.train, seed=k, progress=False), digits.test)


def test_predict_and_model_agree(digits, mlp_ensemble):
    logits = mlp_ensemble.predict(digits.test, batch_size=100)
    assert logits.shape == (len(SEEDS), len(digits.test), 10) and logits.dtype == torch.float32
    member = mlp_ensemble.model(2)
    assert not member.training
    assert member.obliviate_spec["architecture"] == "mlp"
    assert member.obliviate_log.seed == 2
    with torch.no_grad():
        torch.testing.assert_close(member(digits.test.x), logits[2], rtol=1e-5, atol=1e-5)
    assert len(mlp_ensemble.models()) == len(SEEDS)


def test_subsets_train_each_member_on_its_own_examples(digits, mlp_recipe):
    n, k = len(digits.train), 4
    recipe = mlp_recipe.replace(epochs=30)  # small subsets, long enough to fit them
    g = torch.Generator().manual_seed(0)
    subsets = torch.stack([torch.randperm(n, generator=g)[: n // 4] for _ in range(k)])
    ensemble = train_ensemble(recipe, digits.train, range(k), subsets=subsets, progress=False)
    assert torch.equal(ensemble.subsets, subsets)
    solo = ob.train(recipe, subset(digits.train, subsets[1]), seed=1, progress=False)
    assert_same_member(ensemble.model(1), solo, digits.test)

    probs = ensemble.predict(digits.train).softmax(-1)
    confidence = probs.gather(2, digits.train.y.expand(k, -1)[..., None]).squeeze(2)  # [K, N]
    inside = torch.zeros(k, n, dtype=torch.bool).scatter_(1, subsets, True)
    seen = torch.stack([confidence[j, inside[j]].mean() for j in range(k)])
    unseen = torch.stack([confidence[j, ~inside[j]].mean() for j in range(k)])
    assert (unseen < seen).all() and (seen - unseen).mean() > 0.02


def test_chunks_and_reruns_give_the_same_members(few, mlp_recipe):
    recipe = mlp_recipe.replace(epochs=2)
    whole = train_ensemble(recipe, few, [5, 6, 7], progress=False)
    again = train_ensemble(recipe, few, [5, 6, 7], progress=False)
    chunked = train_ensemble(recipe, few, [5, 6, 7], chunk_size=2, progress=False)
    for name, t in whole.params.items():
        assert torch.equal(t, again.params[name]), "not deterministic under the seeds"
        torch.testing.assert_close(t, chunked.params[name], rtol=1e-5, atol=1e-6)


def test_global_rng_is_left_alone(few, mlp_recipe):
    state = torch.random.get_rng_state()
    ensemble = train_ensemble(mlp_recipe.replace(epochs=1), few, [0, 1], progress=False)
    ensemble.model(0)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_save_load_roundtrip(tmp_path, digits, mlp_ensemble):
    mlp_ensemble.save(tmp_path / "ens")
    assert sorted(p.name for p in (tmp_path / "ens").iterdir()) == ["ensemble.safetensors", "manifest.json"]
    loaded = Ensemble.load(tmp_path / "ens")
    assert loaded.seeds == mlp_ensemble.seeds and loaded.recipe == mlp_ensemble.recipe
    assert torch.equal(loaded.history, mlp_ensemble.history)
    assert torch.equal(loaded.predict(digits.test), mlp_ensemble.predict(digits.test))


def test_load_refuses_what_is_not_an_ensemble(tmp_path, digits, mlp_ensemble, original):
    ob.save_model(original, tmp_path / "model")
    with pytest.raises(ValueError, match="Ensemble"):
        Ensemble.load(tmp_path / "model")
    mlp_ensemble.save(tmp_path / "ens")
    torch.save({"x": 1}, tmp_path / "ens" / "ensemble.safetensors")  # a pickle
    with pytest.raises(ValueError, match="safetensors"):
        Ensemble.load(tmp_path / "ens")
    wider = mlp_ensemble.recipe.replace(arch_kwargs={"hidden": [32]})
    mlp_ensemble.save(tmp_path / "ens")
    with pytest.raises(ValueError, match="does not fit"):
        Ensemble.load(tmp_path / "ens", recipe=wider)


def test_batchnorm_falls_back_to_sequential_training(digits, few, caplog):
    recipe = ob.Recipe("resnet18", (1, 8, 8), 10, {"width": 4}, "sgd", 0.05, epochs=1, batch_size=128)
    with caplog.at_level(logging.WARNING, logger="obliviate.train.ensemble"):
        ensemble = train_ensemble(recipe, few, [0, 1], progress=False)
    assert "one after another" in caplog.text and "BatchNorm" in caplog.text
    assert ensemble.buffers and ensemble.history is None
    solo = ob.train(recipe, few, seed=1, progress=False)
    for name, t in solo.state_dict().items():
        assert torch.equal(ensemble.model(1).state_dict()[name], t)
    assert ensemble.predict(digits.test).shape == (2, len(digits.test), 10)


def test_layers_vmap_rejects_fall_back(digits, few, caplog):
    def factory():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10))

    recipe = ob.Recipe(input_shape=(1, 8, 8), epochs=1, factory=factory)
    with caplog.at_level(logging.WARNING, logger="obliviate.train.ensemble"):
        ensemble = train_ensemble(recipe, few, [0, 1], progress=False)
    assert "vmapped training step failed" in caplog.text
    assert len(ensemble) == 2 and ensemble.predict(digits.test).shape == (2, len(digits.test), 10)


def test_non_finite_loss_raises(digits, mlp_recipe):
    x = digits.train.x.clone()
    x[5] = float("nan")
    with pytest.raises(NonFiniteLoss, match="seeds"):
        train_ensemble(mlp_recipe, ArrayDataset(x, digits.train.y), [0, 1], progress=False)


def test_inputs_are_validated(digits, mlp_recipe):
    with pytest.raises(ValueError, match="seeds"):
        train_ensemble(mlp_recipe, digits.train, [])
    with pytest.raises(ValueError, match="shape"):
        train_ensemble(mlp_recipe, digits.train, [0, 1], subsets=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        train_ensemble(mlp_recipe, digits.train, [0], subsets=torch.tensor([[0, len(digits.train)]]))
    with pytest.raises(ValueError, match="classes"):
        train_ensemble(mlp_recipe.replace(num_classes=3), digits.train, [0])
