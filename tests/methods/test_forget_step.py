"""The ascent methods' forget step options. Sharpness-aware (``sam_rho=``, Fan et al. 2025): the step's
gradient is the forget gradient at θ + ρ·g/‖g‖ plus the retain gradient at θ, θ is restored exactly.
GRU projection (``grad_projection=``, Wang et al. 2025): the forget gradient loses its component
against the EMA of the retain gradient. Off (0) never enters either path; on changes the update;
bad values fail."""

from types import SimpleNamespace

import pytest
import torch
from conftest import same_state, state_of
from torch import nn

import obliviate as ob
from obliviate.methods import common
from obliviate.methods.common import forget_step
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

    ctx = SimpleNamespace(check_loss=lambda loss, where: None, after_step=lambda m: None, state={})
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    p = SimpleNamespace(sam_rho=rho, grad_projection=0.0)
    forget_step(model, opt, p, ctx, "toy", forget_loss(), forget_again=forget_loss, retain_loss=retain_loss())
    torch.testing.assert_close(model.weight.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(expected, theta - (g_f + g_r), atol=1e-4)  # SAM is not the plain step here


def test_sam_step_rejects_a_non_finite_perturbed_loss_and_restores_theta():
    model = nn.Linear(2, 1)
    before = state_of(model)
    x = torch.randn(4, 2)

    def check(loss, where):
        if not torch.isfinite(loss):
            raise ob.methods.Diverged(where)

    ctx = SimpleNamespace(check_loss=check, after_step=lambda m: None, state={})
    with pytest.raises(ob.methods.Diverged, match="SAM point"):
        forget_step(
            model,
            torch.optim.SGD(model.parameters(), lr=1.0),
            SimpleNamespace(sam_rho=0.1, grad_projection=0.0),
            ctx,
            "toy",
            model(x).mean(),
            forget_again=lambda: torch.tensor(float("nan")),
        )
    assert same_state(state_of(model), before)


def test_gru_projects_the_forget_gradient_against_the_retain_ema():
    """Two SGD steps (lr 1) on a 3-weight model, computed by hand: step 1's EMA is g_r itself, step 2's
    is γ·g_r + (1−γ)·EMA₁; g_f is projected only when it points against the EMA. With a retain term the
    update is proj(g_f) + g_r; with a probe only proj(g_f). Skipping the projection, using the current
    g_r instead of the EMA, or applying the probe's gradient each give other weights."""
    torch.manual_seed(1)
    xf, xr = torch.randn(5, 3), torch.randn(7, 3)

    def f_loss(w):
        return ((xf @ w.T) ** 2).mean() * -1.0  # ascent: pushes the weights to grow

    def r_loss(w):
        return (((xr @ w.T) - 1) ** 2).mean()

    def project(g, e):
        d = torch.dot(g.flatten(), e.flatten())
        return g - d / torch.dot(e.flatten(), e.flatten()) * e if d < 0 else g

    gamma = 0.8
    for with_retain in (True, False):
        model = nn.Linear(3, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[0.5, -1.0, 0.3]]))
        w = model.weight.detach().clone()
        ema = None
        for _ in range(2):
            wr = w.clone().requires_grad_(True)
            g_f = torch.autograd.grad(f_loss(wr), wr)[0]
            g_r = torch.autograd.grad(r_loss(wr), wr)[0]
            ema = g_r if ema is None else gamma * g_r + (1 - gamma) * ema
            w = w - (project(g_f, ema) + (g_r if with_retain else 0))
        ctx = SimpleNamespace(check_loss=lambda loss, where: None, after_step=lambda m: None, state={})
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        p = SimpleNamespace(sam_rho=0.0, grad_projection=gamma)
        for _ in range(2):
            kw = (
                {"retain_loss": r_loss(model.weight)} if with_retain else {"retain_probe": lambda: r_loss(model.weight)}
            )
            forget_step(model, opt, p, ctx, "toy", f_loss(model.weight), **kw)
        assert ctx.state["gru_projected"] >= 1  # the case exercises the projection
        torch.testing.assert_close(model.weight.detach(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ASCENT)
def test_options_off_never_leave_the_plain_step(method, digits, original, class_split, monkeypatch):
    """sam_rho = grad_projection = 0 runs the method's plain step (verified bit-identical to the code
    before either option existed); each option on changes the update, and stays seeded."""

    def forbidden(*args, **kwargs):
        raise AssertionError("an option's path was taken with the option off")

    for name in ("_at_sam_point", "_project"):
        monkeypatch.setattr(common, name, forbidden)
    run = dict(seed=0, progress=False, **_kw(method))
    plain = ob.unlearn(original, digits.train, class_split, method=method, **run)
    zero = ob.unlearn(original, digits.train, class_split, method=method, sam_rho=0.0, grad_projection=0.0, **run)
    assert same_state(state_of(plain.model), state_of(zero.model))
    monkeypatch.undo()
    for option in ({"sam_rho": 0.05}, {"grad_projection": 0.8}):
        on = ob.unlearn(original, digits.train, class_split, method=method, **option, **run)
        assert not same_state(state_of(plain.model), state_of(on.model))
        again = ob.unlearn(original, digits.train, class_split, method=method, **option, **run)
        assert same_state(state_of(on.model), state_of(again.model))  # seeded


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


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), True, "0.8"])
def test_bad_grad_projection_fails_before_work(value):
    with pytest.raises(ValueError, match="grad_projection"):
        ob.methods.get("neggrad")(grad_projection=value)


def test_gru_on_neggrad_conforms_and_keeps_more_of_the_retain_set(digits, original, class_split):
    """GRU's point: the same ascent, projected off the retain gradient, forgets the class as fully and
    costs less retain accuracy (measured on this fixture: 92.1% plain, 93.8% projected; at 2 epochs
    plain collapses and is rolled back, while the projected run keeps going)."""
    ob.testing.check_method("neggrad", params={"grad_projection": 0.8})
    task = ob.objectives.ClassificationTask(10)
    retain = class_split.retain_set(digits.train)
    kw = dict(seed=0, progress=False, lr=0.03, epochs=1)
    plain = ob.unlearn(original, digits.train, class_split, method="neggrad", **kw)
    gru = ob.unlearn(original, digits.train, class_split, method="neggrad", grad_projection=0.8, **kw)
    forget = class_split.forget_set(digits.train)
    assert max(ob.metrics.accuracy(*task.predict(r.model, forget)) for r in (plain, gru)) < 0.05
    acc = {k: ob.metrics.accuracy(*task.predict(r.model, retain)) for k, r in (("plain", plain), ("gru", gru))}
    assert acc["gru"] > acc["plain"] + 0.01, acc


def test_the_sam_option_lives_in_one_params_mixin():
    for method in ASCENT:
        assert issubclass(ob.methods.get(method).Params, common.ForgetStepParams)
