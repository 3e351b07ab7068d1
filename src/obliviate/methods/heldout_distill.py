"""``heldout-distill``: distil the original toward what a model that never saw D_f would output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import subset
from ..data.loading import batch_of
from .base import Context, Method, OptimParams, register
from .common import epochs, memorization_scores, step


@register
class HeldoutDistill(Method["HeldoutDistill.Params"]):
    """Fine-tune the original so that each forget example gets the output a retrained model would
    give it, while the retain set keeps the original's outputs (issue 18's "oracle-matching
    distillation", without training any oracle).

    **Forget targets.** A retrained model sees a forget example as held-out data, so its true-class
    confidence on D_f is distributed like the original's on the validation set (measured on the
    Fashion-MNIST CNN: quantiles 0.02 / 0.37 / 0.96 on val against the oracle's 0.02 / 0.33 / 0.93
    on D_f at 5 / 10 / 20%). *Which* forget examples are the hard ones comes for free from the
    original's training log: the mean true-class confidence over its epochs (a learning-event
    proxy, as RUM uses) ranks D_f with Spearman 0.89 against the oracle's held-out confidence,
    where two oracles agree at 0.92. So example i of rank r_i gets the val confidence quantile
    c_i = Q_val(r_i) on its label, and the rest, 1 - c_i, is spread over the other classes as the
    original spreads it. Whole forgotten classes (``split.classes``) get no mass anywhere, on D_f
    and on the retain teacher alike, since a model that never saw them never predicts them.

    **Retain anchor.** Each step pairs a forget batch with a retain batch distilled from the
    original (KL). Retain rows are drawn with weight ``(1 - hard) + hard * m_i / mean(m)``, m the
    same memorization proxy: the memorized retain examples are the ones a forget update drags
    along, and anchoring them kept retain accuracy at 99.7% against 98.8% for uniform sampling.

    Needs the original's training log (``ob.train`` records it) or ``scores=`` (one memorization
    score per training example, higher = more memorized), and ``val=`` for random forgetting.
    """

    name = "heldout-distill"
    search_space = {"lr": (0.001, 0.002, 0.003), "epochs": (5, 8, 12)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        _unit_interval = ("hard",)
        optimizer: str = "adam"
        lr: float = 0.002
        weight_decay: float = 0.0
        epochs: int = 8
        batch_size: int = 64  # forget rows per step
        retain_batch_size: int = 128
        hard: float = 0.9
        forget_weight: float = 1.0
        proxy: str = "confidence"
        scores: tuple[float, ...] | None = None

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        memorized = self._memorization(ctx)
        targets, keep = self._forget_targets(ctx, memorized)
        retain_mem = memorized[ctx.split.retain_ids]
        weights = (1 - p.hard) + p.hard * (retain_mem / retain_mem.mean())
        task, opt = ctx.task, p.make_optimizer(model)
        n_f = len(ctx.forget)
        steps = -(-n_f // p.batch_size)
        # every step's retain rows drawn up front, so the frozen teacher runs once, in large batches,
        # on the distinct rows only (the weighting repeats the memorized ones)
        n_drawn = p.epochs * steps * p.retain_batch_size
        drawn = torch.multinomial(weights, n_drawn, replacement=True, generator=ctx.generator)
        distinct, where = torch.unique(drawn, return_inverse=True)
        t_logits, _ = task.predict(ctx.original, subset(ctx.retain, distinct), device=ctx.device)
        teacher = _masked_log_softmax(t_logits, keep).exp()
        where = where.view(p.epochs, steps, p.retain_batch_size)

        def epoch(e: int) -> dict[str, float]:
            total = 0.0
            order = torch.randperm(n_f, generator=ctx.generator)
            for s in range(steps):
                f_rows = order[s * p.batch_size : (s + 1) * p.batch_size]
                r_pos = where[e, s]
                fb = task.to(batch_of(ctx.forget, f_rows), ctx.device)
                rb = task.to(batch_of(ctx.retain, distinct[r_pos]), ctx.device)
                logits = task.logits(model, (torch.cat([fb[0], rb[0]]), torch.cat([fb[1], rb[1]])))
                log_p = logits.log_softmax(-1)
                loss_f = F.kl_div(log_p[: len(f_rows)], targets[f_rows].to(ctx.device), reduction="batchmean")
                loss_r = F.kl_div(log_p[len(f_rows) :], teacher[r_pos].to(ctx.device), reduction="batchmean")
                loss = p.forget_weight * loss_f + loss_r
                step(model, opt, loss, ctx, "heldout-distill")
                total += float(loss.detach())
            return {"loss": total / steps}

        epochs(model, ctx, p.epochs, "heldout-distill", epoch)
        return model

    def _memorization(self, ctx: Context) -> torch.Tensor:
        """[N] memorization score of every training example (higher = learned later / less), shifted
        to a positive floor so the retain sampling weights stay valid when every score is 0."""
        s = memorization_scores(ctx, self.params.scores, self.params.proxy, self.name).float()
        return s - s.min() + 1e-3

    def _forget_targets(self, ctx: Context, memorized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n_f, C] the distribution each forget example should end with (class docstring), and the
        [C] mask of the classes a retrained model can still predict (all but forgotten ones)."""
        logits, y = ctx.task.predict(ctx.original, ctx.forget, device=ctx.device)
        keep = torch.ones(logits.shape[-1], dtype=torch.bool)
        keep[list(ctx.split.classes)] = False
        others = _masked_log_softmax(logits, keep).exp()
        if not keep[y].any():  # whole classes forgotten: the remaining classes only
            return others, keep
        if ctx.val is None:
            raise ValueError("heldout-distill needs a held-out set for random forgetting: pass val= (e.g. data.val)")
        v_logits, v_y = ctx.task.predict(ctx.original, ctx.val, device=ctx.device)
        v_conf = _masked_log_softmax(v_logits, keep).exp()[torch.arange(len(v_y)), v_y]
        v_conf = v_conf[keep[v_y]]  # held-out rows of a forgotten class say nothing about the others
        if len(v_conf) == 0:
            raise ValueError("val= has no examples of the classes that stay: cannot calibrate the forget targets")
        # rank the rows of the classes that stay among themselves (0 = most memorized); rows of a
        # forgotten class keep the remaining classes' distribution, with no mass on their label
        stay = keep[y]
        mem = memorized[ctx.split.forget_ids][stay]
        rank = (-mem).argsort().argsort().double() / max(len(mem) - 1, 1)
        conf = torch.zeros(len(y))
        conf[stay] = torch.quantile(v_conf.double(), rank).float()
        rows = torch.arange(len(y))[stay]
        spread = others[stay]
        spread[torch.arange(len(rows)), y[stay]] = 0.0
        spread = spread / spread.sum(-1, keepdim=True).clamp_min(1e-12)
        q = others.clone()
        q[stay] = spread * (1 - conf[stay])[:, None]
        q[rows, y[stay]] = conf[stay]
        return q, keep


def _masked_log_softmax(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """log softmax over the kept classes only (log 0 = -inf elsewhere)."""
    return logits.masked_fill(~keep.to(logits.device), float("-inf")).log_softmax(-1)
