"""Methods written against the Task protocol run on a denoiser through the diffusion adapter unchanged.

They declare the classification modality only, so ``ob.unlearn`` refuses them on a denoiser until
their ``modalities`` include "diffusion"; here a subclass that adds it (and nothing else) shows that
their code runs as is and passes the conformance suite on the unit-test denoiser.
"""

import pytest

import obliviate as ob
from obliviate.testing import check_method

#: methods that need only per-example losses, relabelled batches and distillation: these run
GENERIC = ["finetune", "neggrad", "neggrad+", "random-label", "salun", "salun-soft", "scrub", "l1-sparse"]


def with_diffusion(name):
    cls = ob.methods.get(name)
    return type(cls.__name__, (cls,), {"modalities": cls.modalities | {"diffusion"}})


@pytest.mark.parametrize("name", GENERIC)
def test_generic_method_conforms_on_a_denoiser(name):
    assert "deterministic" in check_method(with_diffusion(name), architectures=("denoiser",))


@pytest.mark.parametrize("name", ["ga", "grad-diff", "npo"])
def test_lm_loop_methods_conform_with_a_fixed_stop(name):
    """The LM loop's stopping rule compares memorization with γ; a denoiser has no held-out
    sequences to calibrate γ on, so they run for a fixed number of steps."""
    check_method(with_diffusion(name), architectures=("denoiser",), params={"stop": "none", "max_steps": 5})


def test_classification_only_methods_are_refused_clearly():
    data = ob.datasets.load("digits")
    split = ob.ForgetSplit.by_class(data.train, [3])
    from obliviate.testing import _denoiser

    with pytest.raises(ValueError, match="not diffusion"):
        ob.unlearn(_denoiser(), data.train, split, method="amnesiac-relabel")
