"""The one loop behind the language-model unlearning methods (reference A1.3, A2).

A method supplies a per-sequence forget loss (and picks a retain term); the loop owns the rest:
the optimiser (Adam β = (0.9, 0.98), Jang et al.), the forget batches (the whole forget set per
step by default: Jang found fewer updates preserve utility), the retain term
``L = γ_f · L_forget + α · L_retain`` (OpenUnlearning's convention), and the stopping rule:

* ``stop="aggregate"`` (Jang et al.; the released SGA/TAU code too): stop once the forget set's
  *mean* memorization g = MA is at most γ;
* ``stop="sequence"``: stop once *every* forget sequence is at most γ, i.e. c(D_f) = 0, the
  per-sequence criterion Barbulescu & Triantafillou evaluate with (obliviate's stopping rule; their
  code stops on the mean);
* ``stop="none"``: run to ``max_steps`` / ``max_epochs``.

γ is calibrated on ``ctx.val`` (unseen sequences of the forget set's distribution) at
``gamma_stat`` (mean, pNN, max), or given as ``gamma``. Which forget rows a step uses: all of them,
those still above γ (``selective``), or, with ``mem_threshold``, those whose MA is at least that
plus the batch's most memorized row (the released SGA code's rule, see ``sga.py``).

When the per-sequence MA is refreshed and the rule checked (``refresh``):

* ``"step"``: MA is read off the logits of the step's own forward pass, taken in eval mode (no
  dropout) so it equals the evaluated score; it costs nothing, and a step whose check passes applies
  no update. With forget batches smaller than the set, scores of rows not in the batch are from
  earlier steps, so a passing check is confirmed by one no-grad pass over the whole set first;
* ``"epoch"``: one no-grad pass over the whole forget set before the first step and after every
  pass through it (the released SGA/TAU code's validation epoch, Jang et al.'s too); selection reads
  these scores until the next refresh. The default when ``mem_threshold`` is set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

import torch
from torch import nn

from ..metrics.lm import calibrate_threshold
from ..utils import progress_bar
from .base import Context, Method, correct_scores
from .common import ForgetStepParams, forget_step

STOPS = ("aggregate", "sequence", "none")
RETAINS = ("nll", "kl")
REFRESHES = ("step", "epoch")


@dataclass(frozen=True)
class LMParams(ForgetStepParams):
    """Shared by every loop-driven LM method; method classes override the defaults. ``sam_rho``
    (from :class:`~obliviate.methods.common.ForgetStepParams`) makes the forget term sharpness-aware."""

    lr: float = 1e-3
    #: the run ends after max_steps optimiser steps or max_epochs passes through D_f, whichever
    #: comes first (None: no bound of that kind)
    max_steps: int | None = 100
    max_epochs: int | None = None
    #: forget rows per step; None = the whole forget set (Jang et al.'s effective batch)
    batch_size: int | None = None
    retain_batch_size: int = 32
    #: weight of the forget loss (γ_f) and of the retain term (α); α = 0 disables the retain term
    forget_weight: float = 1.0
    alpha: float = 0.0
    retain: str = "nll"
    stop: str = "sequence"
    #: step only on the forget sequences still above γ (works with any forget loss)
    selective: bool = False
    #: step only on the rows whose MA is >= this, plus the batch's most memorized (the released SGA rule)
    mem_threshold: float | None = None
    #: when MA is refreshed and the rule checked: "step" or "epoch"; None: "epoch" with mem_threshold, else "step"
    refresh: str | None = None
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
        for k in ("max_steps", "max_epochs"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1 or None, got {getattr(self, k)}")
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("set max_steps or max_epochs (or both)")
        if self.alpha < 0 or self.forget_weight < 0:
            raise ValueError("alpha and forget_weight must be >= 0")
        if self.mem_threshold is not None and not 0 <= self.mem_threshold <= 1:
            raise ValueError(f"mem_threshold must be in [0, 1], got {self.mem_threshold}")
        if self.refresh is None:  # recorded resolved, so a result's params say what ran
            object.__setattr__(self, "refresh", "epoch" if self.mem_threshold is not None else "step")
        if self.refresh not in REFRESHES:
            raise ValueError(f"refresh must be one of {REFRESHES}, got {self.refresh!r}")


class ThresholdParams(Protocol):
    """The fields :func:`threshold` reads: :class:`LMParams` and ``TaskVector.Params`` have them."""

    @property
    def gamma(self) -> float | None: ...

    @property
    def stop(self) -> str: ...

    @property
    def gamma_stat(self) -> str: ...


def threshold(ctx: Context, p: ThresholdParams) -> float | None:
    """γ: ``p.gamma`` if given, else ``p.gamma_stat`` of the *original*'s scores on ``ctx.val`` (not the
    working model's: a pipeline such as TAU must keep one γ across its stages)."""
    if p.gamma is not None:
        return float(p.gamma)
    if p.stop == "none" and not getattr(p, "selective", False):
        return None  # nothing reads γ
    if ctx.val is None:
        raise ValueError(
            f"stop={p.stop!r} needs a threshold γ: pass gamma=... or val= (unseen sequences from the "
            "forget set's distribution, e.g. held-out people) to calibrate it on"
        )
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


