"""UNDO (Lee et al. 2025): unlearn with a base method, noise a copy toward a fresh initialisation,
distil. Checked on digits and the tiny GPT: the noise is the stated mixture, α = 0 leaves the base
method's result, the run is seeded and conformant, it still forgets, and bad input fails early."""

import copy

import pytest
import torch
from conftest import same_state, state_of
from torch import nn

import obliviate as ob
from obliviate.methods import undo
from obliviate.methods.undo import fresh_init, toward_init
from obliviate.objectives import CausalLMTask, ClassificationTask

TASK = ClassificationTask(10)


def acc(model, ds):
    return ob.metrics.accuracy(*TASK.predict(model, ds))


def test_undo_conforms():
    ran = ob.testing.check_method("undo")
    assert {"untouched", "deterministic", "stateless", "reads", "finite", "recorded", "budget"} <= set(ran)


def test_noise_is_the_stated_mixture_toward_a_weight_independent_init(original, digits, recipe):
    """θ' = (1 − α)θ + αβ·θ_init; at α = 1, β = 1 two differently trained models land on the same
    weights (the init does not depend on the weights it replaces), and another seed lands elsewhere."""
    theta = state_of(original)
    init = dict(fresh_init(original, seed=7).named_parameters())
    noised = copy.deepcopy(original)
    toward_init(noised, 0.3, 0.5, seed=7)
    for name, q in noised.named_parameters():
        torch.testing.assert_close(q.detach(), 0.7 * theta[name] + 0.3 * 0.5 * init[name].detach())
        assert not torch.allclose(q, theta[name])

    other = ob.train(recipe, digits.train, seed=1, progress=False)
    a, b, c = (fresh_init(m, seed=s) for m, s in ((original, 7), (other, 7), (original, 8)))
    assert same_state(state_of(a), state_of(b))
    assert not same_state(state_of(a), state_of(c))
    assert not any(torch.equal(a.state_dict()[k], v) for k, v in theta.items())


def test_the_run_distils_into_the_noised_base_result(digits, original, class_split, monkeypatch):
    """With distillation switched off the run returns exactly the base result noised with the
    recorded init seed; with it, the distilled student is what the run returns."""
    base = ob.unlearn(original, digits.train, class_split, method="neggrad+", seed=0, progress=False)
    monkeypatch.setattr(undo, "epochs", lambda *args, **kwargs: None)
    noised = ob.unlearn(original, digits.train, class_split, method="undo", alpha=0.4, seed=0, progress=False)
    row = next(r for r in noised.history if r.get("stage") == "noised")
    assert row["base"] == "neggrad+"
    expected = copy.deepcopy(base.model)
    toward_init(expected, 0.4, 1.0, row["init_seed"])
    assert same_state(state_of(noised.model), state_of(expected))
    monkeypatch.undo()
    full = ob.unlearn(original, digits.train, class_split, method="undo", alpha=0.4, seed=0, progress=False)
    assert [r["epoch"] for r in full.history if "retain_kl" in r] == [0, 1, 2, 3, 4]
    # the teacher is the base result, not the noised copy: distillation pulls the student's retain
    # outputs toward the base result's
    retain = class_split.retain_set(digits.train)
    teacher = TASK.predict(base.model, retain)[0]
    kl_noised = float(TASK.kd_loss(TASK.predict(expected, retain)[0], teacher, None, 1.0).mean())
    kl_distilled = float(TASK.kd_loss(TASK.predict(full.model, retain)[0], teacher, None, 1.0).mean())
    assert kl_distilled < 0.5 * kl_noised


def test_alpha_zero_is_the_base_method(digits, original, class_split):
    """α = 0: the student starts as the teacher, so distilling (plain SGD) leaves it where it is, up
    to the rounding of softmax outputs that sum to 1 ± ulp: the base method's result."""
    base = ob.unlearn(original, digits.train, class_split, method="neggrad+", seed=0, progress=False)
    res = ob.unlearn(
        original, digits.train, class_split, method="undo", alpha=0.0, optimizer="sgd", momentum=0.0, lr=0.01,
        seed=0, progress=False,
    )  # fmt: skip
    for k, v in base.model.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v, rtol=0, atol=1e-6)
    half = ob.unlearn(original, digits.train, class_split, method="undo", alpha=0.5, seed=0, progress=False)
    assert max((half.model.state_dict()[k] - v).abs().max() for k, v in base.model.state_dict().items()) > 0.01


def test_undo_forgets_a_class_and_keeps_the_rest(digits, original, class_split):
    res = ob.unlearn(original, digits.train, class_split, method="undo", seed=0, progress=False)
    assert not res.diverged, res.notes
    assert acc(res.model, class_split.forget_set(digits.train)) < 0.05
    other = torch.nonzero(digits.test.y != 3).squeeze(1)
    assert acc(res.model, digits.test.subset(other)) > 0.9 * acc(original, digits.test.subset(other))


def test_base_params_reach_the_base_method(digits, original, class_split):
    a = ob.unlearn(original, digits.train, class_split, method="undo", epochs=1, seed=0, progress=False)
    b = ob.unlearn(
        original, digits.train, class_split, method="undo", epochs=1, base="neggrad", base_params={"lr": 3e-3},
        seed=0, progress=False,
    )  # fmt: skip
    assert b.params["base"] == "neggrad" and b.params["base_params"] == {"lr": 3e-3}
    assert not same_state(state_of(a.model), state_of(b.model))


def test_fresh_init_of_a_gpt_redraws_every_weight_matrix():
    """GPT-2's Conv1D has no reset_parameters: the model's own _init_weights must redraw it."""
    pytest.importorskip("transformers")
    model, *_ = ob.testing._lm()
    fresh = fresh_init(model, seed=0)
    for (name, q), q0 in zip(model.named_parameters(), fresh.parameters()):
        if q.dim() == 2:
            assert not torch.equal(q, q0), name
    assert same_state(state_of(fresh), state_of(fresh_init(model, seed=0)))


def test_undo_runs_on_a_causal_lm_with_its_lm_base():
    pytest.importorskip("transformers")
    model, rows, held, tok = ob.testing._lm()
    split = ob.ForgetSplit.from_ids(len(rows), [2, 5, 7])
    kw = dict(seed=0, progress=False, val=held, task=CausalLMTask(tok))
    res = ob.unlearn(model, rows, split, method="undo", base_params={"max_steps": 10}, epochs=2, **kw)
    assert next(r for r in res.history if r.get("stage") == "noised")["base"] == "npo"
    with pytest.raises(ValueError, match="neggrad"):
        ob.unlearn(model, rows, split, method="undo", base="neggrad+", **kw)


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x * self.gain


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"base": "nope"}, "unknown method"),
        ({"base": "undo"}, "itself"),
        ({"base": "neggrad", "base_params": {"bogus": 1}}, "bogus"),
        ({"base_params": [("lr", 1)]}, "base_params"),
        ({"init_scale": -1.0}, "init_scale"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_params_fail_before_work(params, match):
    with pytest.raises(ValueError, match=match):
        ob.methods.get("undo")(**params)


def test_a_module_without_an_initialiser_is_refused():
    with pytest.raises(ValueError, match="_Scaled"):
        fresh_init(nn.Sequential(nn.Linear(3, 3), _Scaled()), seed=0)
