"""``check_method``: the conformance suite every unlearning method must pass (cf. scikit-learn's
``check_estimator``).

It trains tiny originals (an MLP and a CNN on digits for classification methods; a one-layer GPT-2
on a few short text rows, with a character tokenizer, for causal-LM methods; cached per process) and
checks, for a method class or registered name:

- ``untouched``: the caller's model and training data are bit-identical afterwards;
- ``deterministic``: two runs under one seed give bit-identical weights (CPU);
- ``stateless``: a run leaves nothing on the method instance but its ``params`` (per-run state
  belongs in locals or ``ctx.state``, so an instance can run twice, or nested, without leaking it);
- ``reads``: a spy dataset records which training examples the method reads; a method declaring
  ``reads = {"retain"}`` must never read a forget example (and vice versa: a forget-only method
  runs with the collapse guard off, since the guard itself reads a retain probe);
- ``generic data``: the method runs on a plain ``torch.utils.data.Dataset`` (the spy), not only on
  obliviate's tensor datasets;
- ``finite``: every floating-point weight is finite and the model is in eval mode (a run that
  diverged and rolled back still passes: that is the safe fallback working);
- ``recorded``: the result's ``params`` equal the method's parameters, are JSON-serialisable, and
  survive ``UnlearningResult.save``/``load`` with the weights;
- ``budget``: with many epochs and ``budget=`` seconds, a method honouring budgets stops in time;
- ``architectures``: all of the above on every model the method's ``modalities`` cover.

``testing`` sits at the methods' layer (DESIGN.md §2): it drives ``unlearn`` and ``train`` and
nothing in the library imports it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import ForgetSplit
from .data.datasets import ArrayDataset, Data, load
from .data.text import TextDataset
from .methods import UnlearningResult, unlearn
from .methods.base import Method, get
from .models.gpt import tiny_gpt2
from .objectives import CausalLMTask
from .train import Recipe, run_epochs, train
from .train.recipe import LM_ARCHITECTURE
from .utils import seeded

#: slack (seconds) allowed past a budget: one optimiser step, a guard check and the final copy
BUDGET_SLACK = 2.0


class SpyDataset(Dataset):
    """A plain map-style dataset over tensors that records every index read through it."""

    def __init__(self, base: ArrayDataset) -> None:
        self.base = base
        self.reads: set[int] = set()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads.add(int(i))
        return self.base.x[i], self.base.y[i]

    @property
    def targets(self) -> torch.Tensor:
        """Labels may be read freely (class counts, stratification): they are not the example."""
        return self.base.y


class SpyText(TextDataset):
    """A text dataset that records which rows (positions in the full set) are read through
    ``batch`` or indexing, its subsets included: the LM methods read rows that way."""

    def __init__(self, base: TextDataset, origin: torch.Tensor | None = None, reads: set[int] | None = None) -> None:
        super().__init__(base.ids, base.mask, base.labels, base.weights, base.texts)
        self.origin = torch.arange(len(base)) if origin is None else origin
        self.reads: set[int] = set() if reads is None else reads

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.reads.add(int(self.origin[i]))
        return super().__getitem__(i)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.reads.update(self.origin[rows].tolist())
        return super().batch(rows)

    def subset(self, rows: torch.Tensor) -> SpyText:
        rows = torch.as_tensor(rows, dtype=torch.long)
        return SpyText(super().subset(rows), self.origin[rows], self.reads)


class CharTokenizer:
    """Characters as tokens, id 0 the end of sequence: the smallest tokenizer with the interface the
    LM code reads (``tokenizer(text, add_special_tokens=False)["input_ids"]``, ``eos_token_id``,
    ``len``), so the LM checks need no trained vocabulary."""

    eos_token_id = 0

    def __init__(self, alphabet: str) -> None:
        self.vocab = {c: i + 1 for i, c in enumerate(sorted(set(alphabet)))}

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [self.vocab[c] for c in text]}

    def __len__(self) -> int:
        return len(self.vocab) + 1


#: 16 training rows (the GPT memorizes them) and 6 never-seen ones of the same kind (γ, ``val``)
_TEXTS = [
    f"{a}{b} owes {7 * i + 3:02d}."
    for i, (a, b) in enumerate((a, b) for a in ("Ka", "Lo", "Mi", "Nu", "Pe", "Ro") for b in ("n", "v", "s", "t"))
][:22]


@functools.lru_cache(maxsize=1)
def _lm() -> tuple[nn.Module, TextDataset, TextDataset, CharTokenizer]:
    """A 1 x 32 GPT-2 trained to memorize 16 short rows (about a second on a CPU)."""
    tok = CharTokenizer("".join(_TEXTS) + " I don't know.")
    rows, held = TextDataset.from_texts(tok, _TEXTS[:16], 16), TextDataset.from_texts(tok, _TEXTS[16:], 16)
    model = tiny_gpt2(len(tok), layers=1, width=32, heads=2, context=16, seed=0, eos_token_id=tok.eos_token_id)
    task = CausalLMTask(tok)
    with seeded(0) as gen:
        run_epochs(
            model,
            task,
            rows,
            torch.optim.Adam(model.parameters(), lr=1e-2),
            epochs=100,
            batch_size=16,
            generator=gen,
            progress=False,
            desc="tiny GPT",
        )
    return model.eval(), rows, held, tok


@functools.lru_cache(maxsize=1)
def _data() -> Data:
    data = load("digits", val_fraction=0.5, seed=0)
    keep = torch.arange(600)  # a small training set keeps ~20 methods x 2 models within seconds each
    assert isinstance(data.train, ArrayDataset)  # digits
    return dataclasses.replace(data, train=data.train.subset(keep))


@functools.lru_cache(maxsize=4)
def _original(architecture: str, update_log: bool) -> tuple[nn.Module, Recipe]:
    data = _data()
    recipe = Recipe.default_for(data)
    if architecture == "cnn":
        recipe = recipe.replace(architecture="cnn", arch_kwargs={}, epochs=4, batch_size=64)
    else:
        recipe = recipe.replace(epochs=10)
    kwargs: dict[str, Any] = {"log_updates": True} if update_log else {}
    return train(recipe, data.train, seed=0, progress=False, **kwargs), recipe


def _split(n: int) -> ForgetSplit:
    # Positions 0 and 1 are kept in the retain set: ``unlearn`` forwards two examples to check the
    # model's shape, which must not count as the method reading forget data.
    g = torch.Generator().manual_seed(0)
    ids = 2 + torch.randperm(n - 2, generator=g)[: max(3, n // 10)]
    return ForgetSplit.from_ids(n, ids)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _run(
    cls: type[Method],
    params: dict[str, Any],
    instances: list[Method],
    original: nn.Module,
    data: Any,
    split: ForgetSplit,
    kwargs: dict[str, Any],
    **extra: Any,
) -> UnlearningResult:
    """One seeded run of a fresh instance (kept in ``instances``, so checks can inspect it)."""
    instances.append(cls(**{**params, **extra}))
    return unlearn(original, data, split, method=instances[-1], seed=0, progress=False, **kwargs)


def _architectures(cls: type[Method]) -> tuple[str, ...]:
    """The models a method is checked on: MLP and CNN for classification, the tiny GPT for "lm", the
    unit-test denoiser for "diffusion"."""
    return (
        (("mlp", "cnn") if "classification" in cls.modalities else ())
        + (("gpt",) if "lm" in cls.modalities else ())
        + (("denoiser",) if "diffusion" in cls.modalities else ())
    )


@functools.lru_cache(maxsize=1)
def _denoiser() -> nn.Module:
    """The unit-test class-conditional denoiser (T = 100, ~41k parameters), briefly trained with class
    dropout on the digits subset (~2 s). Diffusion methods forget whole classes, so it is checked
    on a class split (:func:`_class_split`)."""
    from .train.diffusion import DiffusionRecipe, train_diffusion

    return train_diffusion(DiffusionRecipe(config="unit-test", steps=30), _data().train, seed=0, progress=False)


def _class_split(dataset: ArrayDataset) -> ForgetSplit:
    """Forget one class that positions 0 and 1 (read by ``unlearn``'s shape check) do not belong to."""
    keep = set(dataset.y[:2].tolist())
    return ForgetSplit.by_class(dataset, next(c for c in range(10) if c not in keep))


def check_method(
    method: str | type[Method],
    *,
    architectures: tuple[str, ...] | None = None,
    params: dict[str, Any] | None = None,
    budget: float = 0.5,
) -> list[str]:
    """Run the conformance checks on ``method``; returns the names of the checks that ran.

    ``architectures``: any of "mlp", "cnn" (digits) and "gpt" (a causal LM on text rows); None =
    every one the method's ``modalities`` cover. Raises ``AssertionError`` listing every failed
    check. ``params`` are hyper-parameter overrides for every run (e.g. to keep a slow method short).
    """
    cls = get(method) if isinstance(method, str) else method
    params = dict(params or {})
    architectures = _architectures(cls) if architectures is None else architectures
    data = _data()
    train = data.train
    assert isinstance(train, ArrayDataset)  # digits (_data)
    failures: list[str] = []
    ran: list[str] = []

    def expect(ok: bool, check: str, why: str) -> None:
        if check not in ran:
            ran.append(check)
        if not ok:
            failures.append(f"[{check}] {why}")

    for arch in architectures:
        # The collapse guard reads a 512-example retain probe on the method's behalf; for a method
        # that declares it never reads the retain set, the guard is off so the spy sees its reads only.
        kwargs: dict[str, Any] = {} if "retain" in cls.reads else {"collapse_drop": None}
        spy: SpyDataset | SpyText
        dataset: ArrayDataset | TextDataset
        tensors: tuple[torch.Tensor, ...]
        if arch == "gpt":
            original, dataset, held, tok = _lm()
            spy, template = SpyText(dataset), copy.deepcopy(original)
            tensors = (dataset.ids, dataset.mask, dataset.labels)
            # the tiny GPT's recipe (for retrain): the same 1 x 32 model, AdamW, 100 steps of 16 rows
            lm_recipe = Recipe(
                LM_ARCHITECTURE,
                (16,),
                len(tok),
                {"layers": 1, "width": 32, "heads": 2, "eos_token_id": tok.eos_token_id},
                "adamw",
                1e-2,
                batch_size=16,
                schedule="constant",
                steps=100,
            )
            kwargs.update(val=held, task=CausalLMTask(tok), recipe=lm_recipe)
        elif arch == "denoiser":
            original, dataset = _denoiser(), train
            spy, template = SpyDataset(dataset), copy.deepcopy(original)
            tensors = (train.x, train.y)
        else:
            original, recipe = _original(arch, "update_log" in cls.needs)
            dataset, template = train, None
            spy = SpyDataset(dataset)
            tensors = (train.x, train.y)
            kwargs.update(val=data.val, recipe=recipe)
        before = _state(original)
        split = _class_split(train) if arch == "denoiser" else _split(len(spy))
        data_before = [t.clone() for t in tensors]

        instances: list[Method] = []
        run = functools.partial(_run, cls, params, instances, original, spy, split, kwargs)

        try:
            a = run()
            reads_a = set(spy.reads)
            spy.reads.clear()
            b = run()
        except Exception as e:  # noqa: BLE001 - every failure is reported, not just the first
            failures.append(f"[{arch}] the method raised {type(e).__name__}: {e}")
            continue
        expect(_same(_state(original), before), "untouched", f"{arch}: the caller's model was modified")
        expect(
            all(torch.equal(t, b) for t, b in zip(tensors, data_before)),
            "untouched",
            f"{arch}: the training data was modified",
        )
        expect(a.model is not original, "untouched", f"{arch}: the result is the caller's model object")
        expect(_same(_state(a.model), _state(b.model)), "deterministic", f"{arch}: two runs with seed 0 differ")
        extra = sorted(set(vars(instances[0])) - {"params"})
        expect(not extra, "stateless", f"{arch}: run left per-run state on the method instance: {extra}")

        forget = set(split.forget_ids.tolist())
        retain = set(range(len(spy))) - forget - {0, 1}
        if "forget" not in cls.reads:
            n = len(reads_a & forget)
            expect(n == 0, "reads", f"{arch}: declares reads={set(cls.reads)} but read {n} forget examples")
        if "retain" not in cls.reads:
            n = len(reads_a & retain)
            expect(n == 0, "reads", f"{arch}: declares reads={set(cls.reads)} but read {n} retain examples")
        expect(reads_a <= set(range(len(spy))), "reads", f"{arch}: read positions outside the dataset")

        weights = [v for v in a.model.state_dict().values() if v.is_floating_point()]
        expect(all(bool(torch.isfinite(v).all()) for v in weights), "finite", f"{arch}: non-finite weights")
        expect(not a.model.training, "finite", f"{arch}: the model is left in training mode")

        expected = dataclasses.asdict(cls(**params).params)
        expect(a.params == expected, "recorded", f"{arch}: result.params {a.params} != {expected}")
        expect(
            a.method == cls.name and a.seed == 0 and a.seconds > 0,
            "recorded",
            f"{arch}: method/seed/seconds not recorded",
        )
        try:
            with tempfile.TemporaryDirectory() as tmp:
                a.save(Path(tmp) / "r")
                back = UnlearningResult.load(Path(tmp) / "r", template)
            same_params = json.dumps(back.params, sort_keys=True) == json.dumps(a.params, sort_keys=True)
            expect(
                same_params and _same(_state(back.model), _state(a.model)),
                "recorded",
                f"{arch}: save/load changed params or weights",
            )
        except (TypeError, ValueError, OSError) as e:
            failures.append(f"[recorded] {arch}: result cannot be saved/reloaded: {e}")

        fields = {f.name for f in dataclasses.fields(cls.Params)}
        if arch == architectures[0] and cls.honours_budget and "epochs" in fields:
            m = cls(**{**params, "epochs": 200})
            try:
                timed = unlearn(original, dataset, split, method=m, seed=0, progress=False, budget=budget, **kwargs)
                expect(
                    timed.seconds < budget + BUDGET_SLACK,
                    "budget",
                    f"took {timed.seconds:.2f}s with budget={budget}s and epochs=200",
                )
            except Exception as e:  # noqa: BLE001
                failures.append(f"[budget] a 200-epoch run under budget={budget}s raised {type(e).__name__}: {e}")
    if failures:
        raise AssertionError(f"{cls.name} failed conformance checks:\n  " + "\n  ".join(failures))
    return ran
