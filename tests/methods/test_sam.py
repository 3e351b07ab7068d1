"""The sharpness-aware forget step (``sam_rho=``, Fan et al. 2025) on the ascent methods: the step's
gradient is the forget gradient at θ + ρ·g/‖g‖ plus the retain gradient at θ, θ is restored exactly,
rho = 0 never enters the SAM path, rho > 0 changes the update, bad rho fails."""

from types import SimpleNamespace

import pytest
import torch
from conftest import same_state, state_of
from torch import nn

import obliviate as ob
from obliviate.methods import common, lm_common, neggrad, neggrad_plus
from obliviate.methods.common import sam_step
from obliviate.objectives import CausalLMTask

ASCENT = ["neggrad", "neggrad+", "ga", "grad-diff", "npo"]
LM_KW = {"max_steps": 15, "stop": "none"}  # the LM loop on a classifier: a fixed number of steps


def _kw(method):
    return LM_KW if method in ("ga", "grad-diff", "npo") else {}


def test_sam_step_uses_the_forget_gradient_at_the_perturbed_point_and_the_retain_gradient_at_theta():
    """A 3-weight linear model, SGD lr 1: the new weights must be θ − (∇L_f(θ + ε) + ∇L_r(θ)) with
    ε = ρ ∇L_f(θ)/‖∇L_f(θ)‖, computed here by hand. Perturbing against the gradient, taking the
    retain gradient at θ + ε, or not restoring θ each give other weights."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    xf, xr = torch.randn(5, 3), torch.randn(7, 3)

    def forget_loss():
        return -(model(xf) ** 3).mean()  # non-quadratic, so the gradient moves with θ

    def retain_loss():
        return ((model(xr) - 1) ** 4).mean()

    rho = 0.3
    theta = model.weight.detach().clone()
    w = theta.clone().requires_grad_(True)
    g_f = torch.autograd.grad(-((xf @ w.T) ** 3).mean(), w)[0]
    w_adv = (theta + rho * g_f / g_f.norm()).requires_grad_(True)
    g_adv = torch.autograd.grad(-((xf @ w_adv.T) ** 3).mean(), w_adv)[0]
    g_r = torch.autograd.grad((((xr @ w.T) - 1) ** 4).mean(), w)[0]
    expected = theta - (g_adv + g_r)

    ctx = SimpleNamespace(check_loss=lambda loss, where: None, after_step=lambda m: None)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sam_step(model, opt, forget_loss(), forget_loss, rho, ctx, "toy", retain_loss=retain_loss())
    torch.testing.assert_close(model.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, theta - (g_f + g_r), atol=1e-4)  # SAM is not the plain step here


def test_sam_step_rejects_a_non_finite_perturbed_loss_and_restores_theta():
    model = nn.Linear(2, 1)
    before = state_of(model)
    x = torch.randn(4, 2)

    def check(loss, where):
        if not torch.isfinite(loss):
            raise ob.methods.Diverged(where)

    ctx = SimpleNamespace(check_loss=check, after_step=lambda m: None)
    with pytest.raises(ob.methods.Diverged, match="SAM point"):
        sam_step(
            model,
            torch.optim.SGD(model.parameters(), lr=1.0),
            model(x).mean(),
            lambda: torch.tensor(float("nan")),
            0.1,
            ctx,
            "toy",
        )
    assert same_state(state_of(model), before)


@pytest.mark.parametrize("method", ASCENT)
def test_rho_zero_never_takes_the_sam_path(method, digits, original, class_split, monkeypatch):
    """rho = 0 runs the method's plain step (verified bit-identical to the code before ``sam_rho``
    existed when it was added); rho > 0 goes through ``sam_step`` and lands elsewhere."""

    def forbidden(*args, **kwargs):
        raise AssertionError("sam_step called with sam_rho=0")

    for module in (neggrad, neggrad_plus, lm_common):
        monkeypatch.setattr(module, "sam_step", forbidden)
    run = dict(seed=0, progress=False, **_kw(method))
    plain = ob.unlearn(original, digits.train, class_split, method=method, **run)
    zero = ob.unlearn(original, digits.train, class_split, method=method, sam_rho=0.0, **run)
    assert same_state(state_of(plain.model), state_of(zero.model))
    monkeypatch.undo()
    sam = ob.unlearn(original, digits.train, class_split, method=method, sam_rho=0.05, **run)
    assert not same_state(state_of(plain.model), state_of(sam.model))
    again = ob.unlearn(original, digits.train, class_split, method=method, sam_rho=0.05, **run)
    assert same_state(state_of(sam.model), state_of(again.model))  # seeded


def test_sam_neggrad_plus_still_forgets_a_class(digits, original, class_split):
    res = ob.unlearn(original, digits.train, class_split, method="neggrad+", sam_rho=0.05, seed=0, progress=False)
    task = ob.objectives.ClassificationTask(10)
    assert not res.diverged
    assert ob.metrics.accuracy(*task.predict(res.model, class_split.forget_set(digits.train))) < 0.1
    assert ob.metrics.accuracy(*task.predict(res.model, class_split.retain_set(digits.train))) > 0.9


def test_sam_on_a_causal_lm_conforms():
    """The LM loop's SAM path (NPO's forget loss reads reference likelihoods by row) on the tiny GPT."""
    pytest.importorskip("transformers")
    ob.testing.check_method("npo", architectures=("gpt",), params={"max_steps": 10, "sam_rho": 0.01})
    model, rows, held, tok = ob.testing._lm()
    split = ob.ForgetSplit.from_ids(len(rows), [2, 5, 7])
    kw = dict(seed=0, progress=False, val=held, task=CausalLMTask(tok), max_steps=10, stop="none")
    a = ob.unlearn(model, rows, split, method="ga", **kw)
    b = ob.unlearn(model, rows, split, method="ga", sam_rho=0.01, **kw)
    assert not same_state(state_of(a.model), state_of(b.model))


@pytest.mark.parametrize("method", ASCENT)
@pytest.mark.parametrize("rho", [-0.1, float("nan"), float("inf"), "0.1"])
def test_bad_rho_fails_before_work(method, rho):
    with pytest.raises(ValueError, match="sam_rho"):
        ob.methods.get(method)(sam_rho=rho)


def test_the_sam_option_lives_in_one_params_mixin():
    for method in ASCENT:
        assert issubclass(ob.methods.get(method).Params, common.ForgetStepParams)
