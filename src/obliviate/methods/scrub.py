"""``scrub`` and ``scrub+r``: teacher-student max/min unlearning (Kurmanji et al., NeurIPS 2023)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..data.datasets import labels_of, subset
from ..metrics.accuracy import accuracy
from .base import Context, Method, OptimParams, register
from .common import ascent_batch_size, ascent_loss, epochs, step


@register
class Scrub(Method["Scrub.Params"]):
    """SCRUB (repo meghdadk/SCRUB, ``train_distill``; reference §1). The student starts as the
    original, the teacher is the frozen original. For epoch e = 1..``epochs``: LR =
    lr0 * 0.1^(#milestones < e); if e <= ``max_epochs``, one pass over D_f *maximising*
    KL_T(teacher || student); then one pass over D_r minimising
    ``gamma * CE + alpha * KL_T(teacher || student)``. One optimiser serves both steps.

    Convention: ``alpha`` weighs the KL and ``gamma`` the CE, as in the original code (RUM's port
    names the KL weight beta). Defaults are the large-scale notebook's (SGD, mom 0.9, wd 5e-4,
    3 epochs, 2 max-epochs, T 4, alpha 0.001, gamma 0.99) with two changes. (1) lr 0.03 instead of
    5e-4, because our schedules are far shorter than the paper's. (2) The max-step KL starts at
    zero gradient (student == teacher) and then grows without bound; at lr >= 0.03 it went NaN on
    digits class forgetting. So each forget example's KL is capped at ``kl_cap`` (10, at T 4; the
    original-vs-oracle KL is ~35 for a forgotten class and ~0.1 for random examples), which made
    every seed stable; ``kl_cap=None`` restores the paper's loss.
    """

    name = "scrub"
    #: runs on denoisers through the diffusion task adapter (docs/diffusion.md)
    modalities = frozenset({"classification", "diffusion"})
    search_space = {"lr": (0.01, 0.02, 0.05), "max_epochs": (1, 2, 3)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        lr: float = 0.02
        epochs: int = 3
        max_epochs: int = 2
        temperature: float = 4.0
        alpha: float = 0.001
        gamma: float = 0.99
        batch_size: int = 128
        forget_batch_size: int | None = None
        milestones: tuple[int, ...] = (3, 5, 9)
        kl_cap: float | None = 10.0
        grad_clip: float | None = 1.0

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        self.scrub(model, ctx)
        return model

    def scrub(self, model: nn.Module, ctx: Context, after_epoch: Callable[[int], None] | None = None) -> None:
        """Run SCRUB's epochs 1..``epochs`` on ``model``; ``after_epoch(e)`` runs after each (SCRUB+R
        keeps its rewind candidates there)."""
        p = self.params
        opt = p.make_optimizer(model)
        teacher, task = ctx.original, ctx.task
        forget_bs = ascent_batch_size(len(ctx.forget), p.forget_batch_size)

        def epoch(e: int) -> dict[str, float]:
            for group in opt.param_groups:
                group["lr"] = p.lr * 0.1 ** sum(m < e for m in p.milestones)
            f_kl = r_total = 0.0
            if e <= p.max_epochs:
                for _, batch in task.batches(ctx.forget, forget_bs, shuffle=True, generator=ctx.generator):
                    batch = task.to(batch, ctx.device)
                    with torch.no_grad():
                        t_logits = task.logits(teacher, batch)
                    kl = task.kd_loss(task.logits(model, batch), t_logits, batch, p.temperature)
                    step(model, opt, ascent_loss(kl, p.kl_cap), ctx, "scrub max-step", p.grad_clip)
                    kl = kl.mean()
                    f_kl += float(kl.detach())
            for _, batch in task.batches(ctx.retain, p.batch_size, shuffle=True, generator=ctx.generator):
                batch = task.to(batch, ctx.device)
                logits = task.logits(model, batch)
                losses = task.losses(logits, batch)
                with torch.no_grad():
                    t_logits = task.logits(teacher, batch)
                kl = task.kd_loss(logits, t_logits, batch, p.temperature).mean()
                loss = p.gamma * losses.mean() + p.alpha * kl
                step(model, opt, loss, ctx, "scrub min-step", p.grad_clip)
                r_total += float(loss.detach())
            return {"forget_kl": f_kl, "retain_loss": r_total}

        epochs(model, ctx, p.epochs, "scrub", epoch, first=1, after=after_epoch)


@register
class ScrubRewind(Scrub):
    """SCRUB+R (reference §1.4): run SCRUB keeping a checkpoint per epoch, then return the one
    whose forget-set error is closest to the final model's error on a held-out "forget-validation"
    set — the validation examples whose labels occur in D_f — the proxy for what a retrained model
    would get. Needs ``val=`` in :func:`obliviate.unlearn`. Guards against over-forgetting, which
    an MIA can detect (the Streisand effect).
    """

    name = "scrub+r"
    needs = frozenset({"val"})
    #: its rewind reads forget-set *error* on held-out images, which a denoiser does not have
    modalities = frozenset({"classification"})

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        if ctx.val is None:
            raise ValueError("scrub+r needs a held-out set: pass val= to unlearn() (e.g. data.val)")
        forget_classes = torch.unique(labels_of(ctx.forget))
        val_ids = torch.nonzero(torch.isin(labels_of(ctx.val), forget_classes)).flatten()
        if len(val_ids) == 0:
            raise ValueError("val= has no examples of the forget set's classes; cannot calibrate the rewind")
        forget_val = subset(ctx.val, val_ids)
        checkpoints: list[tuple[int, float, dict]] = []

        def keep(e: int) -> None:
            err = 1 - accuracy(*ctx.task.predict(model, ctx.forget, device=ctx.device))
            checkpoints.append((e, err, copy.deepcopy(model.state_dict())))

        self.scrub(model, ctx, keep)
        reference = 1 - accuracy(*ctx.task.predict(model, forget_val, device=ctx.device))
        best_epoch, best_err, best = min(checkpoints, key=lambda c: abs(c[1] - reference))
        model.load_state_dict(best)
        ctx.notes.append(
            f"rewound to epoch {best_epoch}: forget error {best_err:.3f} vs held-out reference {reference:.3f}"
        )
        ctx.history.append({"rewind_epoch": best_epoch, "reference_error": reference})
        return model
