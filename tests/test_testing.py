"""The conformance suite over every registered method, and proof that it catches violations."""

import dataclasses
import time
from dataclasses import dataclass

import pytest
import torch

import obliviate as ob
from obliviate.methods.base import Context, Method, OptimParams, Params
from obliviate.methods.common import forward_losses, step
from obliviate.testing import check_method

CLASSIFICATION = [m for m in ob.methods.available() if "classification" in ob.methods.get(m).modalities]


@pytest.mark.parametrize("method", CLASSIFICATION)
def test_every_registered_method_conforms(method):
    ran = check_method(method, architectures=("mlp", "cnn"))
    assert {"untouched", "deterministic", "stateless", "reads", "finite", "recorded"} <= set(ran)


@pytest.mark.parametrize("method", ob.methods.available("lm"))
def test_every_lm_method_conforms_on_a_tiny_gpt(method):
    """Every method declaring the causal-LM modality (idk and rmu included), 10 steps per run."""
    pytest.importorskip("transformers")
    fields = {f.name for f in dataclasses.fields(ob.methods.get(method).Params)}
    ran = check_method(method, architectures=("gpt",), params={"max_steps": 10} if "max_steps" in fields else {})
    assert {"untouched", "deterministic", "stateless", "reads", "finite", "recorded"} <= set(ran)


def test_check_method_covers_the_modalities_a_method_declares():
    from obliviate.testing import _architectures

    assert _architectures(ob.methods.get("ssd")) == ("mlp", "cnn")
    assert _architectures(ob.methods.get("scrub")) == ("mlp", "cnn", "denoiser")  # it runs on denoisers too
    assert _architectures(ob.methods.get("npo")) == ("mlp", "cnn", "gpt")
    assert _architectures(ob.methods.get("rmu")) == ("gpt",)


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


class _Stateful(Method):
    """Keeps a per-run value on the instance (not registered)."""

    name = "stateful"

    @dataclass(frozen=True)
    class Params(Params):
        pass

    def run(self, model, ctx: Context):
        self.forget_size = len(ctx.forget)
        return model


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (_SneakyFinetune, "[reads]"),
        (_Unseeded, "[deterministic]"),
        (_IgnoresBudget, "[budget]"),
        (_Stateful, "[stateless]"),
    ],
)
def test_check_method_catches_violations(cls, check):
    with pytest.raises(AssertionError, match=check.replace("[", r"\[").replace("]", r"\]")):
        check_method(cls, architectures=("mlp",))


@pytest.mark.parametrize(("cls", "check"), [(_SneakyFinetune, "[reads]"), (_Unseeded, "[deterministic]")])
def test_check_method_catches_violations_on_the_tiny_gpt(cls, check):
    pytest.importorskip("transformers")
    any_model = type(cls.__name__, (cls,), {"modalities": frozenset({"classification", "lm"})})
    with pytest.raises(AssertionError, match=check.replace("[", r"\[").replace("]", r"\]")):
        check_method(any_model, architectures=("gpt",))


def test_budget_stops_a_long_run_and_says_so(digits, original, random_split):
    res = ob.unlearn(original, digits.train, random_split, method="finetune", epochs=500, budget=0.3, progress=False)
    assert res.seconds < 0.3 + 2
    assert any("budget" in n for n in res.notes) and not res.diverged
    with pytest.raises(ValueError, match="budget"):
        ob.unlearn(original, digits.train, random_split, method="finetune", budget=0)
