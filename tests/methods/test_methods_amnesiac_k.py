"""The training-time update log, Amnesiac unlearning (subtract / relabel) and CF-k / EU-k."""

import copy
import dataclasses

import pytest
import torch
from conftest import same_state, state_of
from torch import nn

import obliviate as ob
from obliviate.methods.cf_k import parametrised_layers
from obliviate.objectives import ClassificationTask

TASK = ClassificationTask(10)


def acc(model, ds):
    return ob.metrics.accuracy(*TASK.predict(model, ds))


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.fixture(scope="module")
def logged(digits, recipe):
    """An original whose every optimiser step was logged (10 epochs: 220 updates, 17 MB)."""
    return ob.train(recipe.replace(epochs=10), digits.train, seed=0, progress=False, log_updates=True)


def unlearn(model, digits, split, method, **kw):
    return ob.unlearn(model, digits.train, split, method=method, seed=0, progress=False, **kw)


# --- the update log -------------------------------------------------------------------------------


def test_logging_updates_leaves_training_bit_identical_and_sums_to_the_total_change(digits, recipe):
    r = recipe.replace(epochs=3)
    ids = torch.tensor([5, 17, 400, 1000])
    plain = ob.train(r, digits.train, seed=3, progress=False)
    some = ob.train(r, digits.train, seed=3, progress=False, log_updates=ids.tolist())
    every = ob.train(r, digits.train, seed=3, progress=False, log_updates=True)
    assert same_state(state_of(plain), state_of(some)) and same_state(state_of(plain), state_of(every))
    assert ob.training_log(plain).updates is None

    all_log, some_log = ob.training_log(every).updates, ob.training_log(some).updates
    steps = r.epochs * -(-len(digits.train) // r.batch_size)
    assert all_log.deltas.shape == (steps, flat(plain).numel()) and all_log.deltas.dtype == torch.float32
    assert torch.equal(all_log.logged_ids, torch.arange(len(digits.train)))
    # each epoch covers the training set once, in the batches recorded
    assert torch.equal(all_log.batch_ids.sort().values, torch.arange(len(digits.train)).repeat(r.epochs).sort().values)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        init = flat(r.build())
    total = all_log.deltas.double().sum(0)
    assert torch.allclose(total, flat(plain).double() - init.double(), rtol=0, atol=1e-6)

    # the id log holds exactly the steps whose batch held a logged id, with the same updates
    assert torch.equal(some_log.logged_ids, ids)
    hit = all_log.touching(ids)
    assert 0 < int(hit.sum()) <= r.epochs * len(ids)
    assert torch.equal(some_log.deltas, all_log.deltas[hit])
    assert some_log.touching(ids).all()


@pytest.mark.parametrize(
    "bad, message", [([], "empty"), ([0, 5000], "must be in"), ([0.5], "integer ids"), ([[1, 2]], "1-D")]
)
def test_log_updates_is_validated(digits, recipe, bad, message):
    with pytest.raises(ValueError, match=message):
        ob.train(recipe.replace(epochs=1), digits.train, progress=False, log_updates=bad)


def test_update_log_survives_save_and_load(tmp_path, logged, original):
    ob.save_model(logged, tmp_path / "m")
    back, _ = ob.load_model(tmp_path / "m")
    a, b = ob.training_log(logged).updates, ob.training_log(back).updates
    assert all(torch.equal(a.to_state()[k], b.to_state()[k]) for k in a.to_state())
    # a model saved later into the same folder without a log does not inherit the old updates
    ob.save_model(original, tmp_path / "m")
    assert ob.training_log(ob.load_model(tmp_path / "m")[0]).updates is None


# --- amnesiac -------------------------------------------------------------------------------------


def test_amnesiac_without_repair_subtracts_exactly_the_forget_batches(digits, logged, random_split):
    res = unlearn(logged, digits, random_split, "amnesiac", repair_epochs=0)
    log = ob.training_log(logged).updates
    forget = set(random_split.forget_ids.tolist())
    total = torch.zeros(log.deltas.shape[1], dtype=torch.float64)
    n = 0
    for b in range(len(log.deltas)):  # independent of the method's vectorised selection
        if forget & set(log.batch_ids[log.offsets[b] : log.offsets[b + 1]].tolist()):
            total += log.deltas[b].double()
            n += 1
    assert 0 < n < len(log.deltas)
    expected = (flat(logged).double() - total).float()
    assert torch.equal(flat(res.model), expected)
    assert f"subtracted {n} of {len(log.deltas)}" in res.notes[0]
    assert "small forget sets" in res.notes[1]  # a 10% set is in nearly every batch


def test_amnesiac_is_deterministic_and_leaves_its_input_alone(digits, logged, class_split):
    before = state_of(logged)
    a = unlearn(logged, digits, class_split, "amnesiac")
    b = unlearn(logged, digits, class_split, "amnesiac")
    assert same_state(state_of(logged), before) and a.model is not logged
    assert same_state(state_of(a.model), state_of(b.model))
    assert not a.diverged and not a.model.training
    assert a.params["repair_epochs"] == 2 and len(a.history) == 2
    report = ob.evaluate(a.model, digits, class_split)
    assert report["forget_acc"] <= 0.05 and report["retain_acc"] > 0.8  # repaired from near chance


def test_amnesiac_needs_an_update_log_that_covers_the_forget_set(digits, recipe, original, random_split):
    with pytest.raises(ValueError, match=r"log_updates=ids"):
        unlearn(original, digits, random_split, "amnesiac")
    bare = ob.models.build("mlp", (1, 8, 8), 10, hidden=[256])
    with pytest.raises(ValueError, match="no training log"):
        unlearn(bare, digits, random_split, "amnesiac")
    few = ob.train(recipe.replace(epochs=1), digits.train, seed=0, progress=False, log_updates=[1, 2, 3])
    with pytest.raises(ValueError, match="not in log_updates"):
        unlearn(few, digits, random_split, "amnesiac")
    other = copy.deepcopy(few)
    log = ob.training_log(other)
    log.updates = dataclasses.replace(log.updates, deltas=log.updates.deltas[:, :-1])
    with pytest.raises(ValueError, match="another architecture"):
        unlearn(other, digits, ob.ForgetSplit.from_ids(digits.train, [2]), "amnesiac")
    with pytest.raises(ValueError, match="repair_epochs"):
        ob.methods.get("amnesiac")(repair_epochs=-1)


# --- amnesiac-relabel ------------------------------------------------------------------------------


def test_amnesiac_relabel_forgets_a_class(digits, original, class_split):
    res = unlearn(original, digits, class_split, "amnesiac-relabel")
    report = ob.evaluate(res.model, digits, class_split)
    assert acc(original, class_split.forget_set(digits.train)) > 0.95
    assert report["forget_acc"] <= 0.05 and report["forgotten_class_test_acc"] <= 0.1
    assert report["retain_acc"] > 0.95


# --- cf-k / eu-k -----------------------------------------------------------------------------------


def _bn_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def test_layers_are_parametrised_modules_with_their_norm_layer():
    assert [[type(m).__name__ for m in layer] for layer in parametrised_layers(_bn_model())] == [
        ["Linear", "BatchNorm1d"],
        ["Linear"],
    ]
    cnn = ob.models.build("cnn", (1, 8, 8), 10)
    assert [type(layer[0]).__name__ for layer in parametrised_layers(cnn)] == ["Conv2d", "Conv2d", "Linear", "Linear"]


@pytest.mark.parametrize("method", ["cf-k", "eu-k"])
def test_only_the_last_k_layers_change(method, digits, random_split):
    """Frozen layers, BatchNorm statistics included, are bit-identical; the last layer moves."""
    r = ob.Recipe(factory=_bn_model, epochs=3)
    model = ob.train(r, digits.train, seed=0, progress=False)
    res = unlearn(model, digits, random_split, method, k=1, recipe=r)
    before, after = state_of(model), state_of(res.model)
    frozen = [k for k in before if not k.startswith("4.")]
    assert "2.running_mean" in frozen
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert not torch.equal(before["4.weight"], after["4.weight"])
    assert all(p.requires_grad for p in res.model.parameters())  # freezing is undone


def test_cf_k_on_a_cnn_keeps_the_convolutions(digits, class_split):
    r = ob.Recipe("cnn", (1, 8, 8), 10, epochs=3)
    model = ob.train(r, digits.train, seed=0, progress=False)
    res = unlearn(model, digits, class_split, "cf-k", k=2)
    before, after = state_of(model), state_of(res.model)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("0.", "3.")))
    assert not torch.equal(before["7.weight"], after["7.weight"])
    with pytest.raises(ValueError, match="only 4 parametrised layers"):
        unlearn(model, digits, class_split, "cf-k", k=5)


def test_eu_k_reinitialises_the_head_then_forgets_a_class(digits, original, class_split):
    # with a vanishing learning rate the head is the seeded fresh initialisation, not the original's
    barely = unlearn(original, digits, class_split, "eu-k", lr=1e-9, epochs=1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fresh = nn.Linear(256, 10)
    head = barely.model[3].weight
    assert torch.allclose(head, fresh.weight, atol=1e-6) and not torch.allclose(head, original[3].weight, atol=1e-2)

    res = unlearn(original, digits, class_split, "eu-k")
    assert same_state(
        {k: v for k, v in state_of(res.model).items() if k.startswith("1.")},
        {k: v for k, v in state_of(original).items() if k.startswith("1.")},
    )
    report = ob.evaluate(res.model, digits, class_split)
    assert report["forget_acc"] <= 0.02 and report["retain_acc"] > 0.95
