"""Attacks on an unlearned model: each returns an attacked *copy* (the caller's model is never touched)
and the split the attacked copy is measured on. ``ob.evaluate(..., attacks=[...])`` applies every
attack with the same seed and budget to the model and to the oracles, so a result is judged by its
gap to oracle A *under the same attack*, with oracle B under that attack as the noise floor.

* ``relearn``: fine-tune on a seeded part of D_f (default 20%; by subject where the data names
  subjects, e.g. the people scenario's persons), measure the rest of D_f ("unlearning isn't robust to
  relearning", Hu et al. 2024; "From Dormant to Deleted", 2025).
* ``relearn-retain``: fine-tune on D_r only, measure D_f (knowledge that was hidden, not removed,
  comes back from neighbouring data).
* ``relearn-related``: fine-tune on data never trained on but about the forgotten knowledge: a few
  test examples of a forgotten class, or the forget people's facts paraphrased; measure D_f.
* ``quantize-int8`` / ``quantize-int4``: a weight round trip through per-channel int8 or group-wise
  symmetric 4-bit integers (Zhang et al., ICLR 2025: 4-bit quantization restores "forgotten" facts).
  The round trip is explicit (what torchao's int8 weight-only and int4 group-wise schemes store),
  so it runs on any device and is bit-for-bit repeatable.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.datasets import Data, labels_of, subset
from ..data.loading import batch_of
from ..data.splits import ForgetSplit
from ..data.text import TextData
from ..objectives import Task


@dataclass(frozen=True)
class Relearn:
    """Fine-tune a copy for ``steps`` Adam steps on ``fraction`` of the forget set (``source="forget"``),
    on the retain set (``source="retain"``) or on *related* data the model was never trained on
    (``source="related"``): for class forgetting, ``shots`` held-out test examples of the forgotten
    classes (few-shot: the oracle must learn the class from them, a model that hid it recovers at
    once); for text data, the forget set's paraphrased answers (public facts said differently).
    Batches are drawn with replacement from a seeded generator.

    Defaults per modality (None): classifiers 20 steps, batch 32, lr 1e-3; causal LMs 10 steps,
    batch 8, lr 1e-3 (the budget of the LM relearning table: a few minutes of an adversary's GPU)."""

    fraction: float = 0.2
    steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    source: str = "forget"
    shots: int = 10
    #: also measure the forget metric after 1, 2, 4, ... steps (the report's relearning curves)
    curve: bool = False

    def __post_init__(self) -> None:
        if self.source not in ("forget", "retain", "related"):
            raise ValueError(f"relearn source must be 'forget', 'retain' or 'related', got {self.source!r}")
        if not isinstance(self.shots, int) or self.shots < 1:
            raise ValueError(f"relearn shots must be an integer >= 1, got {self.shots!r}")
        if not 0 < self.fraction < 1:
            raise ValueError(f"relearn fraction must be in (0, 1), got {self.fraction}")
        for k in ("steps", "batch_size"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"relearn {k} must be an integer >= 1, got {v!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"relearn lr must be > 0, got {self.lr}")

    @property
    def name(self) -> str:
        return "relearn" if self.source == "forget" else f"relearn-{self.source}"

    def measured_split(self, data: Data, split: ForgetSplit, seed: int) -> ForgetSplit:
        """The split an attacked model is measured on (the forget rows not relearned)."""
        return self.parts(data, split, seed)[1]

    def unfit(self, model: nn.Module, data: Data, split: ForgetSplit) -> str | None:
        """Why this attack cannot run on ``model``/``split`` (None when it can): checked before any work."""
        if not any(p.requires_grad for p in model.parameters()):
            return f"{self.name}: the model has no trainable parameters"
        return self._data_unfit(data, split)

    def _data_unfit(self, data: Data, split: ForgetSplit) -> str | None:
        if self.source == "related":
            if isinstance(data, TextData):
                if data.qa is None or data.forget is None or data.forget.hash != split.hash:
                    return f"{self.name} on text needs the dataset's own forget split and its QA probes"
            elif not split.classes:
                return f"{self.name} needs class forgetting (ForgetSplit.by_class): few shots of the class"
        elif self.source == "forget" and len(split.forget_ids) < 2:
            return f"{self.name} needs at least 2 forget examples (one to relearn, one to measure)"
        return None

    def relearn_set(self, data: Data, split: ForgetSplit, seed: int) -> Any:
        """The rows the attack fine-tunes on; the same for every model of a seed."""
        if self.source == "related":
            return self._related(data, split, seed)
        return subset(data.train, self.parts(data, split, seed)[0])

    def _related(self, data: Data, split: ForgetSplit, seed: int) -> Any:
        why = self._data_unfit(data, split)
        if why:
            raise ValueError(why)
        if isinstance(data, TextData):
            assert data.qa is not None
            return data.qa[0]  # the forget people's facts, paraphrased
        labels = labels_of(data.test)
        pool = torch.nonzero(torch.isin(labels, torch.tensor(split.classes))).flatten()
        if len(pool) == 0:
            raise ValueError(f"the test set has no examples of the forgotten classes {list(split.classes)}")
        pick = pool[torch.from_numpy(np.random.default_rng(seed).permutation(len(pool))[: self.shots])]
        return subset(data.test, pick)

    def parts(self, data: Data, split: ForgetSplit, seed: int) -> tuple[torch.Tensor, ForgetSplit]:
        """(training rows fine-tuned on, the split measured afterwards); the same for every model of a seed."""
        if self.source in ("retain", "related"):
            return split.retain_ids, split
        ids = split.forget_ids
        groups = getattr(data, "groups", None)
        g = np.random.default_rng(seed)
        if groups is not None:  # by subject: relearn some people, measure the others
            owners = np.asarray(groups)[ids.numpy()]
            subjects = np.unique(owners[owners >= 0])
            if len(subjects) >= 2:
                k = min(len(subjects) - 1, max(1, round(self.fraction * len(subjects))))
                chosen = np.isin(owners, g.choice(subjects, k, replace=False))
                return ids[torch.from_numpy(chosen)], dataclasses.replace(
                    split, forget_ids=ids[~torch.from_numpy(chosen)]
                )
        why = self._data_unfit(data, split)
        if why:
            raise ValueError(why)
        k = min(len(ids) - 1, max(1, round(self.fraction * len(ids))))
        pick = torch.from_numpy(g.permutation(len(ids))[:k])
        keep = torch.ones(len(ids), dtype=torch.bool)
        keep[pick] = False
        return ids[pick], dataclasses.replace(split, forget_ids=ids[keep])

    def checkpoints(self, data: Data) -> list[int]:
        """The steps after which a curve measures the model (powers of two, then the last step)."""
        steps = self.total_steps(data)
        return sorted({2**i for i in range(steps.bit_length()) if 2**i < steps} | {steps})

    def total_steps(self, data: Data) -> int:
        return self.steps or (10 if isinstance(data, TextData) else 20)

    def apply(
        self,
        model: nn.Module,
        data: Data,
        split: ForgetSplit,
        task: Task,
        *,
        seed: int = 0,
        on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    ) -> tuple[nn.Module, ForgetSplit]:
        """The attacked copy and its measured split; ``on_checkpoint(step, model)`` is called (in eval
        mode) after each of :meth:`checkpoints` when given."""
        measured = self.measured_split(data, split, seed)
        train = self.relearn_set(data, split, seed)
        lm = isinstance(data, TextData)
        steps = self.total_steps(data)
        marks = set(self.checkpoints(data)) if on_checkpoint is not None else set()
        batch_size = self.batch_size or (8 if lm else 32)
        lr = self.lr or 1e-3
        attacked = copy.deepcopy(model)
        device = next(attacked.parameters()).device
        opt = torch.optim.Adam([p for p in attacked.parameters() if p.requires_grad], lr=lr)
        g = torch.Generator().manual_seed(seed)
        attacked.train()
        for step in range(1, steps + 1):
            pick = torch.randint(len(train), (min(batch_size, len(train)),), generator=g)
            batch = task.to(batch_of(train, pick), device)
            loss = task.losses(task.logits(attacked, batch), batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in marks and on_checkpoint is not None:
                on_checkpoint(step, attacked.eval())
                attacked.train()
        return attacked.eval(), measured


@dataclass(frozen=True)
class Quantize:
    """Round-trip every weight matrix (Linear, Conv, Embedding: parameters with ≥ 2 dims) through
    symmetric integers: ``bits=8`` one scale per output channel, ``bits=4`` one scale per group of
    ``group_size`` consecutive input weights (torchao's int4 weight-only layout). Biases and norms stay."""

    bits: int = 8
    group_size: int = 32

    def __post_init__(self) -> None:
        if self.bits not in (4, 8):
            raise ValueError(f"quantize bits must be 4 or 8, got {self.bits}")
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")

    @property
    def name(self) -> str:
        return f"quantize-int{self.bits}"

    def measured_split(self, data: Data, split: ForgetSplit, seed: int) -> ForgetSplit:
        return split

    def unfit(self, model: nn.Module, data: Data, split: ForgetSplit) -> str | None:
        """Why this attack cannot run on ``model`` (None when it can): a model without weight matrices
        has nothing to quantize, and a round trip that changed nothing would report a false pass."""
        if not any(p.dim() >= 2 and p.is_floating_point() for p in model.parameters()):
            return f"{self.name}: the model has no weight matrices (Linear, Conv, Embedding) to quantize"
        return None

    def apply(
        self,
        model: nn.Module,
        data: Data,
        split: ForgetSplit,
        task: Task,
        *,
        seed: int = 0,
        on_checkpoint: Callable[[int, nn.Module], None] | None = None,
    ) -> tuple[nn.Module, ForgetSplit]:
        attacked = copy.deepcopy(model)
        with torch.no_grad():
            for p in attacked.parameters():  # tied weights are one parameter, rounded once
                if p.dim() >= 2 and p.is_floating_point():
                    p.copy_(round_trip(p, self.bits, self.group_size))
        return attacked.eval(), split


def round_trip(w: torch.Tensor, bits: int, group_size: int = 32) -> torch.Tensor:
    """``w`` quantized to signed ``bits``-bit integers and back (symmetric, zero kept exact)."""
    qmax = 2 ** (bits - 1) - 1
    rows = w.reshape(w.shape[0], -1).float()
    if bits == 8:
        groups = rows.unsqueeze(1)  # [out, 1, in]: one scale per output channel
    else:
        pad = (-rows.shape[1]) % group_size
        groups = torch.nn.functional.pad(rows, (0, pad)).reshape(rows.shape[0], -1, group_size)
    scale = groups.abs().amax(-1, keepdim=True).clamp_min(1e-12) / qmax
    q = (groups / scale).round().clamp(-qmax - 1, qmax) * scale
    return q.reshape(rows.shape[0], -1)[:, : rows.shape[1]].reshape(w.shape).to(w.dtype)


Attack = Relearn | Quantize

#: the attacks by name, at their defaults
ATTACKS: dict[str, Attack] = {
    "relearn": Relearn(),
    "relearn-retain": Relearn(source="retain"),
    "relearn-related": Relearn(source="related"),
    "quantize-int8": Quantize(8),
    "quantize-int4": Quantize(4),
}


def parse_attack(spec: str | Mapping[str, Any] | Attack) -> Attack:
    """An attack from its name (``"relearn"``), a one-key mapping of name to parameters (YAML:
    ``{relearn: {fraction: 0.5, steps: 20}}``) or an attack object."""
    if isinstance(spec, (Relearn, Quantize)):
        return spec
    params: dict[str, Any] = {}
    if isinstance(spec, str):
        name = spec
    elif isinstance(spec, Mapping) and len(spec) == 1:
        name, given = next(iter(spec.items()))
        params = dict(given or {})
    else:
        raise ValueError(f"an attack is a name or a one-key mapping of name to parameters, got {spec!r}")
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; available: {sorted(ATTACKS)}")
    try:
        return dataclasses.replace(ATTACKS[name], **params)
    except TypeError as e:
        raise ValueError(f"bad parameters for attack {name!r}: {e}") from None


def parse_attacks(specs: Sequence[str | Mapping[str, Any] | Attack] | None) -> list[Attack]:
    attacks = [parse_attack(s) for s in specs or ()]
    names = [a.name for a in attacks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"attack {dupes} given twice: each attack names its report rows")
    return attacks


__all__ = ["ATTACKS", "Attack", "Quantize", "Relearn", "parse_attack", "parse_attacks", "round_trip"]
