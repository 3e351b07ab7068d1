"""SISA: Sharded, Isolated, Sliced, Aggregated training (Bourtoule et al., IEEE S&P 2021; reference B5).

Exact unlearning by construction: each of S constituent models sees only its shard, trained slice
by slice with a checkpoint after each slice, so deleting a point retrains one shard from the slice
that held it — and gives *exactly* the ensemble a fresh SISA would have trained without the point.

Exactness rests on three choices made here:

* the partition is a seeded permutation of *all* ids; deleting ids removes them from their slices
  and moves no other id, so ``fit(exclude=ids)`` and ``delete(ids)`` see the same slices;
* each stage (shard s, slice r) draws its shuffling from a generator seeded by (seed, s, r) and
  starts from the stored checkpoint of stage r − 1 (weights *and* optimiser state), never from a
  stream that earlier stages advanced;
* every shard job runs with the same number of torch threads (reductions are thread-count
  dependent), wherever its executor runs it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.datasets import SizedDataset, subset
from ..data.loading import iterate_batches
from ..data.splits import _check_ids
from ..executor import Executor, get_executor
from ..objectives import ClassificationTask
from ..train.loop import run_epochs
from ..train.recipe import Recipe

State = dict[str, Any]


def slice_epochs(epochs: int, slices: int) -> list[int]:
    """Epochs of each stage: ``int(i·ē) − int((i−1)·ē)`` with ē = 2e/(R+1), as the SISA code does, so
    the whole schedule costs about as many sample-passes as training the shard for ``epochs``."""
    e = 2 * epochs / (slices + 1)
    return [max(1, int(i * e) - int((i - 1) * e)) for i in range(1, slices + 1)]


def _train_stages(job: dict) -> list[State]:
    """Train one shard from stage ``start`` to the end; returns the checkpoint after each stage.

    A top-level function of one dict (recipe, data, slices, seeds, starting checkpoint), so any
    executor can run it in another process or machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        recipe = Recipe.from_dict(job["recipe"]) if isinstance(job["recipe"], dict) else job["recipe"]
        task = ClassificationTask(recipe.num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(job["init_seed"])
            model = recipe.build()
        opt = recipe.make_optimizer(model.parameters())
        if job["checkpoint"] is not None:
            model.load_state_dict(job["checkpoint"]["model"])
            opt.load_state_dict(job["checkpoint"]["optimizer"])
        out = []
        for r in range(job["start"], len(job["slices"])):
            seen = torch.cat([torch.as_tensor(s, dtype=torch.long) for s in job["slices"][: r + 1]])
            if len(seen):
                gen = torch.Generator().manual_seed(job["stage_seeds"][r])
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(job["stage_seeds"][r])
                    run_epochs(
                        model,
                        task,
                        subset(job["dataset"], seen.sort().values),
                        opt,
                        epochs=job["epochs"][r],
                        batch_size=recipe.batch_size,
                        generator=gen,
                        progress=False,
                    )
            out.append({"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(opt.state_dict())})
        return out
    finally:
        torch.set_num_threads(threads)


@dataclass
class Deletion:
    """What one ``delete`` did: shard -> first retrained slice, examples removed, time taken."""

    retrained: dict[int, int]
    removed: int
    seconds: float
    sample_passes: int  # examples x epochs retrained: the compute a full retrain would spend on everything


@dataclass
class SISA:
    """``ob.exact.SISA(recipe, shards=S, slices=R, seed=0)``: ``.fit(dataset, exclude=None)``,
    ``.delete(ids)``, ``.predict_proba(x)``.

    ``aggregation``: "mean" (mean softmax, default) or "vote" (share of constituents voting for
    each class, as the SISA code's default). ``recipe.epochs`` is each shard's budget, spread over
    the slices; the learning rate is the recipe's, constant (a schedule would tie a stage's steps to
    data it no longer holds after a deletion).
    """

    recipe: Recipe
    shards: int = 4
    slices: int = 4
    seed: int = 0
    aggregation: str = "mean"
    executor: Executor | str = "in-process"
    threads: int | None = None
    # state after fit
    n: int = 0
    assign: np.ndarray | None = field(default=None, repr=False)  # id -> (shard, slice); -1 when deleted
    members: list[list[list[int]]] = field(default_factory=list, repr=False)  # [shard][slice] -> ids
    checkpoints: list[list[State]] = field(default_factory=list, repr=False)
    dataset: SizedDataset | None = field(default=None, repr=False)
    deleted: set[int] = field(default_factory=set, repr=False)
    fit_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.shards < 1 or self.slices < 1:
            raise ValueError(f"shards and slices must be >= 1, got {self.shards} and {self.slices}")
        if self.aggregation not in ("mean", "vote"):
            raise ValueError(f"aggregation must be 'mean' or 'vote', got {self.aggregation!r}")
        if self.recipe.factory is not None:
            raise ValueError("SISA ships recipes to executors by name: use a registered architecture, not factory=")

    # ---- training ---------------------------------------------------------------------------------
    def _partition(self, n: int) -> None:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
        self.assign = np.empty((n, 2), dtype=np.int64)
        self.members = []
        for s, shard in enumerate(np.array_split(perm, self.shards)):
            parts = [sorted(p.tolist()) for p in np.array_split(shard, self.slices)]
            for r, part in enumerate(parts):
                self.assign[part, 0], self.assign[part, 1] = s, r
            self.members.append(parts)

    def _job(self, s: int, start: int) -> dict:
        return {
            "recipe": self.recipe.to_dict(),
            "dataset": self.dataset,
            "slices": self.members[s],
            "start": start,
            "checkpoint": self.checkpoints[s][start - 1] if start > 0 else None,
            "init_seed": self.seed * 10_007 + s,
            "stage_seeds": [self.seed * 1_000_003 + s * 1_009 + r for r in range(self.slices)],
            "epochs": slice_epochs(self.recipe.epochs, self.slices),
            "threads": self.threads,
        }

    def _run(self, starts: dict[int, int]) -> None:
        ex = get_executor(self.executor) if isinstance(self.executor, str) else self.executor
        jobs = [dict(self._job(s, r), shard=s) for s, r in starts.items()]
        for job, states in ex.map(_train_stages, jobs):
            s, r = job["shard"], job["start"]
            self.checkpoints[s][r:] = states

    def fit(self, dataset: SizedDataset, exclude: Any = None) -> SISA:
        """Partition all ids, drop ``exclude`` from their slices, train every shard slice by slice."""
        start = time.perf_counter()
        self.n, self.dataset = len(dataset), dataset
        self.threads = self.threads or torch.get_num_threads()
        self._partition(self.n)
        self.deleted = set()
        self.checkpoints = [[{}] * self.slices for _ in range(self.shards)]
        if exclude is not None and len(exclude):
            self._drop(_check_ids(torch.as_tensor(np.array(exclude)).long(), self.n, "exclude ids"))
        self._run({s: 0 for s in range(self.shards)})
        self.fit_seconds = time.perf_counter() - start
        return self

    def _drop(self, ids: torch.Tensor) -> dict[int, int]:
        if self.assign is None:  # unreachable: fit() partitions first, delete() checks
            raise RuntimeError("fit() first")
        first: dict[int, int] = {}
        for i in ids.tolist():
            s, r = (int(v) for v in self.assign[i])
            self.members[s][r].remove(i)
            self.assign[i] = -1
            self.deleted.add(i)
            first[s] = min(first.get(s, r), r)
        return first

    def delete(self, ids: Any) -> Deletion:
        """Forget ``ids`` exactly: retrain only their shards, from the earliest slice that held one."""
        if self.assign is None:
            raise RuntimeError("fit() first")
        if self.dataset is None:
            raise RuntimeError("deleting needs the training data: SISA.load(folder, dataset)")
        ids = _check_ids(torch.as_tensor(np.array(ids)).long(), self.n, "ids to delete")
        gone = sorted(set(ids.tolist()) & self.deleted)
        if gone:
            raise ValueError(f"ids already deleted: {gone[:5]}")
        start = time.perf_counter()
        first = self._drop(ids)
        self._run(first)
        ep = slice_epochs(self.recipe.epochs, self.slices)
        passes = sum(
            sum(len(x) for x in self.members[s][: r + 1]) * ep[r]
            for s, r0 in first.items()
            for r in range(r0, self.slices)
        )
        return Deletion(dict(sorted(first.items())), len(ids), time.perf_counter() - start, passes)

    # ---- persistence --------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``sisa.json`` (settings, slice membership, deleted ids) and ``checkpoints.safetensors`` (every
        stage's weights and optimiser tensors): enough to predict and to keep deleting after ``load``."""
        from ..io import save_state, write_json

        folder = Path(folder)
        tensors, groups = {}, {}
        for s, shard in enumerate(self.checkpoints):
            for r, ck in enumerate(shard):
                for k, v in ck["model"].items():
                    tensors[f"{s}.{r}.model.{k}"] = v
                for i, st in ck["optimizer"]["state"].items():
                    for k, v in st.items():
                        if isinstance(v, torch.Tensor):
                            tensors[f"{s}.{r}.opt.{i}.{k}"] = v
                groups[f"{s}.{r}"] = ck["optimizer"]["param_groups"]
        save_state(tensors, folder / "checkpoints.safetensors")
        fp = getattr(self.dataset, "fingerprint", None)
        write_json(
            folder / "sisa.json",
            {
                "recipe": self.recipe.to_dict(),
                "shards": self.shards,
                "slices": self.slices,
                "seed": self.seed,
                "aggregation": self.aggregation,
                "threads": self.threads,
                "n": self.n,
                "members": self.members,
                "deleted": sorted(self.deleted),
                "fit_seconds": self.fit_seconds,
                "param_groups": groups,
                "dataset_fingerprint": fp() if callable(fp) else None,
            },
        )
        return folder

    @classmethod
    def load(cls, folder: str | Path, dataset: SizedDataset | None = None) -> SISA:
        """Reload a saved ensemble; pass the training ``dataset`` to keep deleting (checked by fingerprint)."""
        from ..io import load_state, read_json

        folder = Path(folder)
        meta = read_json(folder / "sisa.json")
        if dataset is not None:
            fp = getattr(dataset, "fingerprint", None)
            if meta["dataset_fingerprint"] and callable(fp) and fp() != meta["dataset_fingerprint"]:
                raise ValueError("this dataset is not the one the ensemble was fitted on (fingerprints differ)")
        t = load_state(folder / "checkpoints.safetensors")
        sisa = cls(
            Recipe.from_dict(meta["recipe"]),
            meta["shards"],
            meta["slices"],
            meta["seed"],
            meta["aggregation"],
            threads=meta["threads"],
        )
        sisa.n, sisa.members, sisa.deleted = meta["n"], meta["members"], set(meta["deleted"])
        sisa.fit_seconds, sisa.dataset = meta["fit_seconds"], dataset
        sisa.assign = np.full((sisa.n, 2), -1, dtype=np.int64)
        for s, shard in enumerate(sisa.members):
            for r, ids in enumerate(shard):
                sisa.assign[ids, 0], sisa.assign[ids, 1] = s, r
        sisa.checkpoints = []
        for s in range(sisa.shards):
            states: list[State] = []
            for r in range(sisa.slices):
                pre = f"{s}.{r}."
                model = {k[len(pre) + 6 :]: v for k, v in t.items() if k.startswith(pre + "model.")}
                state: dict[int, dict[str, torch.Tensor]] = {}
                for k, v in t.items():
                    if k.startswith(pre + "opt."):
                        i, name = k[len(pre) + 4 :].split(".", 1)
                        state.setdefault(int(i), {})[name] = v
                states.append(
                    {"model": model, "optimizer": {"state": state, "param_groups": meta["param_groups"][f"{s}.{r}"]}}
                )
            sisa.checkpoints.append(states)
        return sisa

    # ---- inference --------------------------------------------------------------------------------
    def constituents(self) -> list[nn.Module]:
        models = []
        for s in range(self.shards):
            m = self.recipe.build()
            m.load_state_dict(self.checkpoints[s][-1]["model"])
            models.append(m.eval())
        return models

    @torch.no_grad()
    def predict_proba(
        self, x: torch.Tensor | SizedDataset, batch_size: int = 1024, aggregation: str | None = None
    ) -> torch.Tensor:
        """[N, C] aggregated class probabilities of inputs ``x`` (a tensor or a dataset);
        ``aggregation`` overrides the ensemble's for this call."""
        how = aggregation or self.aggregation
        models = self.constituents()
        batches = (
            [b[0] for _, b in iterate_batches(x, batch_size)]
            if isinstance(x, Dataset)
            else list(torch.as_tensor(x).split(batch_size))
        )
        out = []
        for xb in batches:
            logits = torch.stack([m(xb) for m in models])  # [S, B, C]
            if how == "mean":
                out.append(logits.softmax(-1).mean(0))
            else:
                votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
                out.append(votes.mean(0))
        return torch.cat(out)

    def predict(self, x: torch.Tensor | SizedDataset) -> torch.Tensor:
        return self.predict_proba(x).argmax(-1)
