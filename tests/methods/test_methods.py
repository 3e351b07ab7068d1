import math

import pytest
import torch
import torch.nn.functional as F
from conftest import same_state, state_of

import obliviate as ob
from obliviate.objectives import ClassificationTask

ALL = ob.methods.available()
TASK = ClassificationTask(10)


def run(original, digits, split, method, **kw):
    return ob.unlearn(original, digits.train, split, method=method, seed=0, val=digits.val, progress=False, **kw)


def acc(model, ds):
    return ob.metrics.accuracy(*TASK.predict(model, ds))


def mean_loss(model, ds):
    return float(F.cross_entropy(*TASK.predict(model, ds)))


def test_registry_lists_the_core_methods():
    assert {"none", "retrain", "finetune", "neggrad", "neggrad+", "random-label", "scrub", "scrub+r"} <= set(ALL)


@pytest.mark.parametrize(
    "method",
    [
        m
        for m in ob.methods.available("classification")  # LM methods: LM defaults
        if "update_log" not in ob.methods.get(m).needs
    ],
)
def test_defaults_do_not_diverge_on_digits(method, digits, original, random_split):
    """The conformance suite (tests/test_testing.py) checks the contract on tiny models; here each
    method's *defaults* must run cleanly on the standard digits original."""
    a = run(original, digits, random_split, method)
    assert not a.diverged, a.notes
    assert all(torch.isfinite(v).all() for v in a.model.state_dict().values() if v.is_floating_point())


@pytest.mark.parametrize("method", ["neggrad", "neggrad+", "scrub", "random-label"])
def test_seed_changes_the_run(method, digits, original, random_split):
    a = ob.unlearn(original, digits.train, random_split, method=method, seed=0, progress=False)
    b = ob.unlearn(original, digits.train, random_split, method=method, seed=1, progress=False)
    assert not same_state(state_of(a.model), state_of(b.model))


def test_none_returns_an_identical_copy(digits, original, random_split):
    res = run(original, digits, random_split, "none")
    assert same_state(state_of(res.model), state_of(original))


def test_retrain_equals_training_on_the_retain_set(digits, recipe, original, random_split):
    res = run(original, digits, random_split, "retrain")
    oracle = ob.train(recipe, random_split.retain_set(digits.train), seed=0, progress=False)
    assert same_state(state_of(res.model), state_of(oracle))
    assert ob.training_log(res.model).n_examples == len(digits.train) - len(random_split)


def test_retrain_needs_a_recipe(digits, recipe, random_split):
    bare = ob.models.build("mlp", (1, 8, 8), 10, hidden=[256])
    with pytest.raises(ValueError, match="recipe"):
        ob.unlearn(bare, digits.train, random_split, method="retrain")
    res = ob.unlearn(
        bare, digits.train, random_split, method="retrain", recipe=recipe.replace(epochs=1), progress=False
    )
    assert res.method == "retrain"


@pytest.mark.parametrize("method", ["neggrad", "neggrad+", "scrub", "random-label", "finetune"])
def test_random_forgetting_raises_forget_loss(method, digits, original, random_split):
    """Every method moves the forget set's loss up from the original's (toward the oracle's)."""
    forget = random_split.forget_set(digits.train)
    res = run(original, digits, random_split, method)
    assert mean_loss(res.model, forget) > mean_loss(original, forget)
    assert acc(res.model, digits.test) > acc(original, digits.test) - 0.03


@pytest.mark.parametrize("method", ["neggrad+", "scrub", "scrub+r", "random-label"])
def test_class_forgetting_removes_the_class(method, digits, original, class_split):
    res = run(original, digits, class_split, method)
    forget = class_split.forget_set(digits.train)
    report = ob.evaluate(res.model, digits, class_split)
    assert acc(original, forget) > 0.95
    assert report["forget_acc"] <= 0.05
    assert report["forgotten_class_test_acc"] <= 0.1
    assert report["test_acc"] > ob.evaluate(original, digits, class_split)["test_acc"] - 0.03


def test_neggrad_without_retain_term_forgets_but_costs_more_utility(digits, original, class_split):
    plain = ob.evaluate(run(original, digits, class_split, "neggrad", lr=0.01, epochs=3).model, digits, class_split)
    plus = ob.evaluate(run(original, digits, class_split, "neggrad+").model, digits, class_split)
    assert plain["forget_acc"] <= 0.05
    assert plain["retain_acc"] < plus["retain_acc"] - 0.01


def test_finetune_touches_only_retain_data(digits, original, class_split):
    """Finetune never reads the forget set: poisoning its features changes nothing."""
    poisoned = ob.datasets.ArrayDataset(digits.train.x.clone(), digits.train.y.clone())
    poisoned.x[class_split.forget_ids] = float("nan")
    a = ob.unlearn(original, digits.train, class_split, method="finetune", progress=False)
    b = ob.unlearn(original, poisoned, class_split, method="finetune", progress=False)
    assert same_state(state_of(a.model), state_of(b.model))


def test_scrub_rewind_needs_validation_data(digits, original, random_split):
    with pytest.raises(ValueError, match="val="):
        ob.unlearn(original, digits.train, random_split, method="scrub+r", progress=False)


