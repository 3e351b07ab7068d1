"""The class-conditional denoiser and its DDIM sampler (unit-test config: 8x8, T = 100)."""

import pytest
import torch

from obliviate.models.diffusion import CONFIGS, Denoiser, DenoiserConfig, config_of, sample


def test_configs_build_with_a_null_row_and_the_documented_sizes():
    m = Denoiser("unit-test")
    assert m.unet.class_embedding.num_embeddings == 11  # 10 classes + ∅
    assert m.null_label == 10 and not bool(m.null_trained)
    assert 35_000 < sum(p.numel() for p in m.parameters()) < 50_000  # ~41k (reference spec §1)
    out = m(torch.randn(3, 1, 8, 8), torch.tensor([0, 50, 99]), torch.tensor([1, 2, 10]))
    assert out.shape == (3, 1, 8, 8)
    assert set(CONFIGS) >= {"unit-test", "digits-demo", "mnist-S"}


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="norm_num_groups"):
        DenoiserConfig(block_out_channels=(8, 12), norm_num_groups=8)
    with pytest.raises(ValueError, match="unknown denoiser config"):
        config_of("huge")
    assert config_of("unit-test", image_size=16).image_size == 16


def test_noisy_follows_the_schedule():
    m = Denoiser("unit-test")
    x0, eps = torch.ones(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    a = m.alphas_cumprod[torch.tensor([0, 99])]
    assert torch.allclose(m.noisy(x0, torch.tensor([0, 99]), eps)[:, 0, 0, 0], a.sqrt())


def test_sampling_is_seeded_paired_and_in_range():
    torch.manual_seed(0)
    m = Denoiser("unit-test").eval()
    m.null_trained.fill_(True)
    a = sample(m, [0, 1, 2], steps=5, guidance=3.0, seed=4)
    b = sample(m, [0, 1, 2], steps=5, guidance=3.0, seed=4)
    c = sample(m, [0, 1, 2], steps=5, guidance=3.0, seed=5)
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    # sample i's initial noise depends on (seed, i) only: batching does not change the images
    assert torch.allclose(sample(m, [0, 1, 2], steps=5, seed=4, batch_size=2), a, atol=1e-6)


def test_guidance_needs_a_positive_scale_and_a_trained_null_class():
    m = Denoiser("unit-test").eval()
    with pytest.raises(ValueError, match="guidance scale must be > 0"):
        sample(m, [0], steps=2, guidance=0)
    with pytest.raises(ValueError, match="trained without it"):
        sample(m, [0], steps=2, guidance=3.0)
    sample(m, [0], steps=2, guidance=1.0)  # plain conditional sampling needs no ∅
    with pytest.raises(ValueError, match="built without one"):
        sample(Denoiser("unit-test", null=False), [0], steps=2, guidance=2.0)
