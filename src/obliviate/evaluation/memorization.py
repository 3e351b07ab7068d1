"""How memorized is each training example, and how entangled are forget and retain sets (RUM §2).

Every score is oriented so that **higher = more memorized** (``ORIENTATION`` says what was flipped):

* :func:`subsample_memorization` — Feldman's estimator, the ground truth the proxies approximate:
  K models on random ``ratio`` subsets, mem_i = P[correct | i in] − P[correct | i out]. The K models
  train as vectorised ensembles, so K in the hundreds is affordable for small models.
* :func:`learning_event_proxy` — from the original's training log (free: logged while training;
  defined in ``train/memorization.py`` so RUM can use it without importing ``evaluation/``):
  ``confidence``, ``max_conf``, ``entropy``, ``bi_acc`` averaged over epochs.
* :func:`holdout_kl` — fine-tune a copy on held-out data; symmetric KL of each training example's
  prediction before and after (Carlini-style holdout retraining).
* :func:`loss_curvature` — input-space curvature ‖∇ₓℓ(x + h·z) − ∇ₓℓ(x)‖, z = sign(∇ₓℓ) / √d.
* :func:`entanglement` — RUM's entanglement score of D_r and D_f in an embedding space.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import SizedDataset, labels_of
from ..data.loading import iterate_batches
from ..data.splits import ForgetSplit
from ..io import load_state, save_state
from ..metrics.divergence import symmetric_kl
from ..objectives import ClassificationTask
from ..train.ensemble import train_ensemble
from ..train.loop import run_epochs
from ..train.memorization import learning_event_proxy
from ..train.recipe import Recipe
from ..utils import resolve_device, seeded

__all__ = [
    "ORIENTATION",
    "MemorizationEstimate",
    "embeddings",
    "entanglement",
    "holdout_kl",
    "learning_event_proxy",
    "loss_curvature",
    "spearman",
    "subsample_memorization",
]

#: what each score measures and which way it was turned so that higher = more memorized
ORIENTATION = {
    "subsample": "Feldman's in-minus-out correctness (as is)",
    "confidence": "1 − mean true-class probability over epochs (low confidence = memorized)",
    "max_conf": "1 − mean max probability over epochs",
    "entropy": "mean predictive entropy over epochs (RUM's negative entropy, flipped)",
    "bi_acc": "1 − fraction of epochs classified correctly",
    "holdout_kl": "symmetric KL between the original and a holdout-fine-tuned copy (as is)",
    "curvature": "input-space loss curvature (as is)",
}


@dataclass
class MemorizationEstimate:
    """Feldman's subsampled memorization per training example, with the counts behind it."""

    scores: torch.Tensor  # [N] in [-1, 1]
    in_acc: torch.Tensor  # [N] mean correctness over models that trained on the example
    out_acc: torch.Tensor  # [N] ... over models that did not
    n_in: torch.Tensor  # [N] how many models trained on it
    k: int
    ratio: float
    seconds: float

    def save(self, path: str | Path) -> None:
        save_state(
            {"scores": self.scores, "in_acc": self.in_acc, "out_acc": self.out_acc, "n_in": self.n_in},
            Path(path),
            {"k": self.k, "ratio": self.ratio, "seconds": self.seconds},
        )

    @classmethod
    def load(cls, path: str | Path) -> MemorizationEstimate:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        t = load_state(Path(path))
        return cls(
            t["scores"],
            t["in_acc"],
            t["out_acc"],
            t["n_in"],
            int(meta["k"]),
            float(meta["ratio"]),
            float(meta["seconds"]),
        )


def subsample_memorization(
    recipe: Recipe,
    dataset: SizedDataset,
    *,
    k: int = 200,
    ratio: float = 0.7,
    seed: int = 0,
    chunk_size: int | None = 50,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> MemorizationEstimate:
    """Feldman & Zhang's subsampling estimator with ``k`` models on random ``ratio`` subsets.

    The RUM repository uses K = 400 at 0.7; each example is then "out" for ~120 models, so the
    estimate's standard error is ~0.05. Members train as vectorised ensembles of ``chunk_size``.
    """
    n = len(dataset)
    if k < 2:
        raise ValueError(f"k must be >= 2 models, got {k}")
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    m = round(ratio * n)
    g = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(n, generator=g)[:m].sort().values for _ in range(k)])
    member = torch.zeros(k, n, dtype=torch.bool)
    member.scatter_(1, subsets, True)
    start = time.perf_counter()
    ens = train_ensemble(
        recipe,
        dataset,
        [seed * 100_003 + i for i in range(k)],
        subsets=subsets,
        chunk_size=chunk_size,
        precision=precision,
        device=device,
        progress=progress,
    )
    correct = (ens.predict(dataset).argmax(-1) == labels_of(dataset)).float()  # [K, N]
    n_in, n_out = member.sum(0), (~member).sum(0)
    if (n_in == 0).any() or (n_out == 0).any():
        raise ValueError("some example was always in (or always out of) the subsets: raise k")
    in_acc = (correct * member).sum(0) / n_in
    out_acc = (correct * ~member).sum(0) / n_out
    return MemorizationEstimate(in_acc - out_acc, in_acc, out_acc, n_in, k, ratio, time.perf_counter() - start)


