"""Task adapter for classifiers: batches are ``(x, y)``, outputs are logits [B, C]."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import SizedDataset, labels_of
from ..data.loading import iterate_batches
from ..utils import eval_mode

Batch = tuple[torch.Tensor, torch.Tensor]


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-row KL(softmax(teacher/T) || softmax(student/T)) * T^2, shape = leading dims.

    Its mean over rows is RepDistiller's ``DistillKL`` (batchmean, T^2-scaled) used by SCRUB and
    RUM (reference §0).
    """
    t = temperature
    log_s = F.log_softmax(student / t, dim=-1)
    log_t = F.log_softmax(teacher / t, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1) * t * t


class ClassificationTask:
    """Cross-entropy classification over ``num_classes`` classes."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def batches(
        self, dataset: SizedDataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, Batch]]:
        return iterate_batches(dataset, batch_size, shuffle=shuffle, generator=generator)

    def to(self, batch: Batch, device: torch.device) -> Batch:
        x, y = batch
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch[0])

    def losses(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(logits, batch[1], reduction="none")

    def logprob(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] log p(y|x): the "sequence" likelihood of NPO-style losses for a one-token answer."""
        return -self.losses(logits, batch)

    def correct(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return (logits.argmax(-1) == batch[1]).float()

    def events(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """RUM's learning-event statistics: true-class and max softmax probability, entropy, correctness."""
        p = logits.detach().float().softmax(-1)
        y = batch[1]
        return {
            "confidence": p.gather(1, y[:, None]).squeeze(1),
            "max_conf": p.max(-1).values,
            "entropy": -(p * p.clamp_min(1e-12).log()).sum(-1),
            "correct": (p.argmax(-1) == y).float(),
        }

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
        return kd_kl(student, teacher, temperature)

    def relabel(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Uniform labels over all classes (``torch.randint``: the true label is not excluded),
        as in SalUn's RL code (reference §3.4)."""
        x, y = batch
        return x, torch.randint(0, self.num_classes, y.shape, generator=generator).to(y.device)

    @torch.no_grad()
    def predict(
        self, model: nn.Module, dataset: SizedDataset, batch_size: int = 1024, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and labels of a whole dataset, in eval mode, on CPU; the model's mode is restored."""
        device = device or next(model.parameters()).device
        outs, ys = [], []
        with eval_mode(model):
            for _, batch in self.batches(dataset, batch_size):
                x, y = self.to(batch, device)
                outs.append(model(x).float().cpu())
                ys.append(y.cpu())
        return torch.cat(outs), torch.cat(ys)

    def check(self, model: nn.Module, dataset: SizedDataset) -> None:
        """Compare the dataset's input shape and label range with the model's outputs."""
        width = _output_width(model, dataset)
        labels = labels_of(dataset)
        if int(labels.min()) < 0 or int(labels.max()) >= width:
            raise ValueError(
                f"dataset labels span {int(labels.min())}..{int(labels.max())} but the model outputs {width} classes"
            )
        if width != self.num_classes:
            raise ValueError(f"model outputs {width} classes but the task has {self.num_classes}")


def _output_width(model: nn.Module, dataset: SizedDataset) -> int:
    """Forward two examples; a shape mismatch becomes a ValueError naming the input shape."""
    if len(dataset) == 0:
        raise ValueError("dataset is empty")
    _, (x, _) = next(iter(iterate_batches(dataset, 2)))
    device = next(model.parameters()).device
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x.to(device))
    except RuntimeError as e:
        raise ValueError(f"the model cannot take inputs of shape {tuple(x.shape[1:])} from the dataset: {e}") from None
    if out.dim() != 2:
        raise ValueError(f"a classifier must output [batch, classes]; got shape {tuple(out.shape)}")
    return int(out.shape[1])


def task_for(model: nn.Module, dataset: SizedDataset) -> ClassificationTask:
    """A classification task sized by the model's output width, checked against the dataset."""
    task = ClassificationTask(_output_width(model, dataset))
    task.check(model, dataset)
    return task
