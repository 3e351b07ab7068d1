"""A causal LM's per-sequence scores on a split (what ``ob.evaluate`` judges language models on),
from teacher-forced forward passes in batches (reference A1.2, A1.4, A3.4, A4).

Greedy extraction needs no generation loop: greedy decoding from a true prefix reproduces the
true continuation exactly when every teacher-forced argmax is right (each step then feeds the true
token back), so one forward pass decides it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..data.splits import ForgetSplit
from ..data.text import TextData, TextDataset
from ..metrics.catalogue import SequenceOutputs
from ..metrics.lm import (
    Calibration,
    SequenceScores,
    calibrate_threshold,
    extraction_strength,
    min_k_percent,
    min_k_plus_plus,
    sampled_logprob,
    truth_ratio,
)
from ..objectives.causal_lm import CausalLMTask, token_nll

GAMMA_STATS = ("mean", "p95", "max")


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def sequence_scores(
    model: nn.Module, data: TextDataset, batch_size: int = 64, device: torch.device | None = None
) -> SequenceScores:
    """Score every row of ``data`` in eval mode; the model's mode is restored."""
    device = device or next(model.parameters()).device
    task = CausalLMTask()
    out: dict[str, list] = {k: [] for k in SequenceScores.__dataclass_fields__}
    with _eval(model):
        for _, batch in task.batches(data, batch_size):
            ids, mask, labels = task.to(batch, device)
            logits = task.logits(model, (ids, mask, labels)).float()
            scored = (labels != -100).long()
            hits = task.correct(logits, (ids, mask, labels))
            out["ma"].append(hits)
            out["extracted"].append(hits >= 1.0 - 1e-6)
            # metrics.lm scores positions whose *target* is scored: pass a mask whose position t is 1
            # when token t is scored or is the token right before a scored one
            m = scored.clone()
            m[:, :-1] |= scored[:, 1:]
            out["nll"].append(task.losses(logits, (ids, mask, labels)))
            out["es"].append(extraction_strength(logits, ids, m))
            out["min_k20"].append(min_k_percent(logits, ids, m, 0.2))
            out["min_k40"].append(min_k_percent(logits, ids, m, 0.4))
            out["min_kpp"].append(min_k_plus_plus(logits, ids, m, 0.2))
            out["sample_logp"].append(sampled_logprob(logits, ids, m))
    return SequenceScores(**{k: torch.cat(v).float().cpu().numpy() for k, v in out.items()})


@torch.no_grad()
def perplexity(model: nn.Module, data: TextDataset, batch_size: int = 64, device: torch.device | None = None) -> float:
    """exp(mean NLL over every scored token of ``data``)."""
    device = device or next(model.parameters()).device
    task = CausalLMTask()
    total, count = 0.0, 0
    with _eval(model):
        for _, batch in task.batches(data, batch_size):
            batch = task.to(batch, device)
            nll, valid = token_nll(task.logits(model, batch), batch[2])
            total, count = total + float(nll.sum()), count + int(valid.sum())
    return math.exp(total / max(count, 1))


def _perplexity_text(data: TextData) -> TextDataset:
    ppl = data.perplexity_text if data.perplexity_text is not None else data.test
    assert isinstance(ppl, TextDataset)
    return ppl


def calibrate(original: nn.Module, data: TextData, device: torch.device | None = None) -> Calibration:
    """γ (mean, p95, max of the original's MA on ``data.test``) and the original's perplexity."""
    assert isinstance(data.test, TextDataset)
    held = sequence_scores(original, data.test, device=device).ma
    return Calibration(
        {s: calibrate_threshold(held, s) for s in GAMMA_STATS},
        perplexity(original, _perplexity_text(data), device=device),
    )


def sequence_outputs(
    model: nn.Module,
    data: TextData,
    split: ForgetSplit,
    *,
    calibration: Calibration | None = None,
    device: torch.device | None = None,
    views: tuple[str, ...] | None = None,
) -> SequenceOutputs:
    """Score ``model`` on the forget rows, the retained rows, ``data.test``, the dataset's probes and
    QA sets and its held-out text: everything the causal-LM rows of the catalogue read. ``views``
    (e.g. ``("forget", "test")``): only those of the forget/retain/test rows, and no probes, QA or
    perplexity (an attacked model's rows and a relearning curve's points read nothing else)."""
    sets = {"forget": split.forget_set(data.train), "retain": split.retain_set(data.train), "test": data.test}
    if views is not None:
        chosen = {k: sets[k] for k in views}
        scores = {k: sequence_scores(model, v, device=device) for k, v in chosen.items()}  # type: ignore[arg-type]
        texts = {k: getattr(v, "texts", None) for k, v in chosen.items()}
        return SequenceOutputs(scores, texts, {}, None, math.nan, calibration)
    scores = {k: sequence_scores(model, v, device=device) for k, v in sets.items()}  # type: ignore[arg-type]
    probes = {k: sequence_scores(model, v, device=device) for k, v in data.probes.items()}
    truth: np.ndarray | None = None
    if data.qa is not None:
        para, perturbed = data.qa
        truth = truth_ratio(
            sequence_scores(model, para, device=device), [sequence_scores(model, p, device=device) for p in perturbed]
        )
    texts = {k: getattr(v, "texts", None) for k, v in sets.items()}
    return SequenceOutputs(
        scores, texts, probes, truth, perplexity(model, _perplexity_text(data), device=device), calibration
    )
