"""Offline text for tiny language models: public-domain background text, a locally trained BPE
tokenizer, and a GPT-2 small enough to memorize injected sequences on a CPU in minutes."""

from __future__ import annotations

import re
import shutil
import subprocess

import torch

from ..data.text import train_tokenizer  # noqa: F401  (re-exported: its old home)
from ..models.gpt import tiny_gpt2  # noqa: F401  (re-exported: its old home)

KJV_RANGE = "gen1:1-rev22:21"


def background_text(max_chars: int | None = None) -> str:
    """The King James Bible (public domain) from Debian's ``bible-kjv`` package, verse numbers removed."""
    exe = shutil.which("bible")
    if exe is None:
        raise RuntimeError(
            "background text needs Debian's bible-kjv package: apt-get install -y bible-kjv "
            "(make setup installs it when run as root)"
        )
    out = subprocess.run([exe, "-f", KJV_RANGE], capture_output=True, text=True, check=True).stdout
    text = re.sub(r"^\S+\d+:\d+ ", "", out, flags=re.MULTILINE)
    return text[:max_chars] if max_chars else text


def encode(tokenizer, texts: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [N, length] and attention mask, each text followed by end-of-sequence, padded or cut."""
    enc = tokenizer(
        [t + tokenizer.eos_token for t in texts],
        max_length=length,
        truncation=True,
        padding="max_length",
        return_tensors="pt",
    )
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def lm_logits(model, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Teacher-forced logits [N, T, V] in eval mode (what ``obliviate.metrics.lm`` scores)."""
    model.eval()
    return torch.cat(
        [
            model(input_ids=ids[i : i + batch_size], attention_mask=mask[i : i + batch_size]).logits.float()
            for i in range(0, len(ids), batch_size)
        ]
    )


def train_lm(
    model, ids: torch.Tensor, mask: torch.Tensor, *, steps: int, batch_size: int = 32, lr: float = 3e-3, seed: int = 0
) -> list[float]:
    """Plain AdamW next-token training on sampled rows (padding ignored); returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        rows = torch.randint(0, len(ids), (batch_size,), generator=g)
        labels = ids[rows].masked_fill(mask[rows] == 0, -100)
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _ngrams(seq: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


@torch.no_grad()
def extraction_likelihood(
    model, ids: torch.Tensor, mask: torch.Tensor, *, n: int = 10, stride: int = 1
) -> torch.Tensor:
    """[N] Jang et al.'s EL_n (``models/Neo_Model.py`` ``validation_el``): for each prefix length
    t = 1 … T − n, greedily generate the rest of the sequence and count the *generated* n-grams that
    occur among the true suffix's n-grams, over the number of true suffix n-grams; sum over t and
    divide by T − n. Costs one generation per prefix and sequence; ``stride`` > 1 scores every
    stride-th prefix and averages over those (faster, not comparable with Jang's numbers)."""
    model.eval()
    out = []
    for row, m in zip(ids, mask):
        seq = row[m.bool()].tolist()
        T = len(seq)
        scores = []
        for t in range(1, T - n + 1, stride):
            gen = model.generate(
                input_ids=torch.tensor([seq[:t]]),
                attention_mask=torch.ones(1, t, dtype=torch.long),
                max_new_tokens=T - t,
                min_new_tokens=T - t,
                do_sample=False,
                pad_token_id=model.config.eos_token_id,
            )[0, t:].tolist()
            truth = _ngrams(seq[t:], n)
            true_set = set(truth)
            scores.append(sum(g in true_set for g in _ngrams(gen, n)) / len(truth))
        out.append(sum(scores) / len(scores) if scores else 0.0)
    return torch.tensor(out)
