"""Vectorised ensembles: K models of one recipe trained at once, for oracle distributions.

Metrics that compare an unlearned model with *a distribution* of oracles (the NeurIPS 2023 score,
U-LiRA), shadow-model MIAs and Feldman-style memorization estimates need tens to hundreds of small
models of one recipe. Training them one by one wastes most of a CPU on per-step overhead: a digits
MLP step is ~0.1 ms of arithmetic and ~0.3 ms of Python, dispatch and optimiser bookkeeping. Here
the K members' parameters are stacked into leaf tensors [K, ...] and every step runs once for all
of them:

* **data path**: each member keeps its own shuffle generator, seeded exactly as
  :func:`obliviate.train` seeds it; an epoch's K permutations are drawn at once into an index tensor
  [K, m] and each step gathers the K mini-batches with one advanced-indexing op, ``x[idx]``.
* **forward**: an ``nn.Sequential`` runs layer by layer; ``nn.Linear`` layers become one
  ``baddbmm`` over the stacked weights in a feature-major layout (activations stored as [K, F, B],
  so the weight gradient comes out of ``bmm`` already in the weight's own layout and no copy is
  made); every other layer, and any non-``Sequential`` model, runs under
  ``torch.func.vmap(functional_call(...))``.
* **fused step**: the loss is the sum over members of each member's batch-mean loss, so one
  ``backward`` gives every member exactly its own gradient, and one optimiser (the recipe's
  Adam/AdamW/SGD, in its fused single-kernel form where available) steps all members at once. These
  optimisers act elementwise, so one step on the stacked leaves is K independent per-model steps,
  and the shared LR schedule is the same for every member anyway.

Member k therefore starts from the same initialisation, sees the same batches and follows the same
trajectory as ``train(recipe, dataset, seed=seeds[k])``, up to floating-point summation order
(``bmm`` vs ``addmm``; fused vs per-tensor Adam).

Models with buffers (BatchNorm running statistics, updated in place during training) or layers that
``vmap`` rejects in training (random layers such as dropout) are trained one after another with
:func:`obliviate.train` instead, with a log message saying so; the result is an :class:`Ensemble`
either way.

Measured with ``benchmarks/ensemble_speed.py`` on 2 otherwise idle CPU cores: 64 default digits MLPs
(64-256-10, 40 epochs) in 4.6 s against 22.4 s for 64 ``train`` calls (4.9x per model; a plain
whole-model ``vmap`` with the per-tensor optimiser: 3.5x). The stacked step is bound by matmul
arithmetic (~80% of the cores' fp32 peak at 256 hidden units) while a sequential step is bound by
per-step overhead, so the speed-up grows as models shrink: 10-17x with 32-128 hidden units. The small
CNN gains ~1-1.3x on 8x8 digits: its convolutions keep the cores busy one model at a time already.
On 28x28 Fashion-MNIST (10k images, 40 epochs) it loses: 32 members took 142 s each against 80 s for
one ``train`` call (``benchmarks/neurips23.py --dataset fashion-mnist``), so there a loop is faster.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from ..data.datasets import ArrayDataset, SizedDataset, subset
from ..data.loading import iterate_batches
from ..io import load_state, read_json, save_state, write_json
from ..models.log import TrainingLog
from ..objectives import ClassificationTask
from ..utils import progress_bar, resolve_device, seeded
from .loop import NonFiniteLoss, train
from .recipe import Recipe, make_scheduler

logger = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]
_WEIGHTS, _MANIFEST = "ensemble.safetensors", "manifest.json"


class Ensemble:
    """K trained members of one recipe, held as stacked tensors [K, ...].

    ``params`` and ``buffers`` map the module's parameter / buffer names to stacked tensors;
    ``subsets`` [K, m] records which dataset positions each member trained on (None: all);
    ``history`` [epochs, K] holds each member's mean training loss per epoch (None for members
    trained by the sequential fallback, whose loop does not return it).
    """

    def __init__(
        self,
        recipe: Recipe,
        seeds: Sequence[int],
        params: Tensors,
        buffers: Tensors | None = None,
        *,
        subsets: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
        seconds: float = 0.0,
        n_examples: int | None = None,
    ) -> None:
        self.recipe = recipe
        self.seeds = [int(s) for s in seeds]
        self.params = params
        self.buffers = buffers or {}
        self.subsets = subsets
        self.history = history
        self.seconds = seconds
        self.n_examples = n_examples
        bad = [n for n, t in {**self.params, **self.buffers}.items() if t.shape[:1] != (len(self.seeds),)]
        if bad:
            raise ValueError(f"stacked tensors {bad[:3]} do not have {len(self.seeds)} members (one per seed)")

    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        more = "..." if len(self) > 4 else ""
        return f"Ensemble({len(self)} x {self.recipe.architecture}, seeds={self.seeds[:4]}{more})"

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def to(self, device: str | torch.device) -> Ensemble:
        """A copy with every stacked tensor on ``device``."""
        move = lambda d: {n: t.to(device) for n, t in d.items()}  # noqa: E731
        return Ensemble(
            self.recipe,
            self.seeds,
            move(self.params),
            move(self.buffers),
            subsets=self.subsets,
            history=self.history,
            seconds=self.seconds,
            n_examples=self.n_examples,
        )

    @torch.no_grad()
    def predict(self, dataset: SizedDataset, batch_size: int = 256) -> torch.Tensor:
        """Eval-mode logits of every member on every example: [K, N, C] float, on CPU.

        All members see the same batch (``vmap`` with the input unbatched), so a pass costs about
        one forward of a K-times wider model.
        """
        skeleton = _skeleton(self.recipe).to(self.device).eval()
        forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)), in_dims=(0, 0, None))
        outs = [
            forward(self.params, self.buffers, x.to(self.device)).float().cpu()
            for _, (x, _) in iterate_batches(dataset, batch_size)
        ]
        return torch.cat(outs, dim=1)

    def model(self, k: int) -> nn.Module:
        """Member ``k`` as an ordinary module (eval mode, ``obliviate_spec`` and training log set)."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"member {k} out of range for an ensemble of {len(self)}")
        model = _skeleton(self.recipe).to(self.device)
        state = {n: t[k] for n, t in {**self.params, **self.buffers}.items()}
        missing, _ = model.load_state_dict(state, strict=False)
        if missing:
            raise ValueError(f"the ensemble lacks tensors {missing[:5]} of the recipe's model")
        model.eval()
        model.obliviate_log = TrainingLog(  # type: ignore[assignment]  # torch types Module.__setattr__ as Tensor | Module only
            recipe=self.recipe.to_dict(),
            seed=self.seeds[k],
            seconds=self.seconds / len(self),
            n_examples=self.n_examples if self.subsets is None else int(self.subsets.shape[1]),
        )
        return model

    def models(self) -> list[nn.Module]:
        """Every member as an ordinary module (see :meth:`model`)."""
        return [self.model(k) for k in range(len(self))]

    def save(self, folder: str | Path) -> Path:
        """Write ``ensemble.safetensors`` (stacked tensors) and ``manifest.json``, each atomically."""
        from ..models.store import versions

        folder = Path(folder)
        tensors = {f"param.{n}": t for n, t in self.params.items()}
        tensors.update({f"buffer.{n}": t for n, t in self.buffers.items()})
        if self.subsets is not None:
            tensors["subsets"] = self.subsets
        if self.history is not None:
            tensors["history"] = self.history
        save_state(tensors, folder / _WEIGHTS)
        write_json(
            folder / _MANIFEST,
            {
                "kind": "obliviate.Ensemble",
                "versions": versions(),
                "recipe": self.recipe.to_dict(),
                "seeds": self.seeds,
                "seconds": self.seconds,
                "n_examples": self.n_examples,
                "model": getattr(_skeleton(self.recipe), "obliviate_spec", None),
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path, recipe: Recipe | None = None) -> Ensemble:
        """Reload a saved ensemble (safetensors only: nothing is unpickled), on CPU.

        Pass ``recipe`` when the ensemble was trained from a custom ``Recipe(factory=...)``, which a
        manifest cannot rebuild.
        """
        folder = Path(folder)
        manifest = read_json(folder / _MANIFEST)
        if manifest.get("kind") != "obliviate.Ensemble":
            raise ValueError(f"{folder} does not hold a saved Ensemble (manifest kind {manifest.get('kind')!r})")
        recipe = recipe or Recipe.from_dict(manifest["recipe"])
        state = load_state(folder / _WEIGHTS)
        part = lambda prefix: {n[len(prefix) :]: t for n, t in state.items() if n.startswith(prefix)}  # noqa: E731
        ensemble = cls(
            recipe,
            manifest["seeds"],
            part("param."),
            part("buffer."),
            subsets=state.get("subsets"),
            history=state.get("history"),
            seconds=manifest.get("seconds", 0.0),
            n_examples=manifest.get("n_examples"),
        )
        skeleton = _skeleton(recipe)
        expected = {n: t.shape for n, t in [*skeleton.named_parameters(), *skeleton.named_buffers()]}
        found = {n: t.shape[1:] for n, t in {**ensemble.params, **ensemble.buffers}.items()}
        if expected != found:
            wrong = sorted(set(expected.items()) ^ set(found.items()))[:5]
            raise ValueError(f"{folder} does not fit the recipe's model (mismatched tensors {wrong})")
        return ensemble


def train_ensemble(
    recipe: Recipe,
    dataset: SizedDataset,
    seeds: Sequence[int],
    *,
    subsets: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    chunk_size: int | None = None,
    precision: str = "fp32",
) -> Ensemble:
    """Train ``len(seeds)`` models of ``recipe`` at once; member k equals ``train(recipe, ..., seed=seeds[k])``.

    ``subsets`` [K, m] gives member k its own training set ``subset(dataset, subsets[k])`` (m
    dataset positions, e.g. random halves for memorization or shadow models). ``chunk_size`` caps
    how many members train at once (None: all); chunks run one after another and give the same
    members. Activations grow with members x batch size: besides bounding memory, chunks of 16-32
    ran the digits MLP 10-20% faster than 64 at once on 2 CPU cores (tensors stay in cache).
    ``precision="bf16"`` runs the forward and backward matrix products on bfloat16 inputs (fp32
    accumulation; weights, optimiser state, softmax and loss stay fp32) under ``torch.autocast``:
    on CPUs with bf16 matrix units it is several times faster, at the price of members that no
    longer follow ``train``'s fp32 trajectories exactly, only its distribution (measured with the
    NeurIPS 2023 ε-score in ``benchmarks/ensemble_speed.py``). The default "fp32" is exact.
    Classification only (cross-entropy, as ``train``'s default task). Deterministic under the seeds
    on CPU. A non-finite loss raises :class:`NonFiniteLoss`, checked once per epoch (one host sync
    per epoch, not per step).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: an ensemble needs at least one member")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    subsets = _check_subsets(subsets, len(seeds), len(dataset))
    device = resolve_device(device)
    start = time.perf_counter()
    m = len(dataset) if subsets is None else int(subsets.shape[1])
    steps = recipe.epochs * math.ceil(m / recipe.batch_size)
    bar = progress_bar(len(seeds) * steps, "ensemble", progress)  # member-steps
    try:
        first = _initialise(recipe, seeds[:1], device)[0][0]
        ClassificationTask(recipe.num_classes).check(first, dataset)
        reason = _not_vectorisable(first)
        if reason is None:
            try:
                x, y = _tensors(dataset)
                chunk = chunk_size or len(seeds)
                parts = [
                    _fit_stacked(
                        recipe,
                        seeds[i : i + chunk],
                        x,
                        y,
                        None if subsets is None else subsets[i : i + chunk],
                        device,
                        bar,
                        precision,
                    )
                    for i in range(0, len(seeds), chunk)
                ]
                params = {n: torch.cat([p[n] for p, _ in parts]) for n in parts[0][0]}
                history = torch.cat([h for _, h in parts], dim=1)
                return Ensemble(
                    recipe,
                    seeds,
                    params,
                    subsets=subsets,
                    history=history,
                    seconds=time.perf_counter() - start,
                    n_examples=len(dataset),
                )
            except _NotVectorisable as e:
                reason = str(e)
                bar.reset()
        logger.warning(
            "train_ensemble: %s; training the %d members one after another with obliviate.train "
            "(no vectorised speed-up)",
            reason,
            len(seeds),
        )
        models = []
        for k, seed in enumerate(seeds):
            data = dataset if subsets is None else subset(dataset, subsets[k])
            models.append(train(recipe, data, seed=seed, device=device, progress=False))
            bar.update(steps)
    finally:
        bar.close()
    return Ensemble(
        recipe,
        seeds,
        _stack(models, "parameters"),
        _stack(models, "buffers"),
        subsets=subsets,
        seconds=time.perf_counter() - start,
        n_examples=len(dataset),
    )


class _NotVectorisable(RuntimeError):
    """The model failed a trial vmapped training step (the message says why)."""


def _fit_stacked(
    recipe: Recipe,
    seeds: list[int],
    x: torch.Tensor,
    y: torch.Tensor,
    subsets: torch.Tensor | None,
    device: torch.device,
    bar: tqdm,
    precision: str = "fp32",
) -> tuple[Tensors, torch.Tensor]:
    """Train one chunk of members as stacked leaves; returns (stacked params, history [epochs, K])."""
    members, generators = _initialise(recipe, seeds, device)
    skeleton = members[0].train()
    params = {
        name: stacked.to(device).requires_grad_(skeleton.get_parameter(name).requires_grad)
        for name, stacked in _stack(members, "parameters").items()
    }
    forward = _stacked_forward(skeleton, params)
    x, y = x.to(device), y.to(device)
    if precision == "bf16" and x.is_floating_point():
        x = x.to(torch.bfloat16)  # cast the data once, not every batch (autocast would per step)
    rows = None if subsets is None else subsets.to(device)
    k, m = len(seeds), len(y) if rows is None else rows.shape[1]

    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def member_losses(idx: torch.Tensor) -> torch.Tensor:
        """Each member's mean cross-entropy on its own batch: [K]."""
        with autocast:
            logits = forward(x[idx])
        return F.cross_entropy(logits.float().transpose(1, 2), y[idx], reduction="none").mean(1)

    trainable = [p for p in params.values() if p.requires_grad]
    probe = torch.zeros(k, min(2, len(y)), dtype=torch.long, device=device)
    try:  # a trial step: vmap rejects random ops and data-dependent control flow in training
        torch.autograd.grad(member_losses(probe).sum(), trainable)
    except RuntimeError as e:
        raise _NotVectorisable(f"a vmapped training step failed ({str(e).splitlines()[0]})") from None

    optimizer = _fused(recipe.make_optimizer(trainable))
    per_epoch = math.ceil(m / recipe.batch_size)
    scheduler = make_scheduler(recipe.schedule, optimizer, recipe.epochs * per_epoch)
    history = torch.zeros(recipe.epochs, k)
    for epoch in range(recipe.epochs):
        # Same draws as train(): one randperm of the member's m examples per epoch from its generator.
        order = torch.stack([torch.randperm(m, generator=g) for g in generators]).to(device)
        if rows is not None:
            order = rows.gather(1, order)
        total = torch.zeros(k, device=device)
        for start in range(0, m, recipe.batch_size):
            idx = order[:, start : start + recipe.batch_size]
            losses = member_losses(idx)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            scheduler.step()
            total += losses.detach() * idx.shape[1]
            bar.update(k)  # member-steps, so the bar means the same on the sequential fallback
        history[epoch] = (total / m).cpu()
        diverged = [s for s, v in zip(seeds, history[epoch].tolist()) if not math.isfinite(v)]
        if diverged:
            raise NonFiniteLoss(f"ensemble: non-finite loss at epoch {epoch} for seeds {diverged[:10]}")
        bar.set_postfix(loss=f"{history[epoch].mean():.4f}")
    return {n: p.detach() for n, p in params.items()}, history


def _stacked_forward(module: nn.Module, params: Tensors) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(x [K, B, ...]) -> [K, B, ...]``: the module applied by every member to its own batch.

    Plain ``nn.Sequential`` containers run child by child and plain ``nn.Linear`` layers as one
    batched matmul (below); anything else is ``vmap``-ed over ``functional_call``.
    """
    if type(module).forward is nn.Sequential.forward:
        parts = [
            _stacked_forward(child, {n[len(name) + 1 :]: t for n, t in params.items() if n.startswith(name + ".")})
            for name, child in module.named_children()
        ]

        def sequential(x: torch.Tensor) -> torch.Tensor:
            for part in parts:
                x = part(x)
            return x

        return sequential
    if type(module).forward is nn.Linear.forward:
        return lambda x: _stacked_linear(x, params["weight"], params.get("bias"))
    batched = vmap(lambda p, x: functional_call(module, p, (x,)))
    return lambda x: batched(params, x)


def _stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """K linear layers at once: x [K, ..., in], weight [K, out, in] -> [K, ..., out].

    Computed as ``W @ x^T`` ([K, out, in] @ [K, in, N]) and returned as a transposed view, so
    activations live feature-major in memory: the weight gradient ``g @ x`` then has the weight's
    own layout and is accumulated without a copy (~25% of the step time of an ``x @ W^T`` layout
    for the digits MLP), and the next linear layer reads its input transposed for free.
    """
    k, *lead, width = x.shape
    xt = x.reshape(k, -1, width).transpose(1, 2)
    out = torch.bmm(weight, xt) if bias is None else torch.baddbmm(bias.unsqueeze(-1), weight, xt)
    return out.transpose(1, 2).reshape(k, *lead, weight.shape[1])


def _initialise(
    recipe: Recipe, seeds: Sequence[int], device: torch.device
) -> tuple[list[nn.Module], list[torch.Generator]]:
    """Each member's initial model and data-order generator, exactly as :func:`train` makes them."""
    members, generators = [], []
    for seed in seeds:
        with seeded(seed, device) as generator:
            members.append(recipe.build())
        generators.append(generator)
    return members, generators


def _stack(modules: list[nn.Module], kind: str) -> Tensors:
    """The modules' ``parameters`` or ``buffers``, stacked by name into [K, ...] tensors."""
    named = [dict(getattr(module, f"named_{kind}")()) for module in modules]
    return {name: torch.stack([d[name].detach() for d in named]) for name in named[0]}


def _not_vectorisable(model: nn.Module) -> str | None:
    """Why a model must be trained member by member, or None (buffers: state updated in place)."""
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        return f"the model has buffers updated during training (e.g. BatchNorm running statistics: {buffers[0]})"
    return None


def _fused(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimiser class and hyper-parameters in fused (one kernel per step) form, if supported.

    Stacked leaves make the optimiser a few large tensors, where the per-tensor for-loop form
    spends ~3.5x longer in Adam than the fused kernel (digits MLP, K=64).
    """
    group = optimizer.param_groups[0]
    accepted = inspect.signature(type(optimizer)).parameters
    if "fused" not in accepted:
        return optimizer
    options = {n: v for n, v in optimizer.defaults.items() if n in accepted}
    try:
        return type(optimizer)(group["params"], **{**options, "foreach": None, "fused": True})
    except (RuntimeError, ValueError):  # device or dtype without a fused kernel
        return optimizer


def _tensors(dataset: SizedDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole dataset as tensors (x [N, ...], y [N]); the ensemble gathers batches from them."""
    if isinstance(dataset, ArrayDataset):
        return dataset.x, dataset.y
    _, (x, y) = next(iter(iterate_batches(dataset, len(dataset))))
    return x, torch.as_tensor(y).long()


def _check_subsets(subsets: torch.Tensor | None, k: int, n: int) -> torch.Tensor | None:
    if subsets is None:
        return None
    subsets = torch.as_tensor(subsets)
    if subsets.dim() != 2 or subsets.shape[0] != k or subsets.shape[1] == 0:
        raise ValueError(f"subsets must have shape [{k} members, m > 0 positions], got {tuple(subsets.shape)}")
    if subsets.dtype.is_floating_point or subsets.dtype == torch.bool:
        raise ValueError(f"subsets must hold integer dataset positions, got dtype {subsets.dtype}")
    if int(subsets.min()) < 0 or int(subsets.max()) >= n:
        raise ValueError(f"subsets hold positions {int(subsets.min())}..{int(subsets.max())} outside 0..{n - 1}")
    return subsets.long().cpu()


def _skeleton(recipe: Recipe) -> nn.Module:
    """A module of the recipe's architecture to load or call stacked weights with.

    Built under a forked RNG so that materialising members never moves the caller's global seed.
    """
    with torch.random.fork_rng(devices=[]):
        return recipe.build()