def test_scrub_rewind_picks_the_checkpoint_closest_to_heldout_error(digits, original, random_split):
    res = run(original, digits, random_split, "scrub+r")
    rewind = next(h for h in res.history if "rewind_epoch" in h)
    assert 1 <= rewind["rewind_epoch"] <= 3
    assert "rewound to epoch" in res.notes[0]


def test_nan_loss_stops_and_keeps_the_last_finite_model(digits, original, random_split):
    bad = ob.datasets.ArrayDataset(digits.train.x.clone(), digits.train.y.clone())
    bad.x[random_split.forget_ids[0]] = float("inf")
    res = ob.unlearn(original, bad, random_split, method="neggrad", progress=False)
    assert res.diverged and "rolled back" in res.notes[0]
    assert same_state(state_of(res.model), state_of(original))  # nothing finite was reached


def test_utility_collapse_is_detected_and_rolled_back(digits, original, random_split):
    res = ob.unlearn(
        original, digits.train, random_split, method="neggrad", lr=1.0, epochs=3, loss_cap=None, progress=False
    )
    assert res.diverged
    for value in res.model.state_dict().values():
        assert torch.isfinite(value).all()
    assert acc(res.model, digits.test) > 0.9  # the rolled-back model is still usable


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "forget-everything"}, "unknown method"),
        ({"method": "scrub", "learning_rate": 0.1}, "unknown parameter"),
        ({"method": "scrub", "lr": -1.0}, "lr must be > 0"),
        ({"method": "neggrad+", "beta": 1.5}, "beta must be in"),
        ({"method": "finetune", "epochs": 0}, "epochs must be"),
    ],
)
def test_bad_method_arguments_fail_before_work(digits, original, random_split, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ob.unlearn(original, digits.train, random_split, **kwargs)


def test_labels_outside_the_model_and_shape_mismatch(digits, original):
    wide = ob.datasets.ArrayDataset(digits.train.x, digits.train.y.clone())
    wide.y[0] = 12
    split = ob.ForgetSplit.from_ids(wide, [0, 1])
    with pytest.raises(ValueError, match="labels span 0..12"):
        ob.unlearn(original, wide, split, method="finetune")
    wine = ob.datasets.load("wine")
    split = ob.ForgetSplit.from_ids(wine.train, [0, 1])
    with pytest.raises(ValueError, match="cannot take inputs of shape"):
        ob.unlearn(original, wine.train, split, method="finetune")


def test_split_for_another_dataset_is_refused(digits, original):
    split = ob.ForgetSplit.from_ids(100, [1, 2])
    with pytest.raises(ValueError, match="made for 100"):
        ob.unlearn(original, digits.train, split, method="finetune")


def test_inplace_modifies_the_given_model(digits, recipe, random_split):
    model = ob.train(recipe.replace(epochs=2), digits.train, seed=0, progress=False)
    before = state_of(model)
    res = ob.unlearn(model, digits.train, random_split, method="neggrad", inplace=True, progress=False)
    assert res.model is model and not same_state(state_of(model), before)


def test_result_save_load_roundtrip(tmp_path, digits, original, random_split):
    res = run(original, digits, random_split, "neggrad+")
    res.save(tmp_path / "r")
    back = ob.UnlearningResult.load(tmp_path / "r")
    assert same_state(state_of(back.model), state_of(res.model))
    assert back.method == "neggrad+" and back.params == res.params and back.split_hash == random_split.hash
    assert math.isclose(back.seconds, res.seconds)


def test_custom_factory_models_unlearn_and_the_log_is_never_copied(digits, random_split):
    """A model from a user factory can be unlearned without recipe= (only retrain needs one), and
    the original's training log (possibly a large update log) stays with the original."""
    recipe = ob.Recipe(
        "custom",
        (1, 8, 8),
        10,
        factory=lambda: torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        ),
        epochs=3,
    )
    model = ob.train(recipe, digits.train, seed=0, progress=False, log_updates=random_split.forget_ids)
    res = ob.unlearn(model, digits.train, random_split, method="finetune", epochs=1, progress=False)
    assert not hasattr(res.model, "obliviate_log") and model.obliviate_log.updates is not None
    with pytest.raises(ValueError, match="recipe"):
        ob.unlearn(model, digits.train, random_split, method="retrain", progress=False)


def test_eval_mode_restores_each_modules_own_flag_even_on_error():
    from obliviate.utils import eval_mode

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Dropout())
    model[1].eval()  # a frozen norm layer inside a training model: a blanket model.train(True) would wake it
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("inside")
    assert [m.training for m in model.modules()] == [True, True, False, True]


def test_epoch_helper_numbers_epochs_trains_each_and_logs_through_the_context(digits, original, random_split):
    from obliviate.methods.base import Method
    from obliviate.methods.common import epochs

    seen, after = [], []

    class Probe(Method):
        name = "probe"
        Params = ob.methods.Params

        def run(self, model, ctx):
            def body(e):
                seen.append((e, model.training))
                model.eval()  # the next epoch must still start in train mode
                return {"x": float(e)}

            epochs(model, ctx, 3, "probe", body, first=1, after=after.append)
            return model

    res = ob.unlearn(original, digits.train, random_split, method=Probe(), seed=0, progress=False)
    assert seen == [(1, True), (2, True), (3, True)] and after == [1, 2, 3]
    assert [(h["epoch"], h["x"]) for h in res.history] == [(1, 1.0), (2, 2.0), (3, 3.0)]
