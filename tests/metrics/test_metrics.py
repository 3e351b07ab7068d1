"""Each metric on constructed inputs whose answer is known."""

import math

import numpy as np
import pytest
import torch

import obliviate as ob
from obliviate import metrics as M

LOGITS = torch.tensor([[3.0, 0.0, -1.0], [0.5, 0.4, 0.3], [-2.0, 4.0, 0.0]])


def test_divergences_vanish_on_identical_outputs():
    for fn in (M.kl, M.symmetric_kl, M.js_divergence, M.activation_distance, M.disagreement):
        assert torch.allclose(fn(LOGITS, LOGITS), torch.zeros(3), atol=1e-6), fn.__name__


def test_kl_matches_a_hand_computation_and_is_asymmetric():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # p = (.5, .5), q = (.75, .25)
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert M.kl(a, b).item() == pytest.approx(expected, rel=1e-5)
    assert M.kl(b, a).item() != pytest.approx(expected, rel=1e-3)
    assert M.symmetric_kl(a, b).item() == pytest.approx(0.5 * (M.kl(a, b) + M.kl(b, a)).item())


def test_js_is_symmetric_and_bounded_by_ln2():
    a = torch.tensor([[50.0, -50.0]])
    b = torch.tensor([[-50.0, 50.0]])
    assert M.js_divergence(a, b).item() == pytest.approx(math.log(2), rel=1e-4)  # disjoint supports
    x, y = torch.randn(20, 5), torch.randn(20, 5)
    assert torch.allclose(M.js_divergence(x, y), M.js_divergence(y, x), atol=1e-6)
    assert (M.js_divergence(x, y) <= math.log(2) + 1e-6).all()


def test_disagreement_and_activation_distance():
    flipped = LOGITS[:, [1, 0, 2]]
    assert M.disagreement(LOGITS, flipped).tolist() == [1.0, 1.0, 1.0]
    one_hot_a, one_hot_b = torch.tensor([[100.0, 0.0]]), torch.tensor([[0.0, 100.0]])
    assert M.activation_distance(one_hot_a, one_hot_b).item() == pytest.approx(math.sqrt(2), rel=1e-4)


def test_zrf_is_one_against_itself_and_lower_for_a_confident_model():
    rand = torch.zeros(10, 4)  # uniform predictions
    assert M.zrf(rand, rand) == pytest.approx(1.0)
    confident = torch.eye(4)[torch.arange(10) % 4] * 30
    assert M.zrf(confident, rand) < 0.6


def test_threshold_attack_known_answers():
    rng = np.random.default_rng(0)
    same = M.threshold_attack(rng.normal(size=2000), rng.normal(size=2000))
    assert abs(same["auc"] - 0.5) < 0.04 and same["tpr@1%fpr"] < 0.05
    sep = M.threshold_attack(rng.normal(10, 1, 500), rng.normal(0, 1, 500))
    assert sep["auc"] == 1.0 and sep["tpr@1%fpr"] == 1.0 and sep["tpr@0.1%fpr"] == 1.0 and sep["best_acc"] == 1.0
    with pytest.raises(ValueError, match="needs"):
        M.threshold_attack([], [1.0])


def _pairs(n, confident, rng):
    """(logits, labels) for n examples: confident and correct, or noisy."""
    y = torch.as_tensor(rng.integers(0, 3, n))
    logits = torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32)
    if confident:
        logits[torch.arange(n), y] += 8
    return logits, y


def test_mia_efficacy_and_entropy_mia_on_constructed_members():
    rng = np.random.default_rng(0)
    retain, test = _pairs(400, True, rng), _pairs(400, False, rng)
    member_like, nonmember_like = _pairs(200, True, rng), _pairs(200, False, rng)
    # MIA-efficacy is the share of D_f predicted NON-member: ~0 when D_f looks like training data
    assert M.mia_efficacy(retain, test, member_like) < 0.1
    assert M.mia_efficacy(retain, test, nonmember_like) > 0.9
    assert M.svc_mia(retain, test, nonmember_like, features=M.mia.FEATURES) > 0.9
    # entropy MIA is the share predicted member
    assert M.entropy_mia(retain, test, member_like) > 0.9
    assert M.entropy_mia(retain, test, nonmember_like) < 0.1


def test_modified_entropy_differs_from_entropy_when_the_label_is_not_the_top_class():
    """Song & Mittal's Mentr = −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i), by hand; plain entropy
    would ignore the label (and equals Mentr only in symmetric cases like the tie below)."""
    p = torch.tensor([[0.7, 0.2, 0.1]])
    f = M.attack_features(p.log(), torch.tensor([1]), ("entropy", "m_entropy"))[0]
    entropy = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    m_entropy = -(0.8 * math.log(0.2)) - 0.7 * math.log(0.3) - 0.1 * math.log(0.9)
    assert f.tolist() == pytest.approx([entropy, m_entropy])
    assert abs(m_entropy - entropy) > 0.5
    right = M.attack_features(p.log(), torch.tensor([0]), ("m_entropy",))[0, 0]  # same p, label = the top class
    assert right == pytest.approx(-(0.3 * math.log(0.7)) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9))


