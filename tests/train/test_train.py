import pickle

import pytest
import torch
from conftest import same_state, state_of

import obliviate as ob
from obliviate.objectives import ClassificationTask


def test_training_is_deterministic_under_a_seed(digits, recipe):
    r = recipe.replace(epochs=3)
    a = ob.train(r, digits.train, seed=5, progress=False)
    b = ob.train(r, digits.train, seed=5, progress=False)
    c = ob.train(r, digits.train, seed=6, progress=False)
    assert same_state(state_of(a), state_of(b))
    assert not same_state(state_of(a), state_of(c))


def test_training_does_not_disturb_the_global_rng(digits, recipe):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ob.train(recipe.replace(epochs=1), digits.train, seed=0, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_original_fits_the_training_set_and_logs_learning_events(digits, recipe, original):
    task = ClassificationTask(10)
    train_acc = ob.metrics.accuracy(*task.predict(original, digits.train))
    test_acc = ob.metrics.accuracy(*task.predict(original, digits.test))
    assert train_acc > 0.98 and test_acc > 0.93
    log = ob.training_log(original)
    assert log.confidence.shape == (recipe.epochs, len(digits.train))
    assert log.seed == 0 and log.seconds > 0 and log.recipe == recipe.to_dict()
    assert 0 <= float(log.confidence.min()) and float(log.confidence.max()) <= 1
    # confidence rises as the model learns
    assert log.confidence[-1].mean() > log.confidence[0].mean() + 0.2


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet18"])
def test_architectures_build_and_run(arch):
    model = ob.models.build(arch, (1, 8, 8), 10)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_recipe_defaults_and_roundtrip(digits):
    r = ob.Recipe.default_for(digits)
    assert ob.Recipe.from_dict(r.to_dict()) == r
    assert ob.Recipe.default_for(ob.datasets.load("wine")).architecture == "mlp"
    fake = ob.datasets.from_arrays(torch.zeros(4, 1, 28, 28), [0, 1, 0, 1], torch.zeros(2, 1, 28, 28), [0, 1])
    assert ob.Recipe.default_for(fake).architecture == "cnn"
    with pytest.raises(ValueError, match="optimizer"):
        r.replace(optimizer="lbfgs")


def test_custom_factory_recipe(digits):
    r = ob.Recipe(factory=lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), epochs=2)
    model = ob.train(r, digits.train, seed=0, progress=False)
    assert isinstance(model[1], torch.nn.Linear)
    with pytest.raises(ValueError, match="custom model factory"):
        ob.Recipe.from_dict(r.to_dict())


def test_training_refuses_labels_beyond_the_model(digits):
    r = ob.Recipe("mlp", (1, 8, 8), 5, epochs=1)
    with pytest.raises(ValueError, match="labels span 0..9 but the model outputs 5"):
        ob.train(r, digits.train, progress=False)


def test_save_load_roundtrip_keeps_weights_and_log(tmp_path, original, digits):
    ob.save_model(original, tmp_path / "m", {"dataset": "digits"})
    model, manifest = ob.load_model(tmp_path / "m")
    assert same_state(state_of(model), state_of(original))
    assert manifest["dataset"] == "digits" and "torch" in manifest["versions"]
    assert torch.equal(ob.training_log(model).confidence, ob.training_log(original).confidence)


def test_corrupt_or_pickled_checkpoints_are_refused(tmp_path, original):
    ob.save_model(original, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a valid safetensors"):
        ob.load_model(tmp_path / "m")

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(ValueError, match="never unpickles"):
        ob.load_model(tmp_path / "m")


def test_checkpoint_of_another_architecture_is_refused(tmp_path, original):
    ob.save_model(original, tmp_path / "m")
    with pytest.raises(ValueError, match="does not fit"):
        ob.load_model(tmp_path / "m", model=ob.models.build("cnn", (1, 8, 8), 10))
