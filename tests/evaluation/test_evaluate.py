import numpy as np
import pytest
import torch

import obliviate as ob


def test_loss_mia_is_chance_on_identical_distributions():
    rng = np.random.default_rng(0)
    assert abs(ob.metrics.loss_mia(rng.exponential(size=400), rng.exponential(size=400)) - 0.5) < 0.07


def test_loss_mia_is_perfect_on_separable_losses():
    rng = np.random.default_rng(0)
    members = rng.uniform(0, 0.1, 300)
    non_members = rng.uniform(1, 2, 300)
    assert ob.metrics.loss_mia(members, non_members) > 0.98


def test_loss_mia_balances_classes():
    """A 10:1 imbalance must not let 'always member' score 0.91."""
    rng = np.random.default_rng(1)
    assert abs(ob.metrics.loss_mia(rng.normal(size=1000), rng.normal(size=100)) - 0.5) < 0.1


def test_loss_mia_needs_examples():
    with pytest.raises(ValueError, match="at least 2"):
        ob.metrics.loss_mia(np.array([0.1]), np.array([0.2, 0.3]))


def test_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert ob.metrics.accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_evaluate_reports_values_oracle_and_gaps(digits, recipe, original, random_split):
    oracle = ob.train(recipe, random_split.retain_set(digits.train), seed=0, progress=False)
    report = ob.evaluate(original, digits, random_split, oracle=oracle)
    assert {"forget_acc", "retain_acc", "test_acc", "mia", "mia_efficacy", "kl_forget", "tow", "avg_gap"} <= set(report)
    assert "forgotten_class_test_acc" not in report  # random forgetting
    assert report["forget_acc"] > 0.95  # the original saw these examples
    assert report.gap("forget_acc") == pytest.approx(abs(report["forget_acc"] - report.oracle["forget_acc"]))
    frame = report.to_frame()
    assert list(frame.columns) == [
        "metric",
        "value",
        "oracle",
        "gap",
        "floor",
        "ideal",
        "higher_is_better",
        "direction",
    ]
    self_report = ob.evaluate(oracle, digits, random_split, oracle=oracle)
    assert all(self_report.gap(k) == 0 for k in self_report if k not in ("tow", "tow_mia"))
    assert self_report["tow"] == 1 and self_report["kl_forget"] == pytest.approx(0, abs=1e-6)


def test_class_forgetting_test_accuracy_excludes_the_class(digits, original, class_split):
    report = ob.evaluate(original, digits, class_split)
    assert "forgotten_class_test_acc" in report
    views = ob.evaluation.split_views(digits, class_split)
    assert not (views["test"].y == 3).any() and (views["forgotten_class_test"].y == 3).all()
    assert len(views["test"]) + len(views["forgotten_class_test"]) == len(digits.test)


def test_a_composite_brings_its_parts(digits, recipe, original, random_split):
    """Asking for Avg.Gap alone still computes (and reports) the four metrics it averages."""
    oracle = ob.train(recipe, random_split.retain_set(digits.train), seed=1)
    report = ob.evaluate(original, digits, random_split, oracle=oracle, metrics=["avg_gap"])
    assert {"forget_acc", "retain_acc", "test_acc", "mia_efficacy", "avg_gap"} <= set(report.values)
    full = ob.evaluate(original, digits, random_split, oracle=oracle)
    assert report["avg_gap"] == pytest.approx(full["avg_gap"])


def test_task_overrides_the_adapter_and_must_fit_the_data(digits, original, random_split):
    from obliviate.objectives import CausalLMTask, ClassificationTask

    plain = ob.evaluate(original, digits, random_split, metrics=["forget_acc", "test_acc"])
    same = ob.evaluate(original, digits, random_split, metrics=["forget_acc", "test_acc"], task=ClassificationTask(10))
    assert plain.values == same.values
    with pytest.raises(ValueError, match="needs text data"):
        ob.evaluate(original, digits, random_split, task=CausalLMTask())
    with pytest.raises(ValueError, match="needs text data"):
        ob.tune("finetune", digits.with_validation(), random_split, original=original, budget=1, task=CausalLMTask())
