"""Attacks (relearn, relearn-retain, quantize-int8/int4) through ob.evaluate: attacked copies, never
the caller's model; the same seed and budget for the model and the oracles; rows judged against the
oracle under the same attack; recovery exposes a model that hid the data instead of removing it."""

import pytest
import torch
from conftest import same_state, state_of

import obliviate as ob
from obliviate.evaluation.attacks import Quantize, Relearn, parse_attack, parse_attacks, round_trip

ATTACKS = ["relearn", "relearn-retain", "relearn-related", "quantize-int8", "quantize-int4"]


@pytest.fixture(scope="module")
def oracles(digits, recipe, class_split):
    retain = class_split.retain_set(digits.train)
    return [ob.train(recipe, retain, seed=s, progress=False) for s in (0, 500)]


def test_round_trip_int8_per_channel_and_int4_groups():
    w = torch.randn(6, 70) * torch.logspace(-2, 1, 6)[:, None]  # channels of very different scales
    q8 = round_trip(w, 8)
    step8 = w.abs().amax(1, keepdim=True) / 127
    assert ((q8 - w).abs() <= step8 / 2 + 1e-6).all() and not torch.equal(q8, w)
    q4 = round_trip(w, 4, group_size=32)
    for g in range(3):  # 70 inputs = groups of 32, 32 and a padded 6
        block = q4[:, 32 * g : 32 * (g + 1)]
        step = w[:, 32 * g : 32 * (g + 1)].abs().amax(1, keepdim=True) / 7
        assert ((block - w[:, 32 * g : 32 * (g + 1)]).abs() <= step / 2 + 1e-6).all()
        assert all(len(torch.unique(r)) <= 16 for r in block)
    assert round_trip(torch.zeros(2, 4), 4).abs().sum() == 0


def test_attack_rows_judged_against_the_oracle_under_the_same_attack(digits, original, class_split, oracles):
    before = state_of(original)
    report = ob.evaluate(
        original, digits, class_split, oracle=oracles, original=original, attacks=ATTACKS, metrics=["forget_acc"]
    )
    assert same_state(state_of(original), before)
    for a in ATTACKS:
        for m in ("forget_acc", "retain_acc", "test_acc", "loss_auc", "recovery"):
            name = f"{a}/{m}"
            assert name in report.values and name in report.oracle and name in report.floor
    # the oracle evaluated as the model meets itself under each attack: same seed, same copy
    self_report = ob.evaluate(
        oracles[0], digits, class_split, oracle=oracles, original=original, attacks=ATTACKS, metrics=["forget_acc"]
    )
    assert all(self_report.gap(f"{a}/forget_acc") == 0 for a in ATTACKS)
    # quantization leaves a class-forgetting oracle unable to predict the class it never saw
    assert report.oracle["quantize-int4/forget_acc"] == 0
    assert report["quantize-int8/forget_acc"] > 0.9  # the original keeps its knowledge through int8
    # relearn measures forget rows it did not train on
    rows, measured = Relearn().parts(digits, class_split, seed=0)
    assert set(rows.tolist()).isdisjoint(measured.forget_ids.tolist())
    assert sorted(rows.tolist() + measured.forget_ids.tolist()) == sorted(class_split.forget_ids.tolist())
    assert len(rows) == round(0.2 * len(class_split))


def test_recovery_exposes_a_model_that_hid_the_class(digits, original, class_split, oracles):
    """A model that only suppresses the forgotten class's logit (forget acc 0, like the oracle) gets it
    back after a few relearning steps; the oracle, which never learned it, does not."""
    hidden = ob.unlearn(original, digits.train, class_split, "none", seed=0, progress=False).model
    last = [m for m in hidden.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[class_split.classes[0]] -= 12.0
    attacks = ["relearn", "relearn-related"]
    report = ob.evaluate(
        hidden, digits, class_split, oracle=oracles, original=original, attacks=attacks, metrics=["forget_acc"]
    )
    assert report["forget_acc"] < 0.05 and report.oracle["forget_acc"] == 0
    assert report["relearn/recovery"] > 0.8 and report.oracle["relearn/recovery"] < 0.2
    # ten never-trained test images of the class are enough to undo the hiding, not to teach the oracle
    assert report["relearn-related/recovery"] > 0.8 and report.oracle["relearn-related/recovery"] < 0.2
    shots = Relearn(source="related").relearn_set(digits, class_split, seed=0)
    assert len(shots) == 10 and set(shots.y.tolist()) == {3}
    assert not any(torch.equal(x, t) for x in shots.x for t in digits.train.x[class_split.forget_ids])


def test_attack_specs_and_bad_input(digits, original, class_split, oracles):
    assert parse_attack("quantize-int4") == Quantize(4)
    assert parse_attack({"relearn": {"fraction": 0.5, "steps": 3}}) == Relearn(fraction=0.5, steps=3)
    with pytest.raises(ValueError, match="unknown attack"):
        parse_attack("prune")
    with pytest.raises(ValueError, match="bad parameters"):
        parse_attack({"relearn": {"epochs": 3}})
    with pytest.raises(ValueError, match="fraction"):
        Relearn(fraction=1.0)
    with pytest.raises(ValueError, match="given twice"):
        parse_attacks(["relearn", {"relearn": {"steps": 2}}])
    with pytest.raises(ValueError, match="needs class forgetting"):
        Relearn(source="related").relearn_set(digits, ob.ForgetSplit.random(digits.train, 0.1), seed=0)
    with pytest.raises(ValueError, match="pass oracle="):
        ob.evaluate(original, digits, class_split, attacks=["relearn"])
    random_split = ob.ForgetSplit.random(digits.train, 0.1)
    with pytest.raises(ValueError, match="relearn-related needs class forgetting"):
        ob.evaluate(original, digits, random_split, oracle=oracles[0], attacks=["relearn-related"])

    class Prior(torch.nn.Module):  # class frequencies only: no weight matrix for a quantizer to round
        def __init__(self) -> None:
            super().__init__()
            self.logits = torch.nn.Parameter(torch.zeros(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits.expand(len(x), 10)

    with pytest.raises(ValueError, match="quantize-int4: the model has no weight matrices"):
        ob.evaluate(Prior(), digits, class_split, oracle=oracles[0], attacks=["quantize-int4"])


def test_relearning_curve_starts_before_the_attack_and_ends_at_its_row(digits, original, class_split, oracles):
    report = ob.evaluate(
        original,
        digits,
        class_split,
        oracle=oracles,
        original=original,
        attacks=[Relearn(curve=True)],
        metrics=["forget_acc"],
    )
    curve = report.details["curves"]["relearn"]
    assert curve["metric"] == "forget_acc" and curve["steps"] == [0, 1, 2, 4, 8, 16, 20]
    assert curve["model"][-1] == pytest.approx(report["relearn/forget_acc"])
    assert curve["oracle"][-1] == pytest.approx(report.oracle["relearn/forget_acc"])
    assert curve["oracle"][0] == 0 and len(curve["floor_oracle"]) == 7
    measured = Relearn().measured_split(digits, class_split, seed=0)
    assert curve["model"][0] == pytest.approx(
        ob.evaluate(original, digits, measured, metrics=["forget_acc"])["forget_acc"]
    )
