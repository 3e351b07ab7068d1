import dataclasses

import pytest
import torch

import obliviate as ob


@pytest.fixture(scope="module")
def val_oracle(digits, recipe, random_split):
    return ob.train(recipe, random_split.retain_set(digits.train), seed=1000, progress=False)


def test_tune_starts_from_the_defaults_and_never_does_worse(digits, original, random_split, val_oracle):
    res = ob.tune("finetune", digits, random_split, original=original, oracle=val_oracle, budget=4, progress=False)
    assert len(res.trials) == 4 and res.method == "finetune" and res.objective == "avg_gap"
    defaults = res.trials.iloc[0]
    assert defaults["lr"] == ob.methods.get("finetune").Params().lr
    assert res.best_score == res.trials["score"].min() <= defaults["score"]
    assert set(res.best_params) == {"lr", "epochs"}
    assert len({(r.lr, r.epochs) for r in res.trials.itertuples()}) == 4  # distinct configurations
    again = ob.tune("finetune", digits, random_split, original=original, oracle=val_oracle, budget=4, progress=False)
    assert again.best_params == res.best_params and again.trials["score"].tolist() == res.trials["score"].tolist()


def test_tune_never_reads_the_test_set(digits, original, random_split, val_oracle):
    kw = dict(original=original, oracle=val_oracle, budget=2, progress=False, space={"lr": (1e-3, 1e-2)})
    real = ob.tune("neggrad+", digits, random_split, **kw)
    scrambled_test = ob.datasets.from_arrays(
        digits.train.x, digits.train.y, torch.randn_like(digits.test.x), torch.zeros_like(digits.test.y)
    ).test
    fake = ob.tune("neggrad+", dataclasses.replace(digits, test=scrambled_test), random_split, **kw)
    assert fake.trials["score"].tolist() == real.trials["score"].tolist()


def test_diverged_trials_are_recorded_but_never_chosen(digits, original, random_split, val_oracle):
    res = ob.tune(
        "neggrad",
        digits,
        random_split,
        original=original,
        oracle=val_oracle,
        budget=3,
        space={"lr": (1e-3, 50.0)},
        fixed={"loss_cap": None, "grad_clip": None},
        progress=False,
    )
    wild = res.trials[res.trials["lr"] == 50.0].iloc[0]
    assert wild["diverged"] and res.best_params["lr"] == 1e-3


def test_tune_result_round_trips_and_feeds_unlearn(tmp_path, digits, original, random_split, val_oracle):
    res = ob.tune(
        "random-label",
        digits,
        random_split,
        original=original,
        oracle=val_oracle,
        budget=2,
        objective="tow",
        progress=False,
    )
    back = ob.TuneResult.load(res.save(tmp_path / "tune.json"))
    assert back.best_params == res.best_params and back.trials.shape == res.trials.shape
    out = ob.unlearn(original, digits.train, random_split, method="random-label", progress=False, **back.best_params)
    assert out.params["lr"] == res.best_params["lr"]


def test_tune_validates_its_inputs(digits, original, random_split):
    with pytest.raises(ValueError, match="validation"):
        ob.tune("finetune", dataclasses.replace(digits, val=None), random_split, original=original)
    with pytest.raises(ValueError, match="objective"):
        ob.tune("finetune", digits, random_split, original=original, objective="accuracy")
    with pytest.raises(ValueError, match="unknown parameter"):
        ob.tune("finetune", digits, random_split, original=original, space={"momentumm": (0.9,)})