@torch.no_grad()
def _probs(model: nn.Module, dataset: SizedDataset, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat(
        [model(x.to(device)).float().softmax(-1).cpu() for _, (x, _) in iterate_batches(dataset, batch_size)]
    )


def holdout_kl(
    model: nn.Module,
    dataset: SizedDataset,
    holdout: SizedDataset,
    *,
    lr: float = 0.1,
    epochs: int = 30,
    patience: int = 4,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """RUM's holdout-retraining proxy: fine-tune a copy on ``holdout`` (SGD, early stopping on the
    holdout loss after ``patience`` epochs without improvement), then the symmetric KL between the
    original's and the copy's predictions on every example of ``dataset``."""
    dev = resolve_device(device)
    model = model.to(dev)
    before = _probs(model, dataset, dev)
    tuned = copy.deepcopy(model).to(dev)
    opt = torch.optim.SGD(tuned.parameters(), lr=lr, momentum=0.9)
    task = ClassificationTask(before.shape[1])
    best, stale = float("inf"), 0
    with seeded(seed, dev) as gen:
        for _ in range(epochs):  # one epoch at a time: early stopping decides between them
            (loss,) = run_epochs(
                tuned,
                task,
                holdout,
                opt,
                epochs=1,
                batch_size=batch_size,
                generator=gen,
                progress=False,
                desc="holdout fine-tune",
            )
            if loss < best - 1e-4:
                best, stale = loss, 0
            else:
                stale += 1
                if stale >= patience:
                    break
    after = _probs(tuned, dataset, dev)
    return symmetric_kl(after.clamp_min(1e-12).log(), before.clamp_min(1e-12).log())


def loss_curvature(
    model: nn.Module,
    dataset: SizedDataset,
    *,
    h: float = 0.01,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """CURE-style input-space curvature per example: ‖∇ₓℓ(x + h·z) − ∇ₓℓ(x)‖ with z = sign(∇ₓℓ(x))
    normalised to unit length. Computed on the final model (RUM also averages over training epochs)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    out = []

    def grad_at(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
        return g

    for _, (x, y) in iterate_batches(dataset, batch_size):
        x, y = x.to(dev).float(), y.to(dev)
        g = grad_at(x, y)
        z = torch.sign(g)
        z = z / z.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        out.append((grad_at(x + h * z, y) - g).flatten(1).norm(dim=1).detach().cpu())
    return torch.cat(out)


def embeddings(
    model: nn.Module,
    dataset: SizedDataset,
    layer: str | None = None,
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Inputs of module ``layer`` (default: the last ``nn.Linear``, i.e. the penultimate features)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    modules = dict(model.named_modules())
    if layer is None:
        linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear head: name the embedding layer with layer=")
        layer = linears[-1]
    if layer not in modules:
        raise ValueError(f"no module {layer!r} in the model; modules: {[n for n in modules if n][:20]}")
    feats: list[torch.Tensor] = []
    hook = modules[layer].register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().flatten(1).cpu()))
    try:
        with torch.no_grad():
            for _, (x, _) in iterate_batches(dataset, batch_size):
                model(x.to(dev))
    finally:
        hook.remove()
    return torch.cat(feats)


def entanglement(
    model: nn.Module,
    dataset: SizedDataset,
    split: ForgetSplit,
    *,
    layer: str | None = None,
    device: str | torch.device | None = None,
) -> float:
    """RUM's entanglement score of D_r and D_f: within-set variance over between-set variance of
    the embeddings (higher = more entangled = harder to unlearn). ``layer``: whose input is the
    embedding (default: the classifier head's, as RUM's ResNet avgpool output)."""
    phi = embeddings(model, dataset, layer, device=device).double()
    mask = split.forget_mask()
    f, r = phi[mask], phi[~mask]
    mu_f, mu_r = f.mean(0), r.mean(0)
    mu = (mu_f + mu_r) / 2
    within = (r - mu_r).pow(2).sum(1).mean() + (f - mu_f).pow(2).sum(1).mean()
    between = 0.5 * ((mu_r - mu).pow(2).sum() + (mu_f - mu).pow(2).sum())
    return float(within / between.clamp_min(1e-300))


def spearman(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Spearman rank correlation (how well a proxy orders examples like the estimate)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)
