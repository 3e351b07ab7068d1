"""Next-token training of a causal LM through Hugging Face ``accelerate``: the loop behind
``ob.train(recipe, text_data.train, seed=)`` (and ``ob.lm.train``, its old name).

The same function runs in one process or data-parallel under ``accelerate launch`` (several GPUs,
machines, or CPU processes): every process draws the same seeded global batch and keeps its own
shard, so the averaged gradient equals the one-process gradient of the whole batch and the trained
weights do not depend on the number of processes (up to float summation order).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..data.text import TextDataset
from ..models.log import TrainingLog
from ..objectives.causal_lm import CausalLMTask
from ..utils import progress_bar
from .recipe import Recipe


@dataclass
class LMTrainLog:
    """What a training run cost and how the loss went: ``sequences`` counts sequence passes (the
    unit ``seconds``-free cost comparisons use), ``loss`` the mean loss per step."""

    steps: int
    batch_size: int
    lr: float
    seed: int
    processes: int
    seconds: float
    sequences: int
    tokens: int
    loss: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _accelerator(cpu: bool):
    from accelerate import Accelerator

    return Accelerator(cpu=cpu)


def fit_causal_lm(
    model: nn.Module,
    data: TextDataset,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    warmup: int = 0,
    seed: int = 0,
    progress: bool | None = None,
    cpu: bool | None = None,
) -> LMTrainLog:
    """Train ``model`` in place for ``steps`` AdamW steps on rows of ``data`` drawn with probability
    proportional to ``data.weights`` (with replacement), loss = mean over sequences of the mean NLL
    of their scored tokens. ``batch_size`` is the global batch, split across processes. A linear
    warm-up of ``warmup`` steps, then a constant rate (memorization is the point of these models).
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
    task = CausalLMTask()
    task.check(model, data)
    acc = _accelerator(cpu if cpu is not None else not torch.cuda.is_available())
    world, rank = acc.num_processes, acc.process_index
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must divide evenly over {world} processes")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    wrapped, opt = acc.prepare(model, opt)
    g = torch.Generator().manual_seed(seed)
    log = LMTrainLog(steps, batch_size, lr, seed, world, 0.0, 0, 0)
    bar = progress_bar(steps, "lm train", progress if acc.is_main_process else False)
    start = time.perf_counter()
    wrapped.train()
    for _ in range(steps):
        rows = torch.multinomial(data.weights, batch_size, replacement=True, generator=g)
        batch = task.to(data.batch(rows), acc.device)
        ids, mask, labels = batch
        shard = (ids[rank::world], mask[rank::world], labels[rank::world])
        loss = task.losses(task.logits(wrapped, shard), shard).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {len(log.loss)}")
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        sched.step()
        log.loss.append(float(acc.reduce(loss.detach(), "mean")))
        log.tokens += int((batch[2][:, 1:] != -100).sum())
        bar.update()
        if len(log.loss) % 50 == 0:
            bar.set_postfix(loss=f"{log.loss[-1]:.3f}")
    bar.close()
    log.seconds = time.perf_counter() - start
    log.sequences = steps * batch_size
    acc.wait_for_everyone()
    model.eval()
    return log


def train_causal_lm(
    recipe: Recipe,
    data: TextDataset,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> nn.Module:
    """A fresh model of an LM ``recipe`` (:meth:`Recipe.default_for` on text data) trained for
    ``recipe.steps`` sampled batches by :func:`fit_causal_lm`; initialisation and batches follow
    ``seed``, exactly as ``fit_causal_lm(tiny_gpt2(..., seed=seed), data, seed=seed, ...)`` does
    (the lm-demo's originals and oracles). Returns the model in eval mode with its training log."""
    if recipe.steps is None:
        raise ValueError("an LM recipe trains for a number of steps: set Recipe.steps")
    if recipe.optimizer != "adamw" or recipe.schedule != "constant":
        raise ValueError("LM recipes train with AdamW at a constant rate (optimizer='adamw', schedule='constant')")
    model = recipe.build(seed=seed)
    cpu = None if device is None else torch.device(device).type == "cpu"
    if not cpu and device is not None:
        model = model.to(device)
    log = fit_causal_lm(
        model,
        data,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=seed,
        progress=progress,
        cpu=cpu,
    )
    # torch types Module.__setattr__ as Tensor | Module only
    model.obliviate_log = TrainingLog(  # type: ignore[assignment]
        recipe=recipe.to_dict(), seed=seed, seconds=log.seconds, n_examples=len(data)
    )
    return model
