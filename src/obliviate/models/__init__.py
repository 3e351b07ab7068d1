"""Reference architectures and model persistence."""

from .architectures import ARCHITECTURES, MLP, ResNet18, SmallCNN, build
from .gpt import tiny_gpt2
from .store import load_model, save_model

__all__ = ["ARCHITECTURES", "MLP", "ResNet18", "SmallCNN", "build", "load_model", "save_model", "tiny_gpt2"]
