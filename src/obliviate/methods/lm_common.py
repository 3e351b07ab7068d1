"""The one loop behind the language-model unlearning methods (reference A1.3, A2).

A method supplies a per-sequence forget loss (and picks a retain term); the loop owns the rest:
the optimiser (Adam β = (0.9, 0.98), Jang et al.), the forget batches (the whole forget set per
step by default: Jang found fewer updates preserve utility), the retain term
``L = γ_f · L_forget + α · L_retain`` (OpenUnlearning's convention), and the stopping rule:

* ``stop="aggregate"`` (Jang et al.): stop once the forget set's *mean* memorization g = MA is
  at most γ;
* ``stop="sequence"`` (Barbulescu & Triantafillou): stop once *every* forget sequence is at most γ,
  i.e. c(D_f) = 0;
* ``stop="none"``: run ``max_steps``.

γ is calibrated on ``ctx.val`` (unseen sequences of the forget set's distribution) at
``gamma_stat`` (mean, pNN, max), or given as ``gamma``. The check costs nothing extra: MA is read
off the logits of the step's own forward pass, taken in eval mode (no dropout) so it equals the
evaluated score; a step whose check passes applies no update. With forget batches smaller than the
set, scores of rows not in the batch are from earlier steps, so a passing check is confirmed by one
no-grad pass over the whole forget set before stopping.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..metrics.lm import calibrate_threshold
from ..utils import progress_bar
from .base import Context, Method, Params, correct_scores
from .common import step

STOPS = ("aggregate", "sequence", "none")
RETAINS = ("nll", "kl")


@dataclass(frozen=True)
class LMParams(Params):
    """Shared by every loop-driven LM method; method classes override the defaults."""

    lr: float = 1e-3
    max_steps: int = 100
    #: forget rows per step; None = the whole forget set (Jang et al.'s effective batch)
    batch_size: int | None = None
    retain_batch_size: int = 32
    #: weight of the forget loss (γ_f) and of the retain term (α); α = 0 disables the retain term
    forget_weight: float = 1.0
    alpha: float = 0.0
    retain: str = "nll"
    stop: str = "sequence"
    #: step only on the forget sequences still above γ (SGA's selection; works with any forget loss)
    selective: bool = False
    gamma: float | None = None
    gamma_stat: str = "mean"
    grad_clip: float | None = 1.0
    weight_decay: float = 0.0
    #: regular expression over parameter names: only matching parameters are updated (None = all)
    params: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stop not in STOPS:
            raise ValueError(f"stop must be one of {STOPS}, got {self.stop!r}")
        if self.retain not in RETAINS:
            raise ValueError(f"retain must be one of {RETAINS}, got {self.retain!r}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.alpha < 0 or self.forget_weight < 0:
            raise ValueError("alpha and forget_weight must be >= 0")


def threshold(ctx: Context, p: LMParams) -> float | None:
    """γ: ``p.gamma`` if given, else ``p.gamma_stat`` of the *original*'s scores on ``ctx.val`` (not the
    working model's: a pipeline such as TAU must keep one γ across its stages)."""
    if p.gamma is not None:
        return float(p.gamma)
    if p.stop == "none" and not getattr(p, "selective", False):
        return None  # nothing reads γ
    if ctx.val is None:
        raise ValueError(f"stop={p.stop!r} needs a threshold γ: pass gamma=... or val= (unseen sequences from the "
                         "forget set's distribution, e.g. held-out people) to calibrate it on")
    return calibrate_threshold(correct_scores(ctx.original, ctx.task, ctx.val, ctx.device), p.gamma_stat)


def trainable(model: nn.Module, pattern: str | None) -> list[nn.Parameter]:
    """Parameters to update: those matching ``pattern`` (re.search), else all that require grad."""
    named = [(n, q) for n, q in model.named_parameters() if q.requires_grad]
    if pattern is None:
        return [q for _, q in named]
    chosen = [q for n, q in named if re.search(pattern, n)]
    if not chosen:
        raise ValueError(f"no parameter name matches {pattern!r}; names look like {[n for n, _ in named[:4]]}")
    return chosen


def cycle(task, dataset, batch_size: int, generator: torch.Generator) -> Iterator:
    while True:
        yield from task.batches(dataset, batch_size, shuffle=True, generator=generator)


def weighted(dataset, batch_size: int, generator: torch.Generator) -> Iterator:
    """Batches drawn like training drew them: rows with probability ∝ ``dataset.weights`` (a text
    row repeated 20 times in the corpus is 20 times as likely), so the retain term protects what
    training emphasised, e.g. the retained people's PII sentences that share the forget set's templates."""
    while True:
        rows = torch.multinomial(dataset.weights, batch_size, replacement=True, generator=generator)
        yield rows, dataset.batch(rows)