def test_attack_features_modified_entropy():
    logits, y = torch.tensor([[0.0, 0.0]]), torch.tensor([0])
    f = M.attack_features(logits, y)
    # p = (.5, .5): correct (a tie resolves to class 0), conf .5, entropy ln2, m_entropy ln2, max prob .5
    assert f[0].tolist() == pytest.approx([1.0, 0.5, math.log(2), math.log(2), 0.5])
    with pytest.raises(ValueError, match="unknown attack features"):
        M.attack_features(logits, y, ("loss",))


def test_composites():
    oracle = {"forget_acc": 0.9, "retain_acc": 1.0, "test_acc": 0.9, "mia_efficacy": 0.2}
    assert M.tow(oracle, oracle) == 1 and M.tow_mia(oracle, oracle) == 1 and M.avg_gap(oracle, oracle) == 0
    worse = {"forget_acc": 1.0, "retain_acc": 1.0, "test_acc": 0.8, "mia_efficacy": 0.0}
    assert M.avg_gap(worse, oracle) == pytest.approx(100 * (0.1 + 0 + 0.1 + 0.2) / 4)
    assert M.tow(worse, oracle) == pytest.approx(0.9 * 1.0 * 0.9)
    assert M.tow_mia(worse, oracle) == pytest.approx(0.8 * 1.0 * 0.9)


def test_catalogue_declares_direction_and_ideal():
    for name, spec in M.METRICS.items():
        assert spec.kind in ("model", "pair", "composite"), name
        assert spec.description and spec.modalities, name
        assert (spec.ideal == M.ORACLE) == (spec.kind == "model"), name
        if spec.kind == "pair" and M.Modality.CLASSIFICATION in spec.modalities:  # distances to the oracle
            assert spec.direction is M.Direction.LOWER and spec.ideal == 0.0 and spec.higher_is_better is False
    # typed direction drives comparisons: a higher ToW, a lower Avg.Gap, a forget accuracy nearer the oracle's
    assert M.METRICS["tow"].better(0.9, 0.8) and not M.METRICS["avg_gap"].better(3.0, 2.0)
    assert M.METRICS["forget_acc"].better(0.91, 0.99, oracle=0.9) and not M.METRICS["forget_acc"].better(0.8, 0.95, 0.9)
    assert M.METRICS["forget_quality"].better(0.5, 0.01) and M.METRICS["privleak"].better(-0.05, 0.2)
    assert M.direction_of("seconds") is M.Direction.LOWER and M.direction_of("extraction_secret") is M.Direction.ORACLE
    assert M.METRICS["forget_ma"].modalities == {M.Modality.CAUSAL_LM}
    assert "forget_ma" in M.available(M.Modality.CAUSAL_LM) and "forget_ma" not in M.available(
        M.Modality.CLASSIFICATION
    )
    with pytest.raises(ValueError, match="oracle as ideal"):
        M.Metric("x", "model", len, "d", M.Direction.HIGHER, 1.0)


def test_noise_floor_from_two_oracles(digits, recipe, original, random_split):
    retain = random_split.retain_set(digits.train)
    o1 = ob.unlearn(original, digits.train, random_split, method="retrain", seed=0, progress=False)
    o2 = ob.unlearn(original, digits.train, random_split, method="retrain", seed=1, progress=False)
    res = ob.unlearn(original, digits.train, random_split, method="none", progress=False)
    report = ob.evaluate(res, digits, random_split, oracle=[o1, o2])
    assert report.floor["kl_forget"] > 0 and report.floor["disagreement_test"] >= 0
    assert report.floor["forget_acc"] == pytest.approx(
        abs(ob.evaluate(o2.model, digits, random_split)["forget_acc"] - report.oracle["forget_acc"])
    )
    assert "cost_ratio" in report and report["seconds"] == res.seconds
    assert len(retain) == len(digits.train) - len(random_split)
    frame = report.compare(ob.evaluate(o2, digits, random_split, oracle=[o1, o2]), names=("none", "oracle2"))
    assert {"none", "oracle2", "none_gap", "oracle2_gap", "floor"} <= set(frame.columns)


def test_evaluate_rejects_unknown_metrics_and_protocols(digits, original, random_split):
    with pytest.raises(ValueError, match="unknown metrics"):
        ob.evaluate(original, digits, random_split, metrics=["accuracy!"])
    with pytest.raises(ValueError, match="unknown protocol"):
        ob.evaluate(original, digits, random_split, protocol="vibes")
    with pytest.raises(ValueError, match="needs method"):
        ob.evaluate(original, digits, random_split, protocol="neurips23")
