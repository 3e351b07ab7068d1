"""Concept ablation for a class-conditional denoiser: conformance, anchors, bad input."""

import pytest
import torch

import obliviate as ob
from obliviate.testing import _denoiser, check_method


def test_concept_ablation_conforms_and_never_reads_the_forget_set():
    # check_method's spy fails the run if a method declaring reads={"retain"} touches D_f
    assert ob.methods.get("concept-ablation").reads == {"retain"}
    assert "reads" in check_method("concept-ablation", params={"steps": 4})


def test_anchor_must_be_a_retained_class():
    data = ob.datasets.load("digits")
    split = ob.ForgetSplit.by_class(data.train, [3])
    with pytest.raises(ValueError, match="not a retained class"):
        ob.unlearn(_denoiser(), data.train, split, method="concept-ablation", anchor=3, steps=1)
    with pytest.raises(ValueError, match="whole classes"):
        ob.unlearn(_denoiser(), data.train, ob.ForgetSplit.random(data.train, 0.1), method="concept-ablation")


def test_fixed_anchor_pulls_the_forgotten_label_onto_the_anchor():
    """After ablation with anchor a, ε(x_t, f) is closer to ε(x_t, a) than before."""
    data = ob.datasets.load("digits")
    model = _denoiser()
    split = ob.ForgetSplit.by_class(data.train, [3])
    out = ob.unlearn(model, data.train, split, method="concept-ablation", anchor=5, steps=20, alpha=0.0).model
    g = torch.Generator().manual_seed(0)
    x0 = data.train.x[data.train.y == 5][:32] * 2 - 1
    t, eps = torch.randint(0, 100, (32,), generator=g), torch.randn(x0.shape, generator=g)

    def gap(m):
        with torch.no_grad():
            x_t = m.noisy(x0, t, eps)
            return float((m(x_t, t, torch.full((32,), 3)) - m(x_t, t, torch.full((32,), 5))).pow(2).mean())

    assert gap(out) < 0.5 * gap(model)
