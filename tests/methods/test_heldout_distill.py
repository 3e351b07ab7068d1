"""heldout-distill: forget targets built from the validation set's confidences, ranked by the training
log's memorization proxy; whole classes get no mass; the run lands where held-out data lies."""

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import obliviate as ob
from obliviate.methods.heldout_distill import HeldoutDistill
from obliviate.objectives import ClassificationTask
from obliviate.train.memorization import learning_event_proxy

TASK = ClassificationTask(10)


def targets_of(monkeypatch, original, data, split, **kw):
    """Run the method and keep the forget targets it built."""
    kept = {}
    build = HeldoutDistill._forget_targets

    def spy(self, ctx, memorized):
        kept["q"], kept["keep"] = build(self, ctx, memorized)
        return kept["q"], kept["keep"]

    monkeypatch.setattr(HeldoutDistill, "_forget_targets", spy)
    res = ob.unlearn(original, data.train, split, method="heldout-distill", val=data.val, seed=0, progress=False, **kw)
    return res, kept["q"], kept["keep"]


def confidence(model, ds):
    logits, y = TASK.predict(model, ds)
    return logits.softmax(-1)[torch.arange(len(y)), y], (logits.argmax(-1) == y).double().mean().item()


def test_forget_targets_take_the_heldout_confidences_in_memorization_order(monkeypatch, digits, original, random_split):
    _, q, _ = targets_of(monkeypatch, original, digits, random_split, epochs=1)
    forget = random_split.forget_set(digits.train)
    assert torch.allclose(q.sum(-1), torch.ones(len(q)), atol=1e-5)
    c = q[torch.arange(len(q)), forget.y]
    val_conf, _ = confidence(original, digits.val)
    # the targets' true-class confidences are the validation set's, at evenly spaced quantiles ...
    expected = np.quantile(val_conf.double().numpy(), np.linspace(0, 1, len(c)))
    assert np.allclose(np.sort(c.numpy()), expected, atol=1e-5)
    # ... handed out so that the most memorized example (learned last) gets the lowest
    memorized = learning_event_proxy(original)[random_split.forget_ids]
    assert spearmanr(-memorized.numpy(), c.numpy())[0] > 0.99
    # the rest of the mass is spread as the original spreads it over the other classes
    logits, _ = TASK.predict(original, forget)
    i = int(torch.argmax(1 - c))
    others = logits[i].softmax(-1).clone()
    others[forget.y[i]] = 0
    q_others = q[i].clone()
    q_others[forget.y[i]] = 0
    assert torch.allclose(q_others / q_others.sum(), others / others.sum(), atol=1e-5)


def test_random_forgetting_moves_forget_set_to_heldout_and_keeps_retain(digits, original, random_split):
    forget, retain = random_split.forget_set(digits.train), random_split.retain_set(digits.train)
    res = ob.unlearn(
        original, digits.train, random_split, method="heldout-distill", val=digits.val, seed=0, progress=False
    )
    before_f, _ = confidence(original, forget)
    after_f, _ = confidence(res.model, forget)
    val_conf, _ = confidence(original, digits.val)
    _, retain_before = confidence(original, retain)
    _, retain_after = confidence(res.model, retain)
    # the forget set's mean confidence moves most of the way to the held-out level ...
    assert abs(after_f.mean() - val_conf.mean()) < 0.5 * abs(before_f.mean() - val_conf.mean())
    # ... without dragging the retain set along
    assert retain_after >= retain_before - 0.01
    assert res.method == "heldout-distill" and res.seconds > 0


def test_a_forgotten_class_gets_no_mass(monkeypatch, digits, original, class_split):
    res, q, keep = targets_of(monkeypatch, original, digits, class_split, epochs=3)
    assert not keep[3] and keep.sum() == 9
    assert q[:, 3].abs().max() == 0 and torch.allclose(q.sum(-1), torch.ones(len(q)))
    _, forget_acc = confidence(res.model, class_split.forget_set(digits.train))
    _, retain_acc = confidence(res.model, class_split.retain_set(digits.train))
    assert forget_acc < 0.05 and retain_acc > 0.95


def test_needs_a_memorization_ranking_and_a_heldout_set(digits, original, random_split):
    bare = copy.deepcopy(original)
    bare.__dict__.pop("obliviate_log", None)
    with pytest.raises(ValueError, match="scores="):
        ob.unlearn(bare, digits.train, random_split, method="heldout-distill", val=digits.val, progress=False)
    with pytest.raises(ValueError, match="one value per training example"):
        ob.unlearn(
            bare,
            digits.train,
            random_split,
            method="heldout-distill",
            val=digits.val,
            scores=(0.1, 0.2),
            progress=False,
        )
    with pytest.raises(ValueError, match="val="):
        ob.unlearn(original, digits.train, random_split, method="heldout-distill", progress=False)
    # scores= stands in for the training log
    scores = tuple(learning_event_proxy(original).tolist())
    res = ob.unlearn(
        bare,
        digits.train,
        random_split,
        method="heldout-distill",
        val=digits.val,
        scores=scores,
        epochs=1,
        progress=False,
    )
    assert res.params["epochs"] == 1


def test_a_mixed_forget_set_calibrates_on_the_classes_that_stay(monkeypatch, digits, original):
    """A whole class plus a few other rows: the class gets no mass, the others the held-out
    confidences of the validation rows outside that class."""
    whole = torch.nonzero(digits.train.y == 3).flatten()
    others = torch.nonzero(digits.train.y != 3).flatten()[:30]
    split = ob.ForgetSplit(torch.cat([whole, others]).sort().values, len(digits.train), kind="ids", classes=(3,))
    _, q, _ = targets_of(monkeypatch, original, digits, split, epochs=1)
    y = digits.train.y[split.forget_ids]
    assert q[:, 3].abs().max() == 0 and torch.allclose(q.sum(-1), torch.ones(len(q)), atol=1e-5)
    c = q[y != 3][torch.arange(int((y != 3).sum())), y[y != 3]]
    logits, vy = TASK.predict(original, digits.val)
    probs = logits.masked_fill(torch.arange(10) == 3, float("-inf")).softmax(-1)
    val_conf = probs[torch.arange(len(vy)), vy][vy != 3]
    assert c.min() >= val_conf.min() - 1e-6 and c.max() <= val_conf.max() + 1e-6
    expected = np.quantile(val_conf.double().numpy(), np.linspace(0, 1, len(c)))
    assert np.allclose(np.sort(c.numpy()), expected, atol=1e-5)


def test_a_training_log_of_other_rows_is_refused(digits, original, random_split):
    """After rows were deleted, the log's events no longer line up with the training set."""
    fewer = digits.subset_train(torch.arange(len(digits.train) - 5))
    split = ob.ForgetSplit.random(fewer.train, fraction=0.1, seed=0)
    with pytest.raises(ValueError, match="training log describes"):
        ob.unlearn(original, fewer.train, split, method="heldout-distill", val=fewer.val, progress=False)
