"""Reference architectures and model persistence."""

from .architectures import ARCHITECTURES, MLP, ResNet18, SmallCNN, build
from .store import load_model, save_model

__all__ = ["ARCHITECTURES", "MLP", "ResNet18", "SmallCNN", "build", "load_model", "save_model"]
