"""The NeurIPS 2023 challenge entries kgl-1, kgl-2, kgl-3: behaviour on digits and their pieces."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import same_state, state_of

import obliviate as ob
from obliviate.methods.kgl1 import contrastive_loss, uniform_kl
from obliviate.methods.kgl2 import reinit_layers, reinit_smallest
from obliviate.methods.kgl3 import balanced_weights, first_layer
from obliviate.objectives import ClassificationTask

KGL = ["kgl-1", "kgl-2", "kgl-3"]
TASK = ClassificationTask(10)


def run(original, digits, split, method, seed=0, **kw):
    return ob.unlearn(original, digits.train, split, method=method, seed=seed, progress=False, **kw)


def acc(model, ds):
    return ob.metrics.accuracy(*TASK.predict(model, ds))


@pytest.mark.parametrize("method", KGL)
def test_random_forgetting_keeps_test_accuracy(method, digits, original, random_split):
    res = run(original, digits, random_split, method)
    assert not res.diverged
    assert not same_state(state_of(res.model), state_of(original))
    assert acc(res.model, digits.test) > acc(original, digits.test) - 0.03
    assert [h["epoch"] for h in res.history if "epoch" in h] == list(range(res.params["epochs"]))


@pytest.mark.parametrize("method", KGL)
def test_class_forgetting_removes_the_class(method, digits, original, class_split):
    res = run(original, digits, class_split, method)
    report = ob.evaluate(res.model, digits, class_split)
    assert acc(original, class_split.forget_set(digits.train)) > 0.95
    assert not res.diverged
    assert report["forget_acc"] <= 0.2
    assert report["retain_acc"] > 0.95
    # the class is ~10% of the test set: an oracle loses ~10 points of test accuracy, no more
    assert report["test_acc"] > ob.evaluate(original, digits, class_split)["test_acc"] - 0.15


@pytest.mark.parametrize("method", KGL)
def test_seeded_stochasticity(method, digits, original, random_split):
    a = state_of(run(original, digits, random_split, method, seed=0).model)
    b = state_of(run(original, digits, random_split, method, seed=0).model)
    c = state_of(run(original, digits, random_split, method, seed=1).model)
    assert same_state(a, b)
    assert not same_state(a, c)


# kgl-1 ----------------------------------------------------------------------------------------


def test_uniform_kl_is_the_kl_from_uniform():
    logits = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    uniform = torch.full((5, 10), 0.1)
    expected = F.kl_div(F.log_softmax(logits, 1), uniform, reduction="batchmean")
    assert torch.isclose(uniform_kl(logits), expected)
    assert uniform_kl(torch.full((3, 10), 2.5)).abs() < 1e-6


def test_contrastive_loss_pushes_forget_logits_only():
    g = torch.Generator().manual_seed(0)
    z_f = torch.randn(4, 10, generator=g, requires_grad=True)
    z_r = torch.randn(6, 10, generator=g, requires_grad=True)
    loss = contrastive_loss(z_f, z_r, 1.15)
    loss.backward()
    assert z_r.grad is None and z_f.grad.abs().sum() > 0
    # a softmax over the 6 retain examples: the minimum, log 6, is reached by equal similarities
    assert loss > torch.log(torch.tensor(6.0))
    assert torch.isclose(contrastive_loss(torch.zeros(4, 10), z_r, 1.15), torch.log(torch.tensor(6.0)))


# kgl-2 ----------------------------------------------------------------------------------------


def test_kgl2_targets_convs_or_hidden_linear_layers(original):
    assert reinit_layers(original) == [original[1]]  # Flatten, Linear, ReLU, Linear: not the head
    cnn = ob.models.build("cnn", (1, 28, 28), 10)
    assert reinit_layers(cnn) == [cnn[0], cnn[3]]


def test_kgl2_reinitialises_the_fraction_with_smallest_gradients():
    layer = torch.nn.Linear(20, 30)
    before = layer.weight.detach().clone()
    layer.weight.grad = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    mask = reinit_smallest(layer, 0.3, torch.Generator().manual_seed(2))
    assert int(mask.sum()) == round(0.3 * 600)
    assert torch.equal(layer.weight != before, mask)  # exactly the masked weights moved
    g = layer.weight.grad.abs()
    assert g[mask].max() <= g[~mask].min()


def test_kgl2_run_reinitialises_and_masks_gradients(digits, original, random_split):
    n = original[1].weight.numel()
    default = next(h for h in run(original, digits, random_split, "kgl-2").history if "reinitialised" in h)
    assert default == {"reinit_fraction": 0.7, "reinitialised": round(0.7 * n), "targeted": n}  # MLP default
    res = run(original, digits, random_split, "kgl-2", reinit_fraction=0.4)
    counts = next(h for h in res.history if "reinitialised" in h)
    assert counts == {"reinit_fraction": 0.4, "reinitialised": round(0.4 * n), "targeted": n}
    # the gradient-scaling hooks are gone: the returned model's gradients are plain ones
    fresh = copy.deepcopy(original)
    fresh.load_state_dict(res.model.state_dict())
    x, y = digits.train.x[:64], digits.train.y[:64]
    for m in (res.model, fresh):
        m.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
    assert torch.equal(res.model[1].weight.grad, fresh[1].weight.grad)


def test_kgl2_kept_weights_move_less(digits, original, random_split):
    """With the kept weights' gradients scaled to 0 they stay (up to weight decay) where they were."""
    res = run(original, digits, random_split, "kgl-2", kept_grad_scale=0.0, weight_decay=0.0, momentum=0.0)
    moved = res.model[1].weight != original[1].weight
    counts = next(h for h in res.history if "reinitialised" in h)
    assert int(moved.sum()) == counts["reinitialised"]


# kgl-3 ----------------------------------------------------------------------------------------


def test_kgl3_perturbs_the_first_layer(original):
    assert first_layer(original) is original[1]
    cnn = ob.models.build("cnn", (1, 28, 28), 10)
    assert first_layer(cnn) is cnn[0]
    resnet = ob.models.build("resnet18", (3, 32, 32), 10, width=8)
    assert first_layer(resnet) is resnet.conv1


def test_kgl3_noise_is_relative_to_the_layer_and_only_there(digits, original, random_split):
    res = run(original, digits, random_split, "kgl-3", epochs=1, lr=1e-9, noise=0.5)
    w0, w1 = original[1].weight.detach(), res.model[1].weight.detach()
    ratio = float((w1 - w0).std() / w0.std())
    assert 0.48 < ratio < 0.52
    assert torch.allclose(res.model[3].weight, original[3].weight, atol=1e-6)


def test_kgl3_class_weights_are_balanced():
    w = balanced_weights(torch.tensor([0, 0, 0, 2]))
    assert torch.allclose(w, torch.tensor([4 / 6, 0.0, 2.0]))


def test_kgl3_reads_only_the_retain_set(digits, original, class_split):
    assert ob.methods.get("kgl-3").reads == frozenset({"retain"})
    poisoned = ob.datasets.ArrayDataset(digits.train.x.clone(), digits.train.y.clone())
    poisoned.x[class_split.forget_ids] = float("nan")
    a = ob.unlearn(original, digits.train, class_split, method="kgl-3", progress=False)
    b = ob.unlearn(original, poisoned, class_split, method="kgl-3", progress=False)
    assert same_state(state_of(a.model), state_of(b.model))
