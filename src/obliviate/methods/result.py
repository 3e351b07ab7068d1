"""The record an unlearning run returns, saved as safetensors weights + a JSON manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..models.store import load_model, save_model


@dataclass
class UnlearningResult:
    """The unlearned model and how it was made.

    ``diverged`` is True when the method went non-finite or collapsed utility and the model was
    rolled back to the last safe checkpoint (``notes`` says which).
    """

    model: nn.Module
    method: str
    params: dict[str, Any]
    seconds: float
    seed: int
    split_hash: str
    history: list[dict[str, Any]] = field(default_factory=list)
    diverged: bool = False
    notes: list[str] = field(default_factory=list)

    def manifest(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "params": self.params,
            "seconds": self.seconds,
            "seed": self.seed,
            "split_hash": self.split_hash,
            "history": self.history,
            "diverged": self.diverged,
            "notes": self.notes,
        }

    def save(self, folder: str | Path) -> Path:
        return save_model(self.model, folder, self.manifest())

    @classmethod
    def load(cls, folder: str | Path, model: nn.Module | None = None) -> UnlearningResult:
        model, m = load_model(folder, model)
        return cls(
            model=model,
            method=m["method"],
            params=m["params"],
            seconds=m["seconds"],
            seed=m["seed"],
            split_hash=m["split_hash"],
            history=m.get("history", []),
            diverged=m.get("diverged", False),
            notes=m.get("notes", []),
        )
