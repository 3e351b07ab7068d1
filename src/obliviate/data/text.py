"""Tokenised text as a dataset: one row per sequence, with the tokens that count for the loss.

``labels`` follows the Hugging Face convention: the token id where the position is scored, -100
where it is not (padding, and the prompt of a question-answer pair, reference A0: "losses are
computed on answer tokens only"). ``weights`` say how often a row is drawn in training, so a
secret repeated ten times in a corpus is one row (one sequence to forget and to score) of weight 10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch.utils.data import Dataset

from .datasets import Data
from .splits import ForgetSplit


class TextDataset(Dataset):
    """Token ids [N, T], attention mask [N, T], labels [N, T] (-100 = not scored), weights [N]."""

    def __init__(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        texts: list[str] | None = None,
    ) -> None:
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
    def from_texts(
        cls,
        tokenizer,
        texts: list[str],
        length: int,
        *,
        prompts: list[str] | None = None,
        weights: list[float] | torch.Tensor | None = None,
        truncate: bool = False,
        eos: bool = True,
    ) -> TextDataset:
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
            raise ValueError(
                f"{len(too_long)} sequence(s) are longer than the context of {length} tokens "
                f"(first: row {i}, {len(heads[i]) + len(tails[i])} tokens); shorten them, raise the "
                "length, or pass truncate=True"
            )
        n = len(texts)
        ids = torch.full((n, length), tokenizer.eos_token_id, dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.long)
        labels = torch.full((n, length), -100, dtype=torch.long)
        for i, (h, t) in enumerate(zip(heads, tails)):
            row = (h + t)[:length]
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            labels[i, len(h) : len(row)] = ids[i, len(h) : len(row)]
        full = [(p or "") + t for p, t in zip(prompts or [""] * n, texts)]
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

    def subset(self, rows: torch.Tensor) -> TextDataset:
        rows = torch.as_tensor(rows, dtype=torch.long)
        texts = None if self.texts is None else [self.texts[i] for i in rows.tolist()]
        return TextDataset(self.ids[rows], self.mask[rows], self.labels[rows], self.weights[rows], texts)

    def concat(self, other: TextDataset) -> TextDataset:
        if other.ids.shape[1] != self.ids.shape[1]:
            raise ValueError(f"cannot join rows of {self.ids.shape[1]} and {other.ids.shape[1]} tokens")
        texts = self.texts + other.texts if self.texts is not None and other.texts is not None else None
        return TextDataset(
            torch.cat([self.ids, other.ids]),
            torch.cat([self.mask, other.mask]),
            torch.cat([self.labels, other.labels]),
            torch.cat([self.weights, other.weights]),
            texts,
        )

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


@dataclass(frozen=True)
class TextData(Data):
    """A causal-LM dataset, the text counterpart of :class:`~obliviate.data.Data`.

    ``train``: the training rows; ``test``: never-trained rows of the same kind (they calibrate γ
    and are the MIA non-members, reference A1.2); ``val``: more such rows where tuning needs them.
    ``num_classes`` is the vocabulary size and ``input_shape`` ``(length,)``. Optional parts a
    scenario supplies: ``perplexity_text`` (held-out natural text for ``ppl_change``; else ``test``),
    ``forget`` (the scenario's own forget split, :meth:`forget_split`), ``probes`` (named extraction
    probes scored as ``extraction_<name>`` rows, e.g. the people's secrets) and ``qa`` (the forget
    set's paraphrased answers and perturbed answers, for TOFU's truth ratio and forget quality) and
    ``groups`` (per training row, the subject it is about, -1 for none: the relearning attack relearns
    some subjects and measures the others). Probes and QA describe ``forget``: with another split, leave them out.
    """

    tokenizer: Any = None
    perplexity_text: TextDataset | None = None
    forget: ForgetSplit | None = None
    probes: Mapping[str, TextDataset] = field(default_factory=dict)
    qa: tuple[TextDataset, tuple[TextDataset, ...]] | None = None

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            if not isinstance(getattr(self, part), TextDataset):
                raise TypeError(f"TextData.{part} must be a TextDataset, got {type(getattr(self, part)).__name__}")
        if "forget" in self.probes:
            raise ValueError("a probe may not be called 'forget' (extraction_forget is the forget set's own row)")

    def forget_split(self) -> ForgetSplit:
        """The scenario's forget set (for the people scenario: every row of the forget people, and the
        forget canaries); a user's own choice is ``ForgetSplit.from_ids(data.train, ids)``."""
        if self.forget is None:
            raise ValueError(f"{self.name!r} defines no forget set: pass ForgetSplit.from_ids(data.train, ids)")
        return self.forget

    def subset_train(self, ids: torch.Tensor) -> TextData:
        base = super().subset_train(ids)  # rows, their table rows and subjects
        return replace(base, forget=None, probes={}, qa=None)

    def with_validation(self, fraction: float = 0.5, seed: int = 0) -> TextData:
        """Move a seeded random ``fraction`` of the never-trained ``test`` rows to ``val`` (the
        training rows, hence the original, stay unchanged)."""
        if not 0 < fraction < 1:
            raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
        test = self.test
        assert isinstance(test, TextDataset)
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
        k = max(1, round(fraction * len(test)))
        if k >= len(test):
            raise ValueError(f"{len(test)} test rows are too few to split off a validation set")
        return replace(self, test=test.subset(order[k:].sort().values), val=test.subset(order[:k].sort().values))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE tokenizer trained here (0.4 s for 4k tokens on ~1 MB), as a Hugging Face
    ``PreTrainedTokenizerFast`` with ``<|endoftext|>`` as end-of-sequence and padding token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def from_texts(
    train_texts: list[str],
    test_texts: list[str],
    tokenizer,
    length: int,
    *,
    name: str = "texts",
    train_weights: list[float] | None = None,
    perplexity_texts: list[str] | None = None,
    truncate: bool = False,
) -> TextData:
    """A user's own text as :class:`TextData`: ``train_texts`` are trained on (``train_weights``: how
    often each is drawn), ``test_texts`` never are and must be of the same kind (they calibrate γ
    and serve as MIA non-members). Choose the forget rows with ``ForgetSplit.from_ids(data.train, ids)``."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer needs an end-of-sequence token (rows end with it and are padded with it)")
    train = TextDataset.from_texts(tokenizer, train_texts, length, weights=train_weights, truncate=truncate)
    test = TextDataset.from_texts(tokenizer, test_texts, length, truncate=truncate)
    ppl = (
        None if perplexity_texts is None else TextDataset.from_texts(tokenizer, perplexity_texts, length, truncate=True)
    )
    return TextData(name, train, test, len(tokenizer), (length,), tokenizer=tokenizer, perplexity_text=ppl)
