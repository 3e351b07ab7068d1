"""Memorization estimates and proxies, entanglement, RUM, and problematic-data detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate.data.datasets import ArrayDataset
from obliviate.evaluation import memorization as mem


@pytest.fixture(scope="module")
def flipped(digits):
    """600 digits with 6 labels flipped: examples that can only be fitted by memorizing them."""
    return ob.evaluation.inject_label_noise(digits.train.subset(torch.arange(600)), 6 / 600, 10, seed=3)


@pytest.fixture(scope="module")
def wide(recipe):
    """A recipe with the capacity and epochs to memorize (the default digits MLP does not fit flipped labels)."""
    return recipe.replace(arch_kwargs={"hidden": [512]}, epochs=100)


@pytest.fixture(scope="module")
def estimate(flipped, wide):
    return mem.subsample_memorization(wide, flipped[0], k=24, ratio=0.5, seed=0, progress=False)


def test_subsample_estimator_finds_mislabeled_examples(flipped, estimate):
    noisy, ids = flipped
    s = estimate.scores
    assert s.shape == (len(noisy),) and torch.isfinite(s).all()
    assert float(s[ids].min()) > 0.8, "a mislabeled example is fitted only when trained on: highly memorized"
    assert abs(float(s.median())) < 0.05, "typical digits are learned from the others: ~0 memorization"
    assert float((s >= s[ids].min()).float().mean()) < 0.05  # the flipped ones are among the top 5%
    assert estimate.k == 24 and int(estimate.n_in.min()) > 0 and int(estimate.n_in.max()) < 24


def test_estimate_save_load(tmp_path, estimate):
    estimate.save(tmp_path / "mem.safetensors")
    back = mem.MemorizationEstimate.load(tmp_path / "mem.safetensors")
    assert torch.equal(back.scores, estimate.scores) and back.k == 24 and back.ratio == pytest.approx(0.5)


def test_learning_event_proxies_are_oriented_towards_memorization(flipped, recipe, estimate):
    noisy, ids = flipped
    model = ob.train(recipe, noisy, seed=0, progress=False)
    log = ob.training_log(model)
    assert set(log.events) == {"confidence", "max_conf", "entropy", "correct"}
    assert all(t.shape == (recipe.epochs, len(noisy)) for t in log.events.values())
    for kind in ("confidence", "bi_acc"):  # label-aware: a wrong label is never confidently "learned"
        score = mem.learning_event_proxy(model, kind)
        rank = score.argsort(descending=True).argsort()  # 0 = most memorized
        assert float(rank[ids].float().mean()) < 0.1 * len(noisy), kind
    # label-free proxies flag uncertain (atypical) inputs, so they agree with each other, oriented alike
    assert mem.spearman(mem.learning_event_proxy(model, "entropy"), mem.learning_event_proxy(model, "max_conf")) > 0.8
    assert mem.spearman(mem.learning_event_proxy(model, "confidence"), estimate.scores) > 0.2
    with pytest.raises(ValueError, match="unknown learning-event proxy"):
        mem.learning_event_proxy(model, "loss")


def test_holdout_kl_and_curvature_score_every_example(flipped, recipe, digits):
    noisy, ids = flipped
    model = ob.train(recipe, noisy, seed=0, progress=False)
    kl = mem.holdout_kl(model, noisy, digits.test, epochs=3, lr=0.05)
    curv = mem.loss_curvature(model, noisy)
    for s in (kl, curv):
        assert s.shape == (len(noisy),) and torch.isfinite(s).all() and (s >= 0).all()
        assert float(s[ids].mean()) > float(s.median()), "mislabeled examples score above the typical one"


def test_entanglement_is_higher_for_random_than_for_class_forget_sets(original, digits):
    es_class = mem.entanglement(original, digits.train, ob.ForgetSplit.by_class(digits.train, [3]))
    es_random = mem.entanglement(original, digits.train, ob.ForgetSplit.random(digits.train, 0.1, seed=0))
    assert es_random > 10 * es_class > 0
    with pytest.raises(ValueError, match="no module"):
        mem.entanglement(original, digits.train, ob.ForgetSplit.by_class(digits.train, [3]), layer="nope")


def test_rum_processes_bins_low_to_high_with_sequential_retain(original, digits, recipe):
    split = ob.ForgetSplit.by_score(digits.train, mem.learning_event_proxy(original), bin="mix", count=90)
    res = ob.unlearn(
        original,
        digits.train,
        split,
        method="rum",
        seed=0,
        recipe=recipe,
        progress=False,
        methods=("none", "finetune", "neggrad+"),
    )
    bins = [h for h in res.history if "bin" in h]
    assert [h["method"] for h in bins] == ["none", "finetune", "neggrad+"]
    assert [h["forget"] for h in bins] == [30, 30, 30]
    # later bins stay in the retain set until processed
    assert [h["retain"] for h in bins] == [len(digits.train) - 30 * (k + 1) for k in range(3)]
    assert all(a["score_max"] <= b["score_min"] for a, b in zip(bins, bins[1:]))
    assert res.params["methods"] == ("none", "finetune", "neggrad+")
    # RUM^F and the reverse order
    rev = ob.unlearn(
        original, digits.train, split, method="rum", seed=0, progress=False, base="finetune", order="high-to-low"
    )
    rbins = [h for h in rev.history if "bin" in h]
    assert [h["method"] for h in rbins] == ["finetune"] * 3
    assert rbins[0]["score_min"] >= rbins[-1]["score_max"]


def test_rum_rejects_bad_scores_and_plans(original, digits):
    split = ob.ForgetSplit.random(digits.train, 0.1, seed=0)
    with pytest.raises(ValueError, match="one value per training example"):
        ob.unlearn(original, digits.train, split, method="rum", progress=False, scores=(0.1, 0.2))
    with pytest.raises(ValueError, match="one per bin"):
        ob.unlearn(original, digits.train, split, method="rum", progress=False, methods=("finetune",))
    with pytest.raises(ValueError, match="unknown base methods"):
        ob.unlearn(original, digits.train, split, method="rum", progress=False, base="scurb")
    with pytest.raises(ValueError, match="score array|one value per training example|shape"):
        ob.ForgetSplit.by_score(digits.train, np.zeros(5), count=3)


def test_detect_finds_injected_label_noise(digits, recipe):
    noisy, ids = ob.evaluation.inject_label_noise(digits.train, 0.05, 10, seed=0)
    found = ob.detect(noisy, recipe, seed=0, progress=False)
    t = found.table
    assert list(t.columns[:6]) == ["id", "kind", "score", "given_label", "suggested_label", "label_quality"]
    issues = t[t.kind == "label issue"]
    assert (issues.given_label != issues.suggested_label).all()
    assert issues.score.is_monotonic_decreasing or len(issues) < 2 or issues.label_quality.is_monotonic_increasing
    hit = np.isin(issues.id, ids.numpy())
    precision, recall = hit.mean(), hit.sum() / len(ids)
    assert precision >= 0.7 and recall >= 0.7, (precision, recall)
    split = found.split(noisy)  # straight into a forget split
    assert len(split) == len(t)
    # the true label is what the out-of-sample model suggests for most flipped examples
    truth = digits.train.y[torch.as_tensor(issues.id.to_numpy()[hit])]
    assert (issues.suggested_label.to_numpy()[hit] == truth.numpy()).mean() > 0.9


def test_detect_outliers_and_bad_input(digits, recipe, original):
    found = ob.detect(digits.train, recipe, model=original, outlier_fraction=0.01, seed=0, progress=False)
    out = found.table[found.table.kind == "outlier"]
    assert len(out) == round(0.01 * len(digits.train)) and out.memorization.is_monotonic_decreasing
    assert "memorization score" in out.why.iloc[0]
    with pytest.raises(ValueError, match="one score per example"):
        ob.detect(digits.train, recipe, memorization=np.zeros(3), progress=False)
    with pytest.raises(TypeError):
        ob.evaluation.inject_label_noise(torch.utils.data.TensorDataset(torch.zeros(3)), 0.1, 10)
    assert isinstance(digits.train, ArrayDataset)
