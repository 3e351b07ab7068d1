"""SCRUB+R rewinds to the epoch whose forget error is closest to the held-out reference: each
epoch's model is recorded by a spy on SCRUB's epoch loop and its errors are recomputed here."""

import copy

import pytest
import torch
from conftest import same_state, state_of

import obliviate as ob
from obliviate.methods.scrub import ScrubRewind
from obliviate.objectives import ClassificationTask

TASK = ClassificationTask(10)


def error(model, ds):
    logits, y = TASK.predict(model, ds)
    return float((logits.argmax(-1) != y).double().mean())


def test_scrub_rewind_returns_the_epoch_closest_to_the_heldout_error(digits, original, random_split, monkeypatch):
    states = []
    scrub = ScrubRewind.scrub

    def spy(self, model, ctx, after_epoch=None):
        def record(e):
            states.append(state_of(model))
            after_epoch(e)

        scrub(self, model, ctx, record)

    monkeypatch.setattr(ScrubRewind, "scrub", spy)
    res = ob.unlearn(original, digits.train, random_split, method="scrub+r", seed=0, val=digits.val, progress=False)
    assert len(states) == 3
    models = [copy.deepcopy(original) for _ in states]
    for m, s in zip(models, states):
        m.load_state_dict(s)
    forget = random_split.forget_set(digits.train)
    held_out = digits.val.subset(torch.nonzero(torch.isin(digits.val.y, torch.unique(forget.y))).flatten())
    reference = error(models[-1], held_out)  # the final model on held-out examples of D_f's classes
    gaps = [abs(error(m, forget) - reference) for m in models]
    best = min(range(3), key=gaps.__getitem__)
    closest, runner_up = sorted(gaps)[:2]
    assert closest < runner_up  # a unique best, so picking the farthest epoch instead would show
    rewind = next(h for h in res.history if "rewind_epoch" in h)
    assert rewind["reference_error"] == pytest.approx(reference, abs=1e-6) and rewind["rewind_epoch"] == best + 1
    assert same_state(state_of(res.model), states[best])
    assert f"rewound to epoch {best + 1}" in res.notes[0]