def stop_met(scores: torch.Tensor, gamma: float, rule: str) -> bool:
    if rule == "aggregate":
        return float(scores.mean()) <= gamma
    if rule == "sequence":
        return float(scores.max()) <= gamma
    return False


class LMMethod(Method):
    """Base of the loop-driven methods: subclasses define :meth:`forget_losses` (per sequence, to
    minimise) and may override :meth:`setup`. With ``selective=True`` (SGA's default) a step uses
    only the forget sequences still above γ."""

    Params = LMParams
    modalities = frozenset({"classification", "lm"})

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """Per-run preparation (reference likelihoods, control vectors) before the first step."""

    def param_pattern(self) -> str | None:
        """Which parameters the optimiser updates (a regular expression; None = all)."""
        return self.params.params

    def forget_losses(self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
                      ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def retain_loss(self, model: nn.Module, batch, ctx: Context) -> torch.Tensor:
        """α-weighted term on a retain batch: NLL, or token-level KL(original ‖ model)."""
        logits = ctx.task.logits(model, batch)
        if self.params.retain == "nll":
            return ctx.task.losses(logits, batch).mean()
        with torch.no_grad():
            ref = ctx.task.logits(ctx.original, batch)
        return ctx.task.kd_loss(logits, ref, batch, 1.0).mean()

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        if len(ctx.forget) == 0:
            raise ValueError("the forget set is empty")
        p: LMParams = self.params  # type: ignore[assignment]
        self.gamma = threshold(ctx, p)
        self.setup(model, ctx)
        opt = torch.optim.Adam(trainable(model, self.param_pattern()), lr=p.lr, betas=(0.9, 0.98), weight_decay=p.weight_decay)
        n = len(ctx.forget)
        bs = n if p.batch_size is None else min(p.batch_size, n)
        forget_iter = cycle(ctx.task, ctx.forget, bs, ctx.generator)
        retain_iter = None
        if p.alpha > 0:
            retain_iter = (weighted(ctx.retain, p.retain_batch_size, ctx.generator) if hasattr(ctx.retain, "weights")
                           else cycle(ctx.task, ctx.retain, p.retain_batch_size, ctx.generator))
        scores = torch.full((n,), math.inf)
        bar = progress_bar(p.max_steps, self.name, ctx.progress)
        stopped = None
        model.eval()  # no dropout: the free per-sequence check must equal the evaluated score
        for i in range(p.max_steps):
            rows, batch = next(forget_iter)
            batch = ctx.task.to(batch, ctx.device)
            logits = ctx.task.logits(model, batch)
            g = ctx.task.correct(logits.detach(), batch).float()
            scores[rows] = g.cpu()
            if self.gamma is not None and p.stop != "none" and stop_met(scores, self.gamma, p.stop):
                if bs < n:
                    scores = correct_scores(model, ctx.task, ctx.forget, ctx.device)
                if stop_met(scores, self.gamma, p.stop):
                    stopped = i
                    break
            active = (g > self.gamma) if p.selective and self.gamma is not None else torch.ones_like(g, dtype=torch.bool)
            row = {"step": i, "forget_ma_mean": float(scores[torch.isfinite(scores)].mean()),
                   "forget_active": int(active.sum())}
            if self.gamma is not None:
                row["above_gamma"] = int((scores[torch.isfinite(scores)] > self.gamma).sum())
            if not active.any():  # selective: this batch is done, the others may not be
                ctx.history.append(row)
                bar.update()
                continue
            per_seq = self.forget_losses(model, logits, batch, rows, ctx)
            loss = p.forget_weight * (per_seq * active).sum() / active.sum()
            row["forget_loss"] = float(loss.detach())
            if retain_iter is not None:
                _, rb = next(retain_iter)
                r = self.retain_loss(model, ctx.task.to(rb, ctx.device), ctx)
                row["retain_loss"] = float(r.detach())
                loss = loss + p.alpha * r
            ctx.history.append(row)
            step(model, opt, loss, ctx, self.name, p.grad_clip)
            bar.update()
        bar.close()
        final = correct_scores(model, ctx.task, ctx.forget, ctx.device)
        summary = {"steps": i if stopped is not None else p.max_steps, "stopped_by_rule": stopped is not None,
                   "gamma": self.gamma, "final_ma_mean": float(final.mean()), "final_ma_max": float(final.max())}
        if self.gamma is not None:
            summary["final_above_gamma"] = int((final > self.gamma).sum())
        ctx.history.append(summary)
        if stopped is None and p.stop != "none":
            ctx.notes.append(f"{self.name}: max_steps={p.max_steps} reached before the {p.stop} stopping rule held "
                             f"({summary.get('final_above_gamma')} forget sequences above γ={self.gamma:.3f})")
        return model
