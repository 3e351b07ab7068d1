"""A small class-conditional denoiser with a null class, and DDIM sampling with classifier-free guidance.

The network is diffusers' ``UNet2DModel`` with ``num_class_embeds = classes + 1``: the class embedding
is added to the timestep embedding, and the extra row is the null label ∅ that class dropout trains,
so the same network gives ε(x_t, c) and ε(x_t, ∅) (Ho & Salimans, "Classifier-Free Diffusion
Guidance", 2022). ESD and guided sampling need ∅; a model built with ``null=False`` has no such row
and one trained with ``p_uncond = 0`` has an untrained one (``null_trained`` is False), and both are
refused where ∅ matters. The noise schedule is diffusers' ``DDPMScheduler`` (linear β 1e-4 → 0.02);
generation is ``DDIMScheduler`` with η = 0 (deterministic given the initial noise).

Images live in [0, 1] in obliviate's datasets; :meth:`Denoiser.encode` maps them to the [-1, 1]
the schedule clips to, :meth:`Denoiser.decode` maps samples back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture and noise schedule; plain data, so a checkpoint's manifest can rebuild the model."""

    image_size: int = 8
    channels: int = 1
    #: number of real classes; None builds an unconditional UNet (refused by the class-forgetting code)
    num_classes: int | None = 10
    #: an extra class-embedding row for the null label ∅ (index ``num_classes``)
    null: bool = True
    block_out_channels: tuple[int, ...] = (16, 32)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    #: self-attention in the middle block
    attention: bool = False
    num_train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"norm_num_groups={self.norm_num_groups} must divide every channel count")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (or None), got {self.num_classes}")
        if self.image_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^{len(self.block_out_channels) - 1} "
                "(one downsampling per block but the last)"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenoiserConfig:
        return cls(**{**d, "block_out_channels": tuple(d["block_out_channels"])})


#: the sizes of reference/diffusion-unlearning.md §1 (params counted by diffusers' own layers)
CONFIGS: dict[str, DenoiserConfig] = {
    "unit-test": DenoiserConfig(block_out_channels=(8, 16), norm_num_groups=4, num_train_timesteps=100),
    "digits-demo": DenoiserConfig(block_out_channels=(16, 32), norm_num_groups=8),
    "mnist-S": DenoiserConfig(image_size=32, block_out_channels=(16, 32, 32), norm_num_groups=8, attention=True),
    "mnist-M": DenoiserConfig(image_size=32, block_out_channels=(32, 64, 64), norm_num_groups=32, attention=True),
}


def config_of(config: DenoiserConfig | str, **overrides: Any) -> DenoiserConfig:
    """A config by name (:data:`CONFIGS`) or as given, with field overrides (``image_size=16``)."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown denoiser config {config!r}; available: {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return dataclasses.replace(config, **overrides) if overrides else config


class Denoiser(nn.Module):
    """ε_θ(x_t, t, y): a diffusers ``UNet2DModel`` plus the schedule's ᾱ_t and the null-class bookkeeping."""

    alphas_cumprod: torch.Tensor
    null_trained: torch.Tensor
    unet: Any  # diffusers' UNet2DModel (its lazy module loader hides the class from type checkers)

    def __init__(self, config: DenoiserConfig | str = "digits-demo", **overrides: Any) -> None:
        from diffusers import DDPMScheduler, UNet2DModel

        super().__init__()
        self.config = config_of(config, **overrides)
        c = self.config
        n = len(c.block_out_channels)
        embeds = None if c.num_classes is None else c.num_classes + int(c.null)
        self.unet = UNet2DModel(
            sample_size=c.image_size,
            in_channels=c.channels,
            out_channels=c.channels,
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            down_block_types=("DownBlock2D",) * n,
            up_block_types=("UpBlock2D",) * n,
            add_attention=c.attention,
            norm_num_groups=c.norm_num_groups,
            num_class_embeds=embeds,
        )
        schedule: Any = DDPMScheduler(num_train_timesteps=c.num_train_timesteps)
        # derived from the config: not saved, rebuilt on load
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.clone().float(), persistent=False)
        # set by training with class dropout; saved, so a reloaded model still knows ∅ was learnt
        self.register_buffer("null_trained", torch.tensor(False))

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    @property
    def null_label(self) -> int | None:
        """The label of ∅ (``num_classes``), or None when the model has no null row."""
        return self.config.num_classes if self.config.null and self.config.num_classes is not None else None

    @property
    def conditional(self) -> bool:
        return self.config.num_classes is not None

    @property
    def timesteps(self) -> int:
        return self.config.num_train_timesteps

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ε̂ [B, C, H, W] for noisy images ``x_t`` at integer timesteps ``t`` under labels ``y``."""
        return self.unet(x_t, t, class_labels=y).sample

    @staticmethod
    def encode(x: torch.Tensor) -> torch.Tensor:
        """Dataset images in [0, 1] -> the model's [-1, 1]."""
        return x * 2 - 1

    @staticmethod
    def decode(z: torch.Tensor) -> torch.Tensor:
        """Model space [-1, 1] -> images in [0, 1]."""
        return ((z + 1) / 2).clamp(0, 1)

    def noisy(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (``DDPMScheduler.add_noise``, without a scheduler object)."""
        a = self.alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def guided(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
        """Classifier-free guidance ε̃ = ε(∅) + s·(ε(y) − ε(∅)), one batched forward of 2B (s = 1: ε(y) alone)."""
        if scale == 1:
            return self(x_t, t, y)
        null = torch.full_like(y, self.require_null("guidance scale != 1"))
        both = self(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    def require_null(self, what: str) -> int:
        """The null label, or a ValueError saying ``what`` needs a model trained with class dropout."""
        if self.null_label is None:
            raise ValueError(f"{what} needs a null class ∅, but the model was built without one (null=False)")
        if not bool(self.null_trained):
            raise ValueError(
                f"{what} needs a null class ∅ trained by class dropout, but this model was trained without it "
                "(p_uncond = 0): its ∅ embedding is untrained"
            )
        return self.null_label


def check_guidance(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"guidance scale must be > 0, got {scale!r}")


@torch.no_grad()
def sample(
    model: Denoiser,
    labels: torch.Tensor | list[int],
    *,
    steps: int = 50,
    guidance: float = 3.0,
    seed: int = 0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Generate one image per label by DDIM (η = 0) in ``steps`` steps with guidance scale ``guidance``.

    The initial noise of sample i depends only on ``seed`` and i, so two models given the same
    ``seed`` and labels start every sample from the same x_T: differences between their images are
    the models' (a paired comparison, as the reference spec §5 asks). Returns images in [0, 1], on CPU.
    """
    from diffusers import DDIMScheduler

    check_guidance(guidance)
    if not 1 <= steps <= model.timesteps:
        raise ValueError(f"steps must be in 1..{model.timesteps}, got {steps}")
    labels = torch.as_tensor(labels, dtype=torch.long)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    c = model.config
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(labels), c.channels, c.image_size, c.image_size, generator=gen)
    scheduler: Any = DDIMScheduler(num_train_timesteps=model.timesteps)
    scheduler.set_timesteps(steps)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(labels), batch_size):
            x = noise[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            for t in scheduler.timesteps:
                tt = torch.full((len(y),), int(t), device=device, dtype=torch.long)
                eps = model.guided(x, tt, y, guidance)
                x = scheduler.step(eps, int(t), x, eta=0.0).prev_sample
            out.append(model.decode(x).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else noise[:0]
