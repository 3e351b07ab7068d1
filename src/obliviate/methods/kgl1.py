"""``kgl-1``: first place of the NeurIPS 2023 unlearning challenge ("Fanchuan")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..train.recipe import make_optimizer
from .base import Context, Method, OptimParams, register
from .common import ascent_batch_size, epochs, forward_losses, step


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL(uniform || softmax(logits)): zero when every class is equally likely."""
    log_p = F.log_softmax(logits, dim=1)
    return -math.log(logits.shape[1]) - log_p.mean(dim=1).mean()


def contrastive_loss(forget_logits: torch.Tensor, retain_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``-mean(log_softmax(z_f z_r^T / T, dim=1))`` with the retain logits treated as constants.

    Each forget example gets a softmax over the retain batch; the loss is the cross-entropy of
    that softmax with the *uniform* target, so it is minimised when a forget example's logits are
    equally similar to every retain example's, i.e. carry no direction that tells retain classes
    apart (its logsumexp term pushes down the similarity to the closest retain examples: the
    "contrastive ascent" of the write-ups).
    """
    sim = forget_logits @ retain_logits.detach().T / temperature
    return -F.log_softmax(sim, dim=1).mean()


@register
class Kgl1(Method["Kgl1.Params"]):
    """NeurIPS 2023 challenge, 1st place ("Fanchuan"); re-implemented after DeepUnlearn's
    ``munl/unlearning/kgltop1.py`` (xcadet/deepunlearn); reference §4.6.

    Stage 1: one pass over D_f, one SGD step per batch (lr ``uniform_lr``) minimising
    KL(uniform || softmax(f(x_f))). Stage 2, ``epochs`` times: a forget round of SGD steps (lr
    ``forget_lr``, cosine over all rounds to ``eta_min``) on :func:`contrastive_loss` for each
    forget batch zipped with a fresh shuffled pass of D_r (so min(#forget, #retain) batches), then
    one epoch of CE on D_r with SGD at lr ``lr * batch_size / 64`` and wd ``weight_decay``. Each
    stage has its own SGD optimiser (momentum 0.9), as in the entry. DeepUnlearn's reading of the
    contrastive round, followed here: the *logits* of both batches, the retain ones detached, the
    log-softmax over the retain batch (dim -1 of the [forget, retain] similarity matrix), the mean
    over all entries.

    The stage-1 and forget-round passes use batches of ~|D_f| / ``forget_steps`` (as the ascent
    passes of :func:`~obliviate.methods.common.ascent_batch_size`): their damage grows with the
    number of steps, not with |D_f|. At batch 64, a 6,000-example Fashion-MNIST forget set gave 94
    stage-1 steps, which at stage-1 lr 2e-2 cost 7 test points; at the entry's batch 256 a
    135-example digits class got a single stage-1 step and kept 19% forget accuracy.

    Entry: 8 epochs, batch 256 everywhere, lr 1e-3 (x batch/64), wd 1e-2, forget lr 3e-4 (cosine
    to 1e-6), stage-1 lr 5e-3, T 1.15, for a 30-epoch original. Ours keep the losses, T, the three
    optimisers' lrs for the forget passes and wd; changes, measured on the digits MLP (40-epoch
    recipe, 3 seeds) and the Fashion-MNIST CNN (12-epoch recipe, seed 0): 2 epochs (7% of a
    digits retrain, 13% of a Fashion-MNIST one; 3 epochs gained nothing there); retain batch 64 at
    lr 3e-3 (the entry's effective 1e-3 left digits' retain accuracy at 0.964 after class
    forgetting); ~10 forget-pass batches (above). Forget / retain / test accuracy with the
    defaults: digits random 10%: 0.995 / 0.993 / 0.994 (oracle 0.978 / 0.997 / 0.987); class 3:
    0.000 / 0.990 / 0.886 (oracle 0.000 / 0.997 / 0.889); Fashion-MNIST random 10%: 0.894 /
    0.896 / 0.881 (oracle 0.909 / 0.925 / 0.904: the constant-LR SGD retain rounds cost ~2 test
    points there even without the forget passes); class 3: 0.000 / 0.910 / 0.806 (oracle 0.000 /
    0.929 / 0.821).

    The stage-1 and forget steps damage the model within an epoch and its retain round repairs it
    (as random-label), so the collapse guard judges epoch ends only.
    """

    name = "kgl-1"
    guard_steps = False
    search_space = {"uniform_lr": (5e-3, 1e-2, 2e-2), "forget_lr": (1e-4, 3e-4, 1e-3), "lr": (1e-3, 3e-3, 1e-2)}

    @dataclass(frozen=True)
    class Params(OptimParams):
        #: retain-round lr at batch 64; the step uses ``lr * batch_size / 64`` (the entry's rule)
        lr: float = 3e-3
        weight_decay: float = 1e-2
        epochs: int = 2
        batch_size: int = 64
        uniform_lr: float = 5e-3
        forget_lr: float = 3e-4
        eta_min: float = 1e-6
        temperature: float = 1.15
        #: batch size of the stage-1 and forget-round passes (the forget round pairs each forget
        #: batch with a retain batch of the same size); None: ~``forget_steps`` batches per pass
        forget_batch_size: int | None = None
        forget_steps: int = 10

        def __post_init__(self) -> None:
            super().__post_init__()
            if not (isinstance(self.forget_steps, int) and self.forget_steps >= 1):
                raise ValueError(f"forget_steps must be an integer >= 1, got {self.forget_steps!r}")

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:
        p = self.params
        task = ctx.task
        params = list(model.parameters())
        opt_uniform = make_optimizer("sgd", params, p.uniform_lr, p.momentum, 0.0)
        opt_forget = make_optimizer("sgd", params, p.forget_lr, p.momentum, 0.0)
        opt_retain = make_optimizer(p.optimizer, params, p.lr * p.batch_size / 64, p.momentum, p.weight_decay)
        fbs = ascent_batch_size(len(ctx.forget), p.forget_batch_size, p.forget_steps)
        rounds = min(math.ceil(len(ctx.forget) / fbs), math.ceil(len(ctx.retain) / fbs))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt_forget, max(1, rounds * p.epochs), eta_min=p.eta_min)

        model.train()
        u_total = 0.0
        for _, batch in task.batches(ctx.forget, fbs, shuffle=True, generator=ctx.generator):
            logits = task.logits(model, task.to(batch, ctx.device))
            loss = uniform_kl(logits)
            step(model, opt_uniform, loss, ctx, "kgl-1 stage 1", p.grad_clip)
            u_total += float(loss.detach()) * len(logits)

        def epoch(e: int) -> dict[str, float]:
            c_total = r_total = 0.0
            forget_batches = task.batches(ctx.forget, fbs, shuffle=True, generator=ctx.generator)
            retain_batches = task.batches(ctx.retain, fbs, shuffle=True, generator=ctx.generator)
            for (_, f_batch), (_, r_batch) in zip(forget_batches, retain_batches):
                f_logits = task.logits(model, task.to(f_batch, ctx.device))
                with torch.no_grad():
                    r_logits = task.logits(model, task.to(r_batch, ctx.device))
                loss = contrastive_loss(f_logits, r_logits, p.temperature)
                step(model, opt_forget, loss, ctx, "kgl-1 forget round", p.grad_clip)
                sched.step()
                c_total += float(loss.detach())
            for _, batch in task.batches(ctx.retain, p.batch_size, shuffle=True, generator=ctx.generator):
                _, losses = forward_losses(model, ctx, batch)
                step(model, opt_retain, losses.mean(), ctx, "kgl-1 retain round", p.grad_clip)
                r_total += float(losses.detach().sum())
            metrics = {"contrastive_loss": c_total / max(1, rounds), "retain_loss": r_total / len(ctx.retain)}
            if e == 0:
                metrics["uniform_kl"] = u_total / len(ctx.forget)
            return metrics

        epochs(model, ctx, p.epochs, "kgl-1", epoch)
        return model
