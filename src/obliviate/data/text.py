"""Tokenised text as a dataset: one row per sequence, with the tokens that count for the loss.

``labels`` follows the Hugging Face convention: the token id where the position is scored, -100
where it is not (padding, and the prompt of a question-answer pair, reference A0: "losses are
computed on answer tokens only"). ``weights`` say how often a row is drawn in training, so a
secret repeated ten times in a corpus is one row (one sequence to forget and to score) of weight 10.
"""

from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset


class TextDataset(Dataset):
    """Token ids [N, T], attention mask [N, T], labels [N, T] (-100 = not scored), weights [N]."""

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None,
                 weights: torch.Tensor | None = None, texts: list[str] | None = None) -> None:
        if ids.dim() != 2 or mask.shape != ids.shape:
            raise ValueError(f"ids and mask must both be [N, T]; got {tuple(ids.shape)} and {tuple(mask.shape)}")
        self.ids, self.mask = ids.long(), mask.long()
        self.labels = (ids.masked_fill(mask == 0, -100) if labels is None else labels).long()
        if self.labels.shape != ids.shape:
            raise ValueError(f"labels must be [N, T] like ids; got {tuple(self.labels.shape)}")
        self.weights = torch.ones(len(ids)) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if self.weights.shape != (len(ids),) or bool((self.weights < 0).any()):
            raise ValueError("weights must be [N] and non-negative")
        if texts is not None and len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts for {len(ids)} rows")
        self.texts = texts

    @classmethod
    def from_texts(cls, tokenizer, texts: list[str], length: int, *, prompts: list[str] | None = None,
                   weights: list[float] | torch.Tensor | None = None, truncate: bool = False, eos: bool = True
                   ) -> "TextDataset":
        """Tokenise ``texts`` (each followed by end-of-sequence unless ``eos=False``, e.g. for a
        secret whose greedy completion is what counts) to rows of ``length`` tokens.

        With ``prompts``, row i is ``prompts[i] + texts[i]`` and only the ``texts[i]`` tokens are
        scored. A row longer than ``length`` is an error unless ``truncate=True``: a silently cut
        sequence would be "forgotten" without its tail ever being looked at.
        """
        if not texts:
            raise ValueError("no texts to tokenise")
        if prompts is not None and len(prompts) != len(texts):
            raise ValueError(f"{len(prompts)} prompts for {len(texts)} texts")
        heads = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts] if prompts else [[]] * len(texts)
        end = [tokenizer.eos_token_id] if eos else []
        tails = [tokenizer(t, add_special_tokens=False)["input_ids"] + end for t in texts]
        too_long = [i for i, (h, t) in enumerate(zip(heads, tails)) if len(h) + len(t) > length]
        if too_long and not truncate:
            i = too_long[0]
            raise ValueError(f"{len(too_long)} sequence(s) are longer than the context of {length} tokens "
                             f"(first: row {i}, {len(heads[i]) + len(tails[i])} tokens); shorten them, raise the "
                             "length, or pass truncate=True")
        n = len(texts)
        ids = torch.full((n, length), tokenizer.eos_token_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        labels = torch.full((n, length), -100, dtype=torch.long)
        for i, (h, t) in enumerate(zip(heads, tails)):
            row = (h + t)[:length]
            ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
            labels[i, len(h):len(row)] = ids[i, len(h):len(row)]
        full = [(p or "") + t for p, t in zip(prompts or [None] * n, texts)]
        return cls(ids, mask, labels, None if weights is None else torch.as_tensor(weights, dtype=torch.float32), full)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.ids[i], self.mask[i], self.labels[i]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, mask, labels)`` of ``rows`` without the padding columns every one of them has:
        sentence-sized rows in a 64-token layout then cost what their real length costs (about half,
        for the people rows). Padding sits at the end and is never scored, so outputs are unchanged."""
        mask = self.mask[rows]
        used = int(mask.any(0).nonzero().max()) + 1 if bool(mask.any()) else 1
        return self.ids[rows][:, :used], mask[:, :used], self.labels[rows][:, :used]

    def subset(self, rows: torch.Tensor) -> "TextDataset":
        rows = torch.as_tensor(rows, dtype=torch.long)
        texts = None if self.texts is None else [self.texts[i] for i in rows.tolist()]
        return TextDataset(self.ids[rows], self.mask[rows], self.labels[rows], self.weights[rows], texts)

    def concat(self, other: "TextDataset") -> "TextDataset":
        if other.ids.shape[1] != self.ids.shape[1]:
            raise ValueError(f"cannot join rows of {self.ids.shape[1]} and {other.ids.shape[1]} tokens")
        texts = self.texts + other.texts if self.texts is not None and other.texts is not None else None
        return TextDataset(torch.cat([self.ids, other.ids]), torch.cat([self.mask, other.mask]),
                           torch.cat([self.labels, other.labels]), torch.cat([self.weights, other.weights]), texts)

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])

    def fingerprint(self) -> str:
        """Content hash of ids, scored positions and weights (keys caches and manifests)."""
        h = hashlib.sha256(str(tuple(self.ids.shape)).encode())
        for t in (self.ids, self.labels):
            h.update(t.numpy().astype("<i8").tobytes())
        h.update(self.weights.numpy().astype("<f4").tobytes())
        return h.hexdigest()[:16]
