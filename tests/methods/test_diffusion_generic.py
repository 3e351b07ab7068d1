"""Methods written against the Task protocol run on a denoiser through the diffusion adapter unchanged.

The generic ones declare the "diffusion" modality, so the registry lists them for denoisers and
``ob.unlearn`` runs them; each passes the conformance suite on the unit-test denoiser. The LM loop's
methods (ga, grad-diff, npo) run through the adapter too, but only with a fixed stop: they stay
unregistered for denoisers (see ``test_lm_loop_methods_conform_with_a_fixed_stop``).
"""

import pytest

import obliviate as ob
from obliviate.testing import _denoiser, check_method

#: methods that need only per-example losses, relabelled batches and distillation: these run
GENERIC = ["finetune", "neggrad", "neggrad+", "random-label", "salun", "salun-soft", "scrub", "l1-sparse"]


def test_registry_lists_the_diffusion_methods():
    diffusion = set(ob.methods.available("diffusion"))
    assert diffusion == {*GENERIC, "esd", "concept-ablation", "none", "retrain"}
    # declaring "diffusion" as well keeps a method a classification method, not an LM one
    assert set(GENERIC) <= set(ob.methods.available("classification"))
    assert not set(GENERIC) & set(ob.methods.available("lm"))
    assert "esd" not in ob.methods.available("classification")


@pytest.mark.parametrize("name", GENERIC)
def test_generic_method_conforms_on_a_denoiser(name):
    assert "deterministic" in check_method(ob.methods.get(name), architectures=("denoiser",))


def with_diffusion(name):
    cls = ob.methods.get(name)
    return type(cls.__name__, (cls,), {"modalities": cls.modalities | {"diffusion"}})


@pytest.mark.parametrize("name", ["ga", "grad-diff", "npo"])
def test_lm_loop_methods_conform_with_a_fixed_stop(name):
    """The LM loop's stopping rule compares memorization with γ calibrated on held-out sequences; a
    denoiser has neither, so these run only for a fixed number of steps, and are not registered for
    denoisers: a subclass that adds the modality shows their code runs through the adapter as is."""
    assert name not in ob.methods.available("diffusion")
    check_method(with_diffusion(name), architectures=("denoiser",), params={"stop": "none", "max_steps": 5})


def test_classification_only_methods_are_refused_clearly():
    data = ob.datasets.load("digits")
    split = ob.ForgetSplit.by_class(data.train, [3])
    for method in ("amnesiac-relabel", "scrub+r", "npo"):
        with pytest.raises(ValueError, match="not diffusion"):
            ob.unlearn(_denoiser(), data.train, split, method=method)
