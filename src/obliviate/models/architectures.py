"""Small reference architectures, built by name so recipes and manifests stay plain data."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class MLP(nn.Sequential):
    """Flatten -> (Linear -> ReLU) x len(hidden) -> Linear. The unit-test and tabular workhorse."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: tuple[int, ...] = (128,)):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """Two conv blocks (conv3x3 -> ReLU -> maxpool2) and a hidden fc layer.

    With widths (16, 32) and fc 64 on 28x28 inputs this is the ~106k-parameter CNN of the
    calibration runs (reference/calibration.md).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths: tuple[int, ...] = (16, 32),
        fc: int = 64,
    ):
        c, h, w = input_shape
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(c * h * w, fc), nn.ReLU(), nn.Linear(fc, num_classes)]
        super().__init__(*layers)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool), the architecture of the SalUn/RUM benchmarks."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int = 64):
        super().__init__()
        c = input_shape[0]
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        blocks, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            blocks += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(self.pool(self.layers(x)), 1))


def _tiny_gpt2(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """The tiny GPT-2 by the same (shape, classes) signature: context = ``input_shape[0]``, vocabulary =
    ``num_classes``; so a saved LM's manifest rebuilds it like any other architecture."""
    from .gpt import tiny_gpt2

    return tiny_gpt2(num_classes, context=input_shape[0], **kwargs)


def denoiser(input_shape: tuple[int, ...], num_classes: int, config: str = "digits-demo", **overrides) -> nn.Module:
    """A class-conditional :class:`~obliviate.models.diffusion.Denoiser` for ``input_shape`` images
    [C, H, H]: the named config (``CONFIGS``) at that size and class count, with field overrides."""
    from .diffusion import Denoiser

    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(f"a denoiser makes square images [C, H, H], got input_shape {tuple(input_shape)}")
    return Denoiser(config, channels=input_shape[0], image_size=input_shape[1], num_classes=num_classes, **overrides)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet18": ResNet18,
    "tiny-gpt2": _tiny_gpt2,
    "denoiser": denoiser,
}


def torchvision_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """A torchvision classification architecture by name (``resnet18``, ``mobilenet_v3_small``...),
    randomly initialised: pretrained weights would be a download, which obliviate never makes."""
    try:
        from torchvision import models
    except ImportError:
        raise ImportError(f"architecture 'torchvision:{name}' needs torchvision: pip install torchvision") from None
    known = models.list_models(module=models)
    if name not in known:
        raise ValueError(f"torchvision has no classification model {name!r}; e.g. {known[:8]}")
    return models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def build(name: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Instantiate a registered architecture (``mlp``, ``cnn``, ``resnet18``, ``tiny-gpt2``,
    ``denoiser``) or a torchvision one as ``torchvision:<name>`` (where torchvision is installed)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if name.startswith("torchvision:"):
        model = torchvision_model(name.partition(":")[2], num_classes, **kwargs)
    elif name in ARCHITECTURES:
        model = ARCHITECTURES[name](tuple(input_shape), num_classes, **kwargs)
    else:
        raise ValueError(f"unknown architecture {name!r}; available: {sorted(ARCHITECTURES)} or torchvision:<name>")
    # Plain-data description kept on the module so a saved checkpoint can be rebuilt by name.
    model.obliviate_spec = spec(name, input_shape, num_classes, kwargs)  # type: ignore[assignment]  # torch types Module.__setattr__ as Tensor | Module only
    return model


def spec(name: str, input_shape: tuple[int, ...], num_classes: int, kwargs: dict) -> dict:
    """The plain-data description :func:`build` keeps on a model (``obliviate_spec``), which
    ``models.store.load_model`` rebuilds it from."""
    return {
        "architecture": name,
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
    }
