"""SSD, Bad-Teacher, Boundary Shrink and Boundary Expand on the digits MLP (a few seconds)."""

import pytest
import torch
from conftest import same_state, state_of
from torch import nn

import obliviate as ob
from obliviate.methods.bad_teacher import random_init_copy
from obliviate.methods.boundary_expand import last_linear
from obliviate.objectives import ClassificationTask

TASK = ClassificationTask(10)
NEW = ["ssd", "bad-teacher", "boundary-shrink", "boundary-expand"]


def run(original, digits, split, method, **kw):
    return ob.unlearn(original, digits.train, split, method=method, seed=0, progress=False, **kw)


def acc(model, ds):
    return ob.metrics.accuracy(*TASK.predict(model, ds))


def report(model, digits, split):
    return ob.evaluate(model, digits, split, metrics=["forget_acc", "retain_acc", "test_acc"])


def entropy(model, ds):
    p = TASK.predict(model, ds)[0].softmax(-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())


@pytest.fixture(scope="module")
def before(digits, original, class_split):
    return report(original, digits, class_split)


def test_registered_with_search_spaces_and_reads():
    assert set(NEW) <= set(ob.methods.available())
    for name in NEW:
        cls = ob.methods.get(name)
        assert cls.search_space and all(isinstance(v, tuple) and v for v in cls.search_space.values())
        assert set(cls.search_space) <= set(cls().param_dict())
    assert set(ob.methods.get("ssd").search_space) == {"alpha", "lambda_"}
    assert ob.methods.get("boundary-shrink").reads == ob.methods.get("boundary-expand").reads == {"forget"}


def test_ssd_only_shrinks_weights(digits, original, class_split):
    res = run(original, digits, class_split, "ssd")
    old, new = state_of(original), state_of(res.model)
    smaller = 0
    for name, o in old.items():
        u = new[name]
        assert (u.abs() <= o.abs()).all(), f"{name} grew"
        assert (u * o >= 0).all(), f"{name} changed sign"
        smaller += int((u.abs() < o.abs()).sum())
    assert smaller > 0
    assert 0 < res.history[0]["dampened_fraction"] < 0.5


def test_ssd_with_a_huge_alpha_changes_nothing(digits, original, class_split):
    res = run(original, digits, class_split, "ssd", alpha=1e12)
    assert same_state(state_of(res.model), state_of(original))


def test_ssd_forgets_a_class_and_keeps_the_others(digits, original, class_split, before):
    after = report(run(original, digits, class_split, "ssd").model, digits, class_split)
    assert before["forget_acc"] > 0.95
    assert after["forget_acc"] <= 0.1
    assert after["test_acc"] > before["test_acc"] - 0.03  # test_acc excludes the forgotten class


def test_label_free_ssd_needs_no_labels(digits, original, class_split):
    """LF-SSD ignores labels: scrambling them changes nothing; it still shrinks and forgets."""
    relabelled = ob.datasets.ArrayDataset(digits.train.x, digits.train.y.roll(1))
    a = ob.unlearn(original, digits.train, class_split, method="ssd", label_free=True, alpha=4.0, progress=False)
    b = ob.unlearn(original, relabelled, class_split, method="ssd", label_free=True, alpha=4.0, progress=False)
    assert same_state(state_of(a.model), state_of(b.model))
    assert acc(a.model, class_split.forget_set(digits.train)) < 0.5