#: an LM method's hyper-parameters
LP = TypeVar("LP", bound=LMParams)


def _given(loss: torch.Tensor) -> torch.Tensor:
    """A retain loss already computed this step, handed to :func:`forget_step` as its probe."""
    return loss


class LMMethod(Method[LP]):
    """Base of the loop-driven methods: subclasses define :meth:`forget_losses` (per sequence, to
    minimise) and may override :meth:`setup`, :meth:`active`, :meth:`forget_scores` and :meth:`finish`.
    The run's γ is ``ctx.state["gamma"]``; hooks keep their own per-run state in ``ctx.state`` too."""

    Params = LMParams
    modalities = frozenset({"classification", "lm"})
    listed = frozenset({"lm"})

    def setup(self, model: nn.Module, ctx: Context) -> None:
        """Per-run preparation (reference likelihoods, control vectors) before the first step."""

    def param_pattern(self, ctx: Context) -> str | None:
        """Which parameters the optimiser updates (a regular expression; None = all)."""
        return self.params.params

    def forget_losses(
        self, model: nn.Module, logits: torch.Tensor, batch, rows: torch.Tensor, ctx: Context
    ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def active(self, scores: torch.Tensor, ctx: Context) -> torch.Tensor:
        """[B] which rows of the batch the step uses, from their current MA ``scores``."""
        p = self.params
        if p.mem_threshold is not None:
            chosen = scores >= p.mem_threshold
            chosen[scores.argmax()] = True  # the first of the batch's most memorized rows
            return chosen
        gamma = ctx.state["gamma"]
        if p.selective and gamma is not None:
            return scores > gamma
        return torch.ones_like(scores, dtype=torch.bool)

    def forget_scores(self, model: nn.Module, ctx: Context) -> torch.Tensor:
        """[N] MA of every forget sequence: the per-epoch refresh and the confirmation of a passing check."""
        return correct_scores(model, ctx.task, ctx.forget, ctx.device)

    def finish(self, model: nn.Module, ctx: Context) -> nn.Module:
        """The model to return once the loop ends."""
        return model

    def _forget_term(
        self,
        model: nn.Module,
        batch,
        rows: torch.Tensor,
        active: torch.Tensor,
        ctx: Context,
        logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """γ_f times the mean forget loss of the active rows; the logits are recomputed at the model's
        current weights when not given (a SAM step's perturbed point)."""
        if logits is None:
            logits = ctx.task.logits(model, batch)
        per_seq = self.forget_losses(model, logits, batch, rows, ctx)
        return self.params.forget_weight * (per_seq * active).sum() / active.sum()

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
        p = self.params
        gamma = ctx.state["gamma"] = threshold(ctx, p)
        self.setup(model, ctx)
        opt = torch.optim.Adam(
            trainable(model, self.param_pattern(ctx)), lr=p.lr, betas=(0.9, 0.98), weight_decay=p.weight_decay
        )
        n = len(ctx.forget)
        bs = n if p.batch_size is None else min(p.batch_size, n)
        per_epoch = math.ceil(n / bs)
        max_steps = min(
            b for b in (p.max_steps, None if p.max_epochs is None else p.max_epochs * per_epoch) if b is not None
        )
        forget_iter = cycle(ctx.task, ctx.forget, bs, ctx.generator)
        retain_iter = None
        if p.alpha > 0 or p.grad_projection:  # GRU steers by the retain gradient even without a retain term
            retain_iter = (
                weighted(ctx.retain, p.retain_batch_size, ctx.generator)
                if hasattr(ctx.retain, "weights")
                else cycle(ctx.task, ctx.retain, p.retain_batch_size, ctx.generator)
            )

        def met(scores: torch.Tensor) -> bool:
            return gamma is not None and p.stop != "none" and stop_met(scores, gamma, p.stop)

        per_step = p.refresh == "step"
        model.eval()  # no dropout: the free per-sequence check must equal the evaluated score
        scores = torch.full((n,), math.inf) if per_step else self.forget_scores(model, ctx)
        steps = 0 if not per_step and met(scores) else max_steps
        bar = progress_bar(steps, self.name, ctx.progress)
        stopped = None if steps else 0
        for i in range(steps):
            rows, batch = next(forget_iter)
            batch = ctx.task.to(batch, ctx.device)
            logits = ctx.task.logits(model, batch)
            if per_step:
                scores[rows] = ctx.task.correct(logits.detach(), batch).float().cpu()
                if met(scores):
                    if bs < n:
                        scores = self.forget_scores(model, ctx)
                    if met(scores):
                        stopped = i
                        break
            active = self.active(scores[rows], ctx).to(logits.device)
            seen = scores[torch.isfinite(scores)]
            row = {"step": i, "forget_ma_mean": float(seen.mean()), "forget_active": int(active.sum())}
            if gamma is not None:
                row["above_gamma"] = int((seen > gamma).sum())
            loss = retain = probe = None
            if active.any():  # selective: this batch may be done while the others are not
                loss = self._forget_term(model, batch, rows, active, ctx, logits)
                row["forget_loss"] = float(loss.detach())
                if retain_iter is not None:
                    _, rb = next(retain_iter)
                    r = self.retain_loss(model, ctx.task.to(rb, ctx.device), ctx)
                    row["retain_loss"] = float(r.detach())
                    if p.alpha > 0:
                        retain = p.alpha * r
                    else:
                        probe = r
            ctx.history.append(row)
            if loss is not None:
                forget_step(
                    model,
                    opt,
                    p,
                    ctx,
                    self.name,
                    loss,
                    forget_again=partial(self._forget_term, model, batch, rows, active, ctx),
                    retain_loss=retain,
                    retain_probe=None if probe is None else partial(_given, probe),
                    grad_clip=p.grad_clip,
                )
            bar.update()
            if not per_step and (i + 1) % per_epoch == 0:
                scores = self.forget_scores(model, ctx)
                ctx.history.append({"epoch": (i + 1) // per_epoch, "forget_ma_mean": float(scores.mean())})
                if met(scores):
                    stopped = i + 1
                    break
        bar.close()
        model = self.finish(model, ctx)
        final = correct_scores(model, ctx.task, ctx.forget, ctx.device)
        summary = {
            "steps": stopped if stopped is not None else max_steps,
            "stopped_by_rule": stopped is not None,
            "gamma": gamma,
            "final_ma_mean": float(final.mean()),
            "final_ma_max": float(final.max()),
        }
        if gamma is not None:
            summary["final_above_gamma"] = int((final > gamma).sum())
        ctx.history.append(summary)
        if stopped is None and gamma is not None and p.stop != "none":
            bound = f"max_steps={p.max_steps}" if max_steps == p.max_steps else f"max_epochs={p.max_epochs}"
            ctx.notes.append(
                f"{self.name}: {bound} reached before the {p.stop} stopping rule held "
                f"({summary['final_above_gamma']} forget sequences above γ={gamma:.3f}, "
                f"mean MA {summary['final_ma_mean']:.3f})"
            )
        return model
