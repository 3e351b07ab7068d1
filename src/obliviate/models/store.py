"""Saving and reloading models: ``model.safetensors`` + ``manifest.json`` in one folder."""

from __future__ import annotations

import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..io import load_state, read_json, save_state, write_json
from .architectures import build
from .log import TrainingLog, UpdateLog, training_log


def versions() -> dict[str, str]:
    import numpy

    return {
        "obliviate": version("obliviate"),  # the installed package's, read without importing the facade
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def save_model(model: nn.Module, folder: str | Path, manifest: dict[str, Any] | None = None) -> Path:
    """Write weights (safetensors) and a JSON manifest (architecture, versions, caller's fields)."""
    folder = Path(folder)
    full = {"versions": versions(), **(manifest or {})}
    spec = getattr(model, "obliviate_spec", None)
    if spec is not None:
        full.setdefault("model", spec)
    log = training_log(model)
    if log is not None:
        full.setdefault(
            "training",
            {
                "recipe": log.recipe,
                "seed": log.seed,
                "seconds": log.seconds,
                "n_examples": log.n_examples,
                "dataset": log.dataset,
            },
        )
        if log.events:
            save_state(dict(log.events), folder / "learning_events.safetensors")
    updates = folder / "update_log.safetensors"  # Amnesiac's per-batch updates, tensors only
    if log is not None and log.updates is not None:
        save_state(log.updates.to_state(), updates)
    else:  # never leave an earlier model's updates beside these weights
        updates.unlink(missing_ok=True)
    save_state(model.state_dict(), folder / "model.safetensors")
    write_json(folder / "manifest.json", full)
    return folder


def load_model(folder: str | Path, model: nn.Module | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a saved model and its manifest.

    Pass ``model`` (an instance of the right architecture) for user-defined modules; built-in
    architectures are rebuilt from the manifest. Weights are read with safetensors only.
    """
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.exists() else {}
    state = load_state(folder / "model.safetensors")
    if model is None:
        spec = manifest.get("model")
        if not spec:
            raise ValueError(f"{folder} has no architecture in its manifest; pass model= to load into")
        model = build(spec["architecture"], tuple(spec["input_shape"]), spec["num_classes"], **spec["kwargs"])
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"checkpoint {folder} does not fit the model: {e}") from None
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {folder} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    if "training" in manifest:
        events = folder / "learning_events.safetensors"
        logged = load_state(events) if events.exists() else {}
        updates = folder / "update_log.safetensors"
        model.obliviate_log = TrainingLog(  # type: ignore[assignment]  # torch types Module.__setattr__ as Tensor | Module only
            **manifest["training"],
            events=logged,
            updates=UpdateLog.from_state(load_state(updates)) if updates.exists() else None,
        )
    return model, manifest
