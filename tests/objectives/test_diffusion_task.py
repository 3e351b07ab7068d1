"""The diffusion task adapter: seeded noise, the relabelled target, and clear errors."""

import pytest
import torch

import obliviate as ob
from obliviate.models.diffusion import Denoiser
from obliviate.objectives import DiffusionTask, task_for


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = ob.datasets.load("digits")
    model = Denoiser("unit-test").eval()
    return data, model, task_for(model, data.train)


def test_task_for_picks_the_diffusion_task(setup):
    data, model, task = setup
    assert isinstance(task, DiffusionTask)
    assert task.num_classes == 10 and task.shape == (1, 8, 8) and task.timesteps == 100


def test_bad_models_and_data_are_clear_errors(setup):
    data, model, _ = setup
    with pytest.raises(ValueError, match="no class conditioning"):
        task_for(Denoiser("unit-test", num_classes=None), data.train)
    with pytest.raises(ValueError, match="shape"):
        task_for(Denoiser("unit-test", image_size=16), data.train)
    with pytest.raises(ValueError, match="conditioned on 5 classes"):
        task_for(Denoiser("unit-test", num_classes=5), data.train)


def test_evaluation_noise_is_fixed_per_example_and_training_noise_follows_the_generator(setup):
    data, model, task = setup
    (_, a), (_, b) = next(iter(task.batches(data.train, 8))), next(iter(task.batches(data.train, 8)))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    # example 5's draw does not depend on the batch it is in
    _, c = next(iter(task.batches(ob.data.datasets.subset(data.train, torch.arange(5, 9)), 8)))
    assert not torch.equal(c[3][0], a[3][5])  # positions are the dataset's: a subset renumbers them
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    (_, s1), (_, s2) = (next(iter(task.batches(data.train, 8, shuffle=True, generator=g))) for g in (g1, g2))
    assert all(torch.equal(u, v) for u, v in zip(s1, s2))
    assert not torch.equal(s1[3], a[3])


def test_losses_are_the_denoising_mse(setup):
    data, model, task = setup
    _, batch = next(iter(task.batches(data.train, 4)))
    x, y, t, noise, ref = batch
    out = task.logits(model, batch)
    pred = model(model.noisy(x * 2 - 1, t, noise), t, y)
    assert torch.allclose(task.losses(out, batch), (pred - noise).pow(2).mean((1, 2, 3)), atol=1e-6)
    assert torch.all((task.correct(out, batch) >= 0) & (task.correct(out, batch) <= 1))
    assert torch.allclose(task.kd_loss(out, out, batch, 4.0), torch.zeros(4))


def test_relabel_targets_another_class_prediction(setup):
    data, model, task = setup
    _, batch = next(iter(task.batches(data.train, 64)))
    moved = task.relabel(batch, torch.Generator().manual_seed(0))
    x, y, t, noise, ref = moved
    assert torch.equal(y, batch[1]) and bool((ref != y).all()) and bool(((ref >= 0) & (ref < 10)).all())
    out = task.logits(model, moved)
    x_t = model.noisy(x * 2 - 1, t, noise)
    assert torch.allclose(out[:, 1], model(x_t, t, ref), atol=1e-6)  # sg[ε_θ(x_t, c′)]
    assert torch.allclose(out[:, 0], model(x_t, t, y), atol=1e-6)  # the forgotten label's prediction
    model.zero_grad()
    out[:, 1].sum().backward()  # the target is stop-gradient: no weight receives a gradient through it
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_raw_batches_get_noise_from_the_global_rng(setup):
    data, model, task = setup
    raw = (data.train.x[:4], data.train.y[:4])
    torch.manual_seed(3)
    a = task.to(raw, torch.device("cpu"))
    torch.manual_seed(3)
    b = task.to(raw, torch.device("cpu"))
    assert len(a) == 5 and all(torch.equal(u, v) for u, v in zip(a, b))
