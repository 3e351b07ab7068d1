"""The method interface, its registry, and the run context every method receives."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast

import torch
from torch import nn

from ..data.datasets import SizedDataset, subset
from ..data.splits import ForgetSplit
from ..objectives import Task
from ..train.loop import NonFiniteLoss
from ..train.recipe import Recipe, make_optimizer
from ..utils import eval_mode


@torch.no_grad()
def correct_scores(
    model: nn.Module, task: Task, dataset: SizedDataset, device: torch.device, batch_size: int = 128
) -> torch.Tensor:
    """[N] ``task.correct`` of every example in eval mode (a classifier's 0/1 hit, a sequence's
    memorization MA); the model's mode is restored. Batches of 128: LM logits are [B, T, V]."""
    out = torch.empty(len(dataset))
    with eval_mode(model):
        for rows, batch in task.batches(dataset, batch_size):
            batch = task.to(batch, device)
            out[rows] = task.correct(task.logits(model, batch), batch).float().cpu()
    return out


class Diverged(RuntimeError):
    """A method's update went non-finite or collapsed utility; the last safe checkpoint is kept."""


class OutOfBudget(RuntimeError):
    """The time budget given to ``ob.unlearn`` ran out; the weights after the last full step are kept."""


@dataclass(frozen=True)
class Params:
    """Base of every method's hyper-parameters; common fields are range-checked here, once."""

    #: fields that are mixing weights in [0, 1] (NegGrad+'s beta; NPO's beta is a temperature)
    _unit_interval: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:  # None means "not set": e.g. retrain's epochs defaults to the recipe's
                continue
            if f.name in ("lr", "temperature", "grad_clip") and not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"{f.name} must be > 0, got {v!r}")
            if (f.name == "epochs" or f.name.endswith("batch_size")) and not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{f.name} must be an integer >= 1, got {v!r}")
            if f.name in self._unit_interval and not 0 <= v <= 1:
                raise ValueError(f"{f.name} must be in [0, 1], got {v!r}")


@dataclass(frozen=True)
class OptimParams(Params):
    """Optimiser fields shared by the training-based methods."""

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 1
    batch_size: int = 64
    grad_clip: float | None = None

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(self.optimizer, model.parameters(), self.lr, self.momentum, self.weight_decay)