def test_random_init_copy_is_a_fresh_seeded_network(original):
    a = random_init_copy(original, torch.Generator().manual_seed(1), torch.device("cpu"))
    b = random_init_copy(original, torch.Generator().manual_seed(1), torch.device("cpu"))
    c = random_init_copy(original, torch.Generator().manual_seed(2), torch.device("cpu"))
    assert same_state(state_of(a), state_of(b)) and not same_state(state_of(a), state_of(c))
    assert state_of(a).keys() == state_of(original).keys()
    assert all(not torch.equal(state_of(a)[k], v) for k, v in state_of(original).items())
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_bad_teacher_moves_the_forget_class_to_the_random_teacher(digits, original, class_split, before):
    forget = class_split.forget_set(digits.train)
    res = run(original, digits, class_split, "bad-teacher")
    after = report(res.model, digits, class_split)
    # the incompetent teacher is near-uniform (entropy ~ log 10 = 2.3); the original is confident
    random_teacher = random_init_copy(original, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert entropy(original, forget) < 0.5
    assert entropy(random_teacher, forget) > 1.5
    assert entropy(res.model, forget) > 1.0
    assert after["forget_acc"] <= 0.1
    assert after["test_acc"] > before["test_acc"] - 0.03
    assert {"forget_kl", "retain_kl"} <= set(res.history[0])


def test_bad_teacher_depends_on_the_seed(digits, original, random_split):
    a = run(original, digits, random_split, "bad-teacher")
    b = ob.unlearn(original, digits.train, random_split, method="bad-teacher", seed=1, progress=False)
    assert not same_state(state_of(a.model), state_of(b.model))


def test_boundary_shrink_sends_the_forget_set_to_other_classes(digits, original, class_split, before):
    forget = class_split.forget_set(digits.train)
    res = run(original, digits, class_split, "boundary-shrink")
    logits, y = TASK.predict(res.model, forget)
    pred = logits.argmax(-1)
    assert (pred != y).float().mean() >= 0.9
    assert len(torch.unique(pred)) >= 2  # nearest classes differ by example, not one dump class
    assert report(res.model, digits, class_split)["test_acc"] > before["test_acc"] - 0.03
    assert 0 <= res.history[0]["fgsm_fallback"] < 1


def test_boundary_expand_restores_the_head_and_forgets(digits, original, class_split, before):
    res = run(original, digits, class_split, "boundary-expand")
    head, old = last_linear(res.model), last_linear(original)
    assert type(head) is nn.Linear and head.weight.shape == old.weight.shape and head.bias.shape == old.bias.shape
    assert state_of(res.model).keys() == state_of(original).keys()
    assert not head._forward_hooks  # the shadow neuron is gone
    assert res.model(digits.test.x[:4]).shape == (4, 10)
    after = report(res.model, digits, class_split)
    assert after["forget_acc"] <= 0.1
    assert after["test_acc"] > before["test_acc"] - 0.03


def test_last_linear_finds_the_head_or_says_why(digits):
    for arch in ("mlp", "cnn", "resnet18"):
        model = ob.models.build(arch, (3, 32, 32), 10)
        assert last_linear(model) is [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear(ob.models.build("resnet18", (3, 32, 32), 10)).out_features == 10
    no_linear = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
    split = ob.ForgetSplit.from_ids(digits.train, [0, 1, 2])
    with pytest.raises(ValueError, match="last nn.Linear"):
        ob.unlearn(no_linear, digits.train, split, method="boundary-expand", progress=False)


@pytest.mark.parametrize("method", ["boundary-shrink", "boundary-expand"])
def test_boundary_methods_touch_only_forget_data(method, digits, original, class_split):
    poisoned = ob.datasets.ArrayDataset(digits.train.x.clone(), digits.train.y.clone())
    retain_ids = torch.ones(len(poisoned), dtype=torch.bool)
    retain_ids[class_split.forget_ids] = False
    poisoned.x[retain_ids] = float("nan")
    a = ob.unlearn(original, digits.train, class_split, method=method, progress=False, collapse_drop=None)
    b = ob.unlearn(original, poisoned, class_split, method=method, progress=False, collapse_drop=None)
    assert same_state(state_of(a.model), state_of(b.model))


@pytest.mark.parametrize("method", NEW)
def test_deterministic_on_class_forgetting(method, digits, original, class_split):
    a, b = run(original, digits, class_split, method), run(original, digits, class_split, method)
    assert same_state(state_of(a.model), state_of(b.model)) and not a.diverged


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("ssd", {"alpha": 0}, "alpha must be > 0"),
        ("ssd", {"lambda_": -1.0}, "lambda_ must be > 0"),
        ("bad-teacher", {"retain_fraction": 1.5}, "retain_fraction must be in"),
        ("boundary-shrink", {"epsilon": 0.0}, "epsilon must be > 0"),
    ],
)
def test_bad_parameters_fail_early(method, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ob.methods.get(method)(**kwargs)
