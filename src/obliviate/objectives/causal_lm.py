"""Task adapter for causal language models: a batch is ``(ids, mask, labels)``, outputs are
next-token logits [B, T, V]. Every per-example quantity is per *sequence*: the loss is its mean
token NLL over scored positions, "correct" is its exact-memorization score MA (reference A1.1), so
NegGrad+, SCRUB, the retain-accuracy guard and the per-sequence stopping rule work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.datasets import SizedDataset
from ..data.text import TextDataset
from ..utils import eval_mode

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Position t's logits predict token t + 1: ([B, T−1, V] logits, [B, T−1] targets, valid mask)."""
    target = labels[:, 1:]
    valid = target != -100
    return logits[:, :-1], target.clamp_min(0), valid


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T−1] per-token NLL (0 where not scored) and the valid mask."""
    pred, target, valid = shifted(logits, labels)
    nll = F.cross_entropy(pred.float().reshape(-1, pred.shape[-1]), target.reshape(-1), reduction="none")
    return nll.view_as(target) * valid, valid


class CausalLMTask:
    """Next-token prediction; ``tokenizer`` is needed only by methods that write text (``idk``)."""

    def __init__(self, tokenizer=None) -> None:
        self.tokenizer = tokenizer

    def batches(
        self, dataset: SizedDataset, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, Batch]]:
        ds = _text(dataset)
        order = torch.randperm(len(ds), generator=generator) if shuffle else torch.arange(len(ds))
        for start in range(0, len(ds), batch_size):
            idx = order[start : start + batch_size]
            yield idx, ds.batch(idx)

    def to(self, batch: Batch, device: torch.device) -> Batch:
        return tuple(t.to(device, non_blocking=True) for t in batch)  # type: ignore[return-value]

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(input_ids=batch[0], attention_mask=batch[1]).logits

    def losses(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] mean NLL per scored token (avgNLL): GA's and Jang's loss."""
        nll, valid = token_nll(logits, batch[2])
        return nll.sum(1) / valid.sum(1).clamp_min(1)

    def logprob(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] summed log-likelihood of the scored tokens: NPO's and DPO's sequence log π(y|x)."""
        nll, _ = token_nll(logits, batch[2])
        return -nll.sum(1)

    def correct(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """[B] exact memorization MA: share of scored tokens the greedy prediction gets right."""
        pred, target, valid = shifted(logits, batch[2])
        hits = (pred.argmax(-1) == target) & valid
        return hits.sum(1) / valid.sum(1).clamp_min(1)

    def events(self, logits: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            loss = self.losses(logits.detach(), batch)
            return {"confidence": torch.exp(-loss), "correct": self.correct(logits.detach(), batch)}

    def kd_loss(self, student: torch.Tensor, teacher: torch.Tensor, batch: Batch, temperature: float) -> torch.Tensor:
        """[B] token-mean KL(teacher || student) over scored positions, T²-scaled."""
        s, _, valid = shifted(student, batch[2])
        t = teacher[:, :-1]
        kl = F.kl_div(
            F.log_softmax(s.float() / temperature, -1),
            F.log_softmax(t.float() / temperature, -1),
            log_target=True,
            reduction="none",
        ).sum(-1)
        return (kl * valid).sum(1) / valid.sum(1).clamp_min(1) * temperature**2

    def relabel(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Random target tokens at the scored positions (random-label unlearning on text)."""
        ids, mask, labels = batch
        vocab = int(ids.max()) + 1 if self.tokenizer is None else len(self.tokenizer)
        rand = torch.randint(0, vocab, labels.shape, generator=generator).to(labels.device)
        return ids, mask, torch.where(labels != -100, rand, labels)

    @torch.no_grad()
    def predict(
        self, model: nn.Module, dataset: SizedDataset, batch_size: int = 64, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, T, V] and labels [N, T] (memory N·T·V floats: score in batches with
        :func:`obliviate.lm.evaluate.sequence_scores` instead for anything large)."""
        device = device or next(model.parameters()).device
        outs, labels = [], []
        with eval_mode(model):
            for _, batch in self.batches(dataset, batch_size):
                batch = self.to(batch, device)
                outs.append(self.logits(model, batch).float().cpu())
                labels.append(batch[2].cpu())
        return torch.cat(outs), torch.cat(labels)

    def check(self, model: nn.Module, dataset: SizedDataset) -> None:
        """Token ids must be in the model's vocabulary and rows must fit its context."""
        ds = _text(dataset)
        if len(ds) == 0:
            raise ValueError("dataset is empty")
        # a transformers model's method; nn.Module types unknown attributes as Tensor | Module
        vocab = model.get_input_embeddings().num_embeddings  # type: ignore[operator]
        if int(ds.ids.max()) >= vocab:
            raise ValueError(f"token id {int(ds.ids.max())} is outside the model's vocabulary of {vocab}")
        context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        if context is not None and ds.length > context:
            raise ValueError(f"rows of {ds.length} tokens are longer than the model's context of {context}")


def _text(dataset: SizedDataset) -> TextDataset:
    if isinstance(dataset, TextDataset):
        return dataset
    if isinstance(dataset, torch.utils.data.Subset) and isinstance(dataset.dataset, TextDataset):
        return dataset.dataset.subset(torch.as_tensor(dataset.indices))
    raise TypeError(f"a causal-LM task needs an obliviate.lm.TextDataset, got {type(dataset).__name__}")
