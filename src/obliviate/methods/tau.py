"""``tau``: task arithmetic, then selective ascent on the remaining outliers (Barbulescu & Triantafillou 2024)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from torch import nn

from .base import Context, Method, register
from .lm_common import LMParams, threshold
from .sga import SGA
from .task_vector import TaskVector, smallest_lambda, task_vector


@register
class TAU(Method):
    """``order="ta-sga"`` (default): negate the task vector with the smallest λ that brings the
    forget set's *mean* memorization to γ (shifting the whole distribution toward unseen text), then
    run SGA on the sequences still above γ until c(D_f) = 0. ``order="sga-ta"``: SGA for
    ``max_steps`` first, then the smallest λ giving c(D_f) = 0.

    Paper-inspired: the abstract says TAU "combines SGA with task arithmetic to standardize the
    memorization-score distribution"; the exact ordering is not public (reference A1.3)."""

    name = "tau"
    modalities = frozenset({"classification", "lm"})

    @dataclass(frozen=True)
    class Params(LMParams):
        order: str = "ta-sga"
        ft_steps: int = 10
        ft_lr: float = 1e-3
        grid: tuple[float, ...] = TaskVector.Params.grid
        refine: int = 4

        def __post_init__(self) -> None:
            super().__post_init__()
            if self.order not in ("ta-sga", "sga-ta"):
                raise ValueError(f"order must be 'ta-sga' or 'sga-ta', got {self.order!r}")

    def _sga(self, gamma: float) -> SGA:
        shared = {f.name for f in fields(LMParams)}
        return SGA(**{k: v for k, v in self.param_dict().items() if k in shared} | {"stop": "sequence", "gamma": gamma})

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        if len(ctx.forget) == 0:
            raise ValueError("the forget set is empty")
        gamma = threshold(ctx, p)
        if p.order == "sga-ta":
            model = self._sga(gamma).run(model, ctx)
        tau = task_vector(model, ctx, p.ft_steps, p.ft_lr, p.batch_size)
        rule = "aggregate" if p.order == "ta-sga" else "sequence"
        lam, met, trials = smallest_lambda(model, ctx, tau, gamma, rule, p.grid, p.refine)
        ctx.history.extend(trials)
        ctx.history.append({"lambda": lam, "rule": rule, "rule_met": met})
        if p.order == "ta-sga":
            model = self._sga(gamma).run(model, ctx)
        return model
