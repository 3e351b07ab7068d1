"""A model trained on a user's file, saved with everything needed to read that file again.

``obliviate train --data FILE`` is :func:`train_on_file`: read the file (:func:`obliviate.data.from_file`),
train the default recipe, and write ``model.safetensors`` and ``manifest.json`` (recipe, seed, scores,
and under ``data`` the file's kind, path, reading options and fingerprint) with the table encoder
(``encoder.json``) or the tokenizer (``tokenizer/``). :func:`load_run` reverses it: the model, and the
same rows, split and features, or an error if the file no longer holds the rows the model learned from.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.datasets import Data, SizedDataset
from ..data.user import from_file, from_run, save_source
from ..models.store import load_model, save_model
from ..objectives import task_for
from .loop import train
from .recipe import Recipe


def train_on_file(
    path: str | Path,
    out: str | Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    steps: int | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    **read: Any,
) -> tuple[nn.Module, Data, dict[str, Any]]:
    """Read ``path`` with :func:`~obliviate.data.from_file` (``read``: its keyword arguments, e.g.
    ``target=``, ``subject=``), train :meth:`Recipe.default_for` the data (``epochs`` / ``steps``
    override it) and save the model, the data's reading options and encoder or tokenizer in ``out``.

    Returns the model, the data and the manifest written. ``out`` must be new or empty, so a model
    folder never mixes two runs' files.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists and is not empty; choose a new folder")
    data = from_file(path, seed=seed, **read)
    recipe = Recipe.default_for(data)
    if epochs is not None:
        recipe = recipe.replace(epochs=epochs)
    if steps is not None:
        if recipe.steps is None:
            raise ValueError("steps= applies to language-model recipes (text data); use epochs= for a classifier")
        recipe = recipe.replace(steps=steps)
    start = time.perf_counter()
    model = train(recipe, data.train, seed=seed, device=device, progress=progress)
    seconds = time.perf_counter() - start
    source = save_source(data, out)
    manifest = {
        "dataset": data.name,
        "role": "original",
        "seed": seed,
        "recipe": recipe.to_dict(),
        "data": source,
        "subject": data.subject,
        "n_train": len(data.train),
        "n_test": len(data.test),
        "train_seconds": round(seconds, 3),
        "scores": {f"test_{k}": v for k, v in score(model, data.test).items()},
    }
    save_model(model, out, manifest)
    return model, data, manifest


@torch.no_grad()
def score(model: nn.Module, dataset: SizedDataset, batch_size: int = 256) -> dict[str, float]:
    """Mean loss and accuracy over ``dataset`` (for text: per-token loss and the share of scored tokens
    the greedy prediction gets right), through the task adapter the pair needs."""
    task = task_for(model, dataset)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses, correct = [], []
    for _, batch in task.batches(dataset, batch_size):
        batch = task.to(batch, device)
        logits = task.logits(model, batch)
        losses.append(task.losses(logits, batch).float().cpu())
        correct.append(task.correct(logits, batch).float().cpu())
    model.train(was_training)
    return {"loss": float(torch.cat(losses).mean()), "acc": float(torch.cat(correct).mean())}


def load_run(folder: str | Path, data: str | Path | None = None) -> tuple[nn.Module, Data, dict[str, Any]]:
    """The model in ``folder`` (written by :func:`train_on_file`), the data it was trained on read again
    from ``data`` (default: the path in the manifest) with the saved options, encoder or tokenizer,
    and the manifest. A file whose training rows changed is refused (see :func:`obliviate.data.from_run`)."""
    folder = Path(folder)
    rows = from_run(folder, data)
    model, manifest = load_model(folder)
    return model, rows, manifest
