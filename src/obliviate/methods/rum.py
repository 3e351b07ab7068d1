"""``rum``: the Refined-Unlearning Meta-algorithm (Zhao et al., NeurIPS 2024; reference §2.2-2.3).

Forget sets mix easy and hard examples, and what unlearns the easy ones well breaks on the hard
ones. RUM refines D_f into homogeneous bins by a memorization score and unlearns them one after
another, low -> high, each with the method that suits it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.datasets import subset
from ..data.splits import ForgetSplit
from .base import Context, Method, available, register
from .base import Params as BaseParams
from .common import memorization_scores


@register
class RUM(Method["RUM.Params"]):
    """Refine D_f into ``bins`` memorization bins and unlearn them sequentially.

    * **Scores**: ``scores`` (one per training example, higher = more memorized, e.g. an
      ``ob.evaluation.memorization`` estimate), else the learning-event ``proxy`` from the original's
      training log (``confidence``: 1 − mean true-class probability; free, as the RUM workshop paper
      recommends over the ~400-model estimate).
    * **Bins**: D_f sorted by score, split into ``bins`` equal parts (RUM's low / mid / high).
    * **Order and retain semantics** (RUM code): bins run low -> high (``order``: "high-to-low", or
      "shuffle" for the paper's control with random equal parts); at step k the base method sees
      forget = bin k and retain = D minus bins 1..k: bins not yet processed stay in the retain set.
    * **Methods**: full RUM gives one method per bin (``methods``; default do nothing -> fine-tune ->
      SalUn, RUM's best on CIFAR-10); RUM^F gives one ``base`` method for every bin. ``params`` apply to
      every bin, ``bin_params`` (one dict per bin) on top.
    """

    name = "rum"
    guard_steps = False  # each bin's run has ob.unlearn's own guard
    honours_budget = False

    @dataclass(frozen=True)
    class Params(BaseParams):
        methods: tuple[str, ...] = ("none", "finetune", "salun")
        base: str | None = None
        bins: int = 3
        proxy: str = "confidence"
        scores: tuple[float, ...] | None = None
        order: str = "low-to-high"
        params: dict[str, Any] = field(default_factory=dict)
        bin_params: tuple[dict[str, Any], ...] = ()

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.bins < 1:
                raise ValueError(f"bins must be >= 1, got {self.bins}")
            names = self.plan()
            if len(names) != self.bins:
                raise ValueError(
                    f"methods gives {len(names)} methods for {self.bins} bins: give one per bin "
                    "(or base= for the same one everywhere)"
                )
            bad = [m for m in names if m not in available() or m == "rum"]
            if bad:
                raise ValueError(f"unknown base methods {bad} for rum; available: {available()}")
            if self.order not in ("low-to-high", "high-to-low", "shuffle"):
                raise ValueError(f"order must be low-to-high, high-to-low or shuffle, got {self.order!r}")
            if self.bin_params and len(self.bin_params) != self.bins:
                raise ValueError(f"bin_params has {len(self.bin_params)} entries for {self.bins} bins")

        def plan(self) -> list[str]:
            return [self.base] * self.bins if self.base else list(self.methods)

    def _scores(self, ctx: Context) -> torch.Tensor:
        return memorization_scores(ctx, self.params.scores, self.params.proxy, "rum")

    def bins_of(self, ctx: Context, scores: torch.Tensor | None) -> list[torch.Tensor]:
        """The forget ids in processing order, one tensor per bin (training-set positions); ``scores``
        (one per training example) order them, None shuffles (the paper's control)."""
        p, ids = self.params, ctx.split.forget_ids
        if scores is None:
            order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(ctx.seed))
        else:
            order = torch.argsort(scores[ids], stable=True)
        parts = [ids[torch.as_tensor(part)] for part in np.array_split(order.numpy(), p.bins)]
        return parts[::-1] if p.order == "high-to-low" else parts

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        from .unlearn import unlearn

        p = self.params
        scores = None if p.order == "shuffle" else self._scores(ctx)
        bins = self.bins_of(ctx, scores)
        if any(len(b) == 0 for b in bins):
            raise ValueError(f"the forget set ({len(ctx.split)} examples) is too small for {p.bins} bins")
        removed = torch.zeros(ctx.split.n, dtype=torch.bool)
        for k, (ids, name) in enumerate(zip(bins, p.plan())):
            keep = torch.nonzero(~removed).flatten()  # D minus the bins already processed
            step = ForgetSplit(torch.searchsorted(keep, ids), len(keep), kind=f"rum-bin{k}")
            overrides = {**p.params, **(p.bin_params[k] if p.bin_params else {})}
            res = unlearn(
                model,
                subset(ctx.train, keep),
                step,
                method=name,
                seed=ctx.seed + k,
                val=ctx.val,
                recipe=ctx.recipe,
                device=ctx.device,
                progress=ctx.progress,
                inplace=True,
                **overrides,
            )
            model = res.model
            removed[ids] = True
            ctx.history.append(
                {
                    "bin": k,
                    "method": name,
                    "forget": len(ids),
                    "retain": int((~removed).sum()),
                    "seconds": res.seconds,
                    **(
                        {"score_min": float(scores[ids].min()), "score_max": float(scores[ids].max())}
                        if scores is not None
                        else {}
                    ),
                }
            )
            if res.diverged:
                ctx.notes.append(f"bin {k} ({name}) diverged and was rolled back: " + "; ".join(res.notes))
        return model

    def param_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.params)
        if d["scores"] is not None:  # a score per training example would swamp the record
            d["scores"] = f"<{len(d['scores'])} scores>"
        return d