@dataclass
class Context:
    """Everything a method may use. ``original`` is a frozen eval-mode copy (the teacher)."""

    task: Task
    train: SizedDataset
    split: ForgetSplit
    retain: SizedDataset
    forget: SizedDataset
    original: nn.Module
    device: torch.device
    seed: int
    generator: torch.Generator
    progress: bool | None = None
    val: SizedDataset | None = None
    recipe: Recipe | None = None
    #: the original's training log (recipe, learning events, optional per-batch updates), if known
    log: Any = None
    #: ``time.perf_counter()`` value after which ``after_step`` stops the method (``budget=``)
    deadline: float | None = None
    collapse_drop: float | None = 0.25
    check_every: int = 25
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: what a method computes for this run and reads across its hooks (γ, reference likelihoods,
    #: refusal rows, control vectors, TAU's switch point): it lives and dies with the run, never on
    #: the method instance, so one instance can run twice, or nested, without leaking state
    state: dict[str, Any] = field(default_factory=dict)
    safe_state: dict[str, torch.Tensor] | None = None
    _probe: Any = None
    _probe_ref: float | None = None
    _steps: int = 0

    def checkpoint(self, model: nn.Module) -> None:
        """Remember ``model``'s weights as the state to fall back to if a later step diverges."""
        self.safe_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def restart_from(self, model: nn.Module) -> None:
        """Declare ``model`` (deliberately damaged: weights subtracted, layers re-initialised or
        noised) the new safe state for a repair that only descends on D_r. The retain-accuracy
        collapse check is switched off, since rolling back could only return this damaged model;
        a non-finite loss still rolls back to it, never to the original."""
        self.collapse_drop = None
        self.checkpoint(model)

    def check_loss(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite loss in {where}")

    def retain_probe_accuracy(self, model: nn.Module) -> float:
        """Accuracy on a fixed sample of <= 512 retain examples: a cheap utility-collapse alarm."""
        if self._probe is None:
            g = torch.Generator().manual_seed(self.seed)
            ids = torch.randperm(len(self.retain), generator=g)[:512]
            self._probe = subset(self.retain, ids)
        return float(correct_scores(model, self.task, self._probe, self.device).double().mean())

    def _guard(self, model: nn.Module, where: str) -> float | None:
        """Raise if weights are non-finite or retain accuracy collapsed; else checkpoint."""
        for name, value in model.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise NonFiniteLoss(f"non-finite weights ({name}) {where}")
        acc = None
        if self.collapse_drop is not None:
            if self._probe_ref is None:
                self._probe_ref = self.retain_probe_accuracy(self.original)
            acc = self.retain_probe_accuracy(model)
            if acc < self._probe_ref - self.collapse_drop:
                raise Diverged(f"retain accuracy collapsed to {acc:.3f} (original {self._probe_ref:.3f}) {where}")
        self.checkpoint(model)
        return acc

    def after_step(self, model: nn.Module) -> None:
        """Called by methods after every optimiser step: every ``check_every`` steps, guard and
        checkpoint, so a run that collapses mid-epoch keeps the progress made before it."""
        self._steps += 1
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise OutOfBudget(f"time budget spent after {self._steps} steps")
        if self.check_every and self._steps % self.check_every == 0:
            self._guard(model, f"at step {self._steps}")

    def end_epoch(self, model: nn.Module, epoch: int, **metrics: float) -> None:
        """Log an epoch, check for divergence / utility collapse, then checkpoint the safe state."""
        row = {"epoch": epoch, **metrics}
        try:
            acc = self._guard(model, f"after epoch {epoch}")
        finally:
            self.history.append(row)
        if acc is not None:
            row["retain_probe_acc"] = acc


#: a method's hyper-parameter dataclass
P = TypeVar("P", bound=Params)


class Method(Generic[P]):
    """An unlearning algorithm: a frozen ``Params`` dataclass and a ``run`` returning the model.

    ``run`` receives a private copy of the original and may update it in place. Per-run state goes
    in locals or ``ctx.state``, never on ``self``.

    Generic over its parameters: ``class NegGrad(Method["NegGrad.Params"])`` types ``self.params``
    as the nested ``NegGrad.Params`` (a string, since the class does not exist yet when its bases
    are evaluated). A subclass whose ``Params`` narrows its parent's redeclares ``params:``.
    A plain ``class Mine(Method)`` still works: its ``params`` are typed as the base ``Params``.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]]
    params: P
    #: False for methods that damage the model on purpose within an epoch and repair it later in
    #: the same epoch (random-label): their collapse check runs at epoch ends only.
    guard_steps: ClassVar[bool] = True
    #: which parts of the training set the method may read; ``check_method`` verifies it with a spy
    #: dataset. Retain-only methods (fine-tune, retrain, ...) declare ``frozenset({"retain"})``.
    reads: ClassVar[frozenset[str]] = frozenset({"retain", "forget"})
    #: what the method needs beyond a trained model: "update_log" (trained with
    #: ``ob.train(..., log_updates=...)``), "val" (a held-out set), "recipe" (to retrain).
    needs: ClassVar[frozenset[str]] = frozenset()
    #: False where stopping early would return a meaningless model (``retrain``'s half-trained
    #: oracle): such methods ignore ``ob.unlearn(budget=...)``.
    honours_budget: ClassVar[bool] = True
    #: ``ob.tune``'s search space: parameter -> candidate values (a tuple), searched as a seeded
    #: random sample of the grid. Keep it to the 1-3 parameters that decide forget vs. utility.
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {}
    #: the kinds of model the method is written for: "classification", "lm" (causal LMs) and/or
    #: "diffusion" (class-conditional denoisers); ``ob.unlearn`` refuses a task outside them
    modalities: ClassVar[frozenset[str]] = frozenset({"classification"})
    #: the modalities whose method lists (``available(modality)``, a grid's "all") name the method;
    #: None = every one of ``modalities``. The LM methods also run on classifiers, with LM defaults,
    #: and list themselves under "lm" only
    listed: ClassVar[frozenset[str] | None] = None

    def __init__(self, **overrides: Any) -> None:
        valid = {f.name for f in dataclasses.fields(self.Params)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for method {self.name!r}; valid: {sorted(valid)}")
        # ``Params`` is the class attribute whose instances ``P`` describes (a ClassVar cannot
        # mention a type variable, so the link is stated here, once)
        self.params = cast(P, self.Params(**overrides))

    def run(self, model: nn.Module, ctx: Context) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def param_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.params)


_REGISTRY: dict[str, type[Method[Any]]] = {}
_M = TypeVar("_M", bound="type[Method[Any]]")


def register(cls: _M) -> _M:
    """Class decorator adding a method to the registry under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available(modality: str | None = None) -> list[str]:
    """Registered method names; with ``modality``, those listed for it (see ``Method.listed``): "lm"
    the language-model methods, "classification" the classification ones (what "all" means in a
    classification demo or grid), "diffusion" those that run on class-conditional denoisers. LM
    methods that also run on classifiers, with LM defaults, are listed under "lm" only; the baselines
    ``none`` and ``retrain`` under every modality they run on."""
    if modality is None:
        return sorted(_REGISTRY)
    if modality == "lm":  # every method that runs on causal LMs is an LM method
        return sorted(n for n, c in _REGISTRY.items() if "lm" in c.modalities)
    return sorted(
        n for n, c in _REGISTRY.items() if modality in c.modalities and modality in (c.listed or c.modalities)
    )


#: methods that are the reference points of every modality rather than unlearning algorithms
BASELINES = ("none", "retrain")


def get(name: str) -> type[Method[Any]]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {available()}")
    return _REGISTRY[name]


def frozen_copy(model: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free deep copy (teachers and references)."""
    teacher = copy.deepcopy(model).eval()
    teacher.requires_grad_(False)
    return teacher
