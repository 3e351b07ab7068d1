"""The conformance suite over every registered method, and proof that it catches violations."""

import time
from dataclasses import dataclass

import pytest
import torch

import obliviate as ob
from obliviate.methods.base import Context, Method, OptimParams, Params
from obliviate.methods.common import forward_losses, step
from obliviate.testing import check_method


@pytest.mark.parametrize("method", [m for m in ob.methods.available() if "classification" in ob.methods.get(m).modalities])
def test_every_registered_method_conforms(method):
    ran = check_method(method)
    assert {"untouched", "deterministic", "reads", "finite", "recorded"} <= set(ran)


class _SneakyFinetune(Method):
    """Declares retain-only but also trains on the forget set (not registered)."""

    name = "sneaky"
    reads = frozenset({"retain"})

    @dataclass(frozen=True)
    class Params(OptimParams):
        pass

    def run(self, model, ctx: Context):
        opt = self.params.make_optimizer(model)
        for ds in (ctx.retain, ctx.forget):
            for _, batch in ctx.task.batches(ds, 64, shuffle=True, generator=ctx.generator):
                step(model, opt, forward_losses(model, ctx, batch)[1].mean(), ctx, "sneaky")
        return model


class _Unseeded(Method):
    """Draws noise from an RNG outside the seeded context (not registered)."""

    name = "unseeded"

    @dataclass(frozen=True)
    class Params(Params):
        pass

    def run(self, model, ctx: Context):
        rng = torch.Generator().manual_seed(time.perf_counter_ns())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=rng))
        return model


class _IgnoresBudget(Method):
    """Keeps working without ever reporting a step (not registered)."""

    name = "slow"

    @dataclass(frozen=True)
    class Params(Params):
        epochs: int = 1

    def run(self, model, ctx: Context):
        time.sleep(0.02 * self.params.epochs)
        return model


@pytest.mark.parametrize(
    ("cls", "check"), [(_SneakyFinetune, "[reads]"), (_Unseeded, "[deterministic]"), (_IgnoresBudget, "[budget]")]
)
def test_check_method_catches_violations(cls, check):
    with pytest.raises(AssertionError, match=check.replace("[", r"\[").replace("]", r"\]")):
        check_method(cls, architectures=("mlp",))


def test_budget_stops_a_long_run_and_says_so(digits, original, random_split):
    res = ob.unlearn(original, digits.train, random_split, method="finetune", epochs=500, budget=0.3, progress=False)
    assert res.seconds < 0.3 + 2
    assert any("budget" in n for n in res.notes) and not res.diverged
    with pytest.raises(ValueError, match="budget"):
        ob.unlearn(original, digits.train, random_split, method="finetune", budget=0)
