"""Shared fixtures: real digits data, a small MLP recipe, trained originals and oracles (seconds)."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLCONFIGDIR", tempfile.mkdtemp(prefix="mpl-"))

import pytest
import torch

import obliviate as ob

torch.set_num_threads(int(os.environ.get("OBLIVIATE_THREADS", "2")))


@pytest.fixture(scope="session")
def digits():
    return ob.datasets.load("digits", val_fraction=0.5)


@pytest.fixture(scope="session")
def recipe(digits):
    return ob.Recipe.default_for(digits).replace(epochs=20)


@pytest.fixture(scope="session")
def original(digits, recipe):
    return ob.train(recipe, digits.train, seed=0, progress=False)


@pytest.fixture(scope="session")
def random_split(digits):
    return ob.ForgetSplit.random(digits.train, fraction=0.1, seed=0)


@pytest.fixture(scope="session")
def class_split(digits):
    return ob.ForgetSplit.by_class(digits.train, [3])


def state_of(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
