"""Per-sequence memorization and membership scores for causal LMs, as pure functions of one
teacher-forced forward pass (reference A1.1-A1.2, A3.4).

Shapes: ``logits`` [B, T, V] are the model's outputs on ``tokens`` [B, T]; position t's logits
predict token t + 1. ``mask`` [B, T] (1 = real token, 0 = padding) is optional.

Greedy generation from a true prefix reproduces the true continuation exactly when every
teacher-forced argmax from there on is right (each step then feeds the true token back), so exact
memorization and extraction strength need no generation loop at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SequenceScores:
    """Per-row scores of one model on one text dataset (scored tokens only), one array each [N]."""

    ma: np.ndarray  # exact memorization (share of greedy-correct tokens)
    nll: np.ndarray  # mean token NLL (LOSS attack)
    extracted: np.ndarray  # every scored token greedy-correct (greedy completion is verbatim)
    es: np.ndarray  # extraction strength
    min_k20: np.ndarray
    min_k40: np.ndarray
    min_kpp: np.ndarray
    #: log P(a top-k sample at temperature T reproduces the scored tokens) (see sampled_logprob)
    sample_logp: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ma)


@dataclass(frozen=True)
class Calibration:
    """What per-sequence verdicts are relative to, fixed from the *original* model once: γ per
    statistic of its MA on never-trained rows (reference A1.2: "γ from the original", so every
    method and the oracle face the same threshold) and its perplexity on held-out text."""

    gamma: dict[str, float]
    perplexity: float | None = None


def _targets(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token logits [B, T−1, V], their targets [B, T−1] and a validity mask [B, T−1]."""
    if logits.dim() != 3 or tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be [B, T, V] over tokens [B, T]; got {tuple(logits.shape)} and {tuple(tokens.shape)}"
        )
    valid = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask.bool()
    return logits[:, :-1], tokens[:, 1:], valid[:, 1:] & valid[:, :-1]


def token_correct(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T−1] 1 where the greedy prediction equals the next true token (invalid positions 0)."""
    pred, target, valid = _targets(logits, tokens, mask)
    return (pred.argmax(-1) == target) & valid


def memorization_accuracy(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None, prefix_len: int = 0
) -> torch.Tensor:
    """[B] exact memorization g(x) = MA(x) (Tirumala et al.; Jang et al.): the share of positions whose
    greedy next-token prediction is right. ``prefix_len`` scores only tokens after the first
    ``prefix_len`` (suffix accuracy given a fixed prefix)."""
    correct = token_correct(logits, tokens, mask)
    _, _, valid = _targets(logits, tokens, mask)
    if prefix_len:
        keep = torch.arange(correct.shape[1], device=correct.device) + 1 >= prefix_len
        valid = valid & keep
    return (correct & valid).sum(1) / valid.sum(1).clamp_min(1)


def extraction_strength(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B] Carlini et al.'s extraction strength 1 − k/S over the S *scored* tokens (the answer when a
    prompt is masked out, else every token after the first), with k the shortest part of that span
    that must be given before greedy decoding reproduces the rest exactly: 1 when every scored token
    is right, 1 − 1/S when only the first is missed, 0 when the last is missed. This is
    OpenUnlearning's ``extraction_strength`` (k counted within the labels), except that there a miss
    of the very last token leaves k = S − 1 (its loop never breaks), giving 1/S instead of 0."""
    correct = token_correct(logits, tokens, mask)
    _, _, valid = _targets(logits, tokens, mask)
    wrong = valid & ~correct  # [B, T−1]; position j predicts token j + 1
    rank = valid.long().cumsum(1)  # 1-based position of each scored token within the scored span
    k = torch.where(wrong, rank, torch.zeros_like(rank)).max(1).values  # scored tokens up to the last miss
    return 1 - k.float() / valid.sum(1).clamp_min(1).float()


#: the sampling attack's decoder: temperature 1 and top-k 40 (the defaults of Carlini et al. 2021's
#: extraction attack and of Hugging Face's generate), and how many samples the adversary draws
SAMPLE_TEMPERATURE, SAMPLE_TOP_K, SAMPLE_N = 1.0, 40, 32


def sampled_logprob(
    logits: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    temperature: float = SAMPLE_TEMPERATURE,
    top_k: int = SAMPLE_TOP_K,
) -> torch.Tensor:
    """[B] log-probability that ancestral sampling (temperature, top-k) from the prompt reproduces the
    scored tokens verbatim: Σ_t log p_topk(x_t | x_<t), −inf if some x_t falls outside the top k.

    Exact, from one teacher-forced pass, because a sample matches only by following the true path,
    whose step probabilities are these. So the sampling attack needs no generation loop, and the
    chance that one of n samples extracts a row is 1 − (1 − exp(this))^n (:func:`sampled_extraction`)."""
    if temperature <= 0 or top_k < 1:
        raise ValueError(f"temperature must be > 0 and top_k >= 1, got {temperature} and {top_k}")
    pred, target, valid = _targets(logits, tokens, mask)
    scaled = pred.float() / temperature
    kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
    kept = scaled.masked_fill(scaled < kth, float("-inf"))
    logp = torch.log_softmax(kept, -1).gather(-1, target[..., None]).squeeze(-1)
    return torch.where(valid, logp, torch.zeros_like(logp)).sum(1)


def sampled_extraction(sample_logp: np.ndarray, n: int = SAMPLE_N) -> np.ndarray:
    """[N] probability that at least one of ``n`` independent samples reproduces each row."""
    p = np.exp(np.asarray(sample_logp, dtype=np.float64))
    return -np.expm1(n * np.log1p(-np.minimum(p, 1 - 1e-16)))


def token_logprobs(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T−1] log p(x_t | x_<t) and the validity mask."""
    pred, target, valid = _targets(logits, tokens, mask)
    logp = torch.log_softmax(pred.float(), -1).gather(-1, target[..., None]).squeeze(-1)
    return logp, valid


def sequence_nll(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B] mean negative log-likelihood per token: the LOSS attack's score (higher = more likely unseen)."""
    logp, valid = token_logprobs(logits, tokens, mask)
    return -(logp * valid).sum(1) / valid.sum(1).clamp_min(1)


def _lowest_k_mean(values: torch.Tensor, valid: torch.Tensor, k: float) -> torch.Tensor:
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    filled = torch.where(valid, values, torch.full_like(values, math.inf))
    ordered = filled.sort(1).values
    n = (valid.sum(1).float() * k).floor().clamp_min(1).long()  # int(k·n), at least 1 (Shi et al.)
    take = torch.arange(values.shape[1], device=values.device)[None] < n[:, None]
    return (torch.where(take, ordered, torch.zeros_like(ordered))).sum(1) / n


def min_k_percent(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None, k: float = 0.2
) -> torch.Tensor:
    """[B] Min-K% Prob (Shi et al. 2023): −mean of the int(k·n) (at least 1) lowest token log-probs,
    as in Shi et al.'s and OpenUnlearning's code (higher = unseen)."""
    logp, valid = token_logprobs(logits, tokens, mask)
    return -_lowest_k_mean(logp, valid, k)


def min_k_plus_plus(
    logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None, k: float = 0.2
) -> torch.Tensor:
    """[B] Min-K%++ (Zhang et al. 2024): token log-probs standardised by the mean and std of log p
    under the model's own next-token distribution, then −mean of the lowest k share."""
    pred, target, valid = _targets(logits, tokens, mask)
    logq = torch.log_softmax(pred.float(), -1)
    q = logq.exp()
    mu = (q * logq).sum(-1)
    sigma = ((q * logq.pow(2)).sum(-1) - mu.pow(2)).clamp_min(1e-12).sqrt()
    z = (logq.gather(-1, target[..., None]).squeeze(-1) - mu) / sigma
    return -_lowest_k_mean(z, valid, k)


def calibrate_threshold(unseen_scores: torch.Tensor | np.ndarray, stat: str | float = "mean") -> float:
    """γ from per-sequence scores of unseen text of the same distribution: "mean" (Barbulescu &
    Triantafillou; Jang's aggregate threshold), "max", "pNN" (a percentile, e.g. "p95") or a number
    in (0, 1) taken as a quantile."""
    s = np.asarray(unseen_scores, dtype=float)
    if s.size == 0:
        raise ValueError("no unseen sequences to calibrate on")
    if stat == "mean":
        return float(s.mean())
    if stat == "max":
        return float(s.max())
    if isinstance(stat, str) and stat.startswith("p"):
        return float(np.percentile(s, float(stat[1:])))
    if isinstance(stat, (int, float)) and 0 < stat < 1:
        return float(np.quantile(s, stat))
    raise ValueError(f"stat must be 'mean', 'max', 'pNN' or a quantile in (0, 1); got {stat!r}")


def forgetting_counts(
    forget_scores: torch.Tensor | np.ndarray,
    unseen_scores: torch.Tensor | np.ndarray,
    gamma: float,
    low_quantile: float = 0.05,
) -> dict[str, float]:
    """The per-sequence verdict: ``above`` = c(D_f), forget sequences still more memorized than γ;
    ``below_low`` = those under the unseen text's ``low_quantile`` (over-unlearned: as suspicious
    to an attacker as the upper tail); both also as fractions, with the mean and max score."""
    f = np.asarray(forget_scores, dtype=float)
    low = float(np.quantile(np.asarray(unseen_scores, dtype=float), low_quantile))
    above, below = int((f > gamma).sum()), int((f < low).sum())
    return {
        "above": above,
        "above_fraction": above / len(f),
        "below_low": below,
        "below_low_fraction": below / len(f),
        "mean": float(f.mean()),
        "max": float(f.max()),
        "gamma": gamma,
        "low": low,
    }


def zlib_score(nll: torch.Tensor | np.ndarray, texts: list[str]) -> np.ndarray:
    """Carlini et al.'s zlib attack: mean token NLL over the zlib-compressed length of the text, so
    intrinsically predictable text (repetitions, boilerplate) is not mistaken for memorized text."""
    import zlib

    nll = np.asarray(nll, dtype=float)
    if len(nll) != len(texts):
        raise ValueError(f"{len(nll)} scores for {len(texts)} texts")
    return nll / np.array([len(zlib.compress(t.encode())) for t in texts], dtype=float)


def lm_mia(forget_scores: torch.Tensor | np.ndarray, holdout_scores: torch.Tensor | np.ndarray) -> dict[str, float]:
    """AUC and TPR at low FPR of telling D_forget from D_holdout by a per-sequence score in the
    OpenUnlearning convention (higher = more likely a non-member: NLL, zlib, Min-K%, Min-K%++)."""
    from .mia import threshold_attack

    return threshold_attack(-np.asarray(forget_scores, dtype=float), -np.asarray(holdout_scores, dtype=float))


def privleak(auc_unlearned: float, auc_retrained: float) -> float:
    """MUSE's PrivLeak from member-detection AUCs (``lm_mia``'s, higher = the forget set is more
    recognisable), turned into MUSE's orientation (1 − AUC) so published numbers compare:
    ((1 − a_u) − (1 − a_r)) / (1 − a_r). 0 is ideal; negative = under-unlearning (the forget set is still
    member-like), positive = over-unlearning (it now looks less familiar than unseen text, which leaks too)."""
    if not 0 <= auc_unlearned <= 1 or not 0 <= auc_retrained < 1:
        raise ValueError("AUCs must be in [0, 1] (and the retrained model's below 1)")
    return ((1 - auc_unlearned) - (1 - auc_retrained)) / (1 - auc_retrained)


# --- entity unlearning (TOFU-style, reference A3.1 and A4) ---------------------------------------


def answer_probability(scores: SequenceScores) -> np.ndarray:
    """TOFU's P(a|q)^{1/|a|} = exp(−mean NLL of the answer tokens)."""
    return np.exp(-scores.nll)


def truth_ratio(paraphrased: SequenceScores, perturbed: list[SequenceScores]) -> np.ndarray:
    """Per question: geometric mean over perturbed answers of P^{1/|â|}, over P^{1/|ã|} of the
    paraphrased answer (OpenUnlearning's choice: the mean of the perturbed answers' mean NLL is taken
    before exponentiating; the paper uses an arithmetic mean)."""
    pert_nll = np.mean([p.nll for p in perturbed], axis=0)
    return np.exp(paraphrased.nll - pert_nll)


def forget_quality(truth_unlearned: np.ndarray, truth_oracle: np.ndarray) -> float:
    """TOFU's forget quality: the KS-test p-value between the forget set's truth ratios under the
    unlearned model and under the oracle; >= 0.05 reads as indistinguishable from retraining."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(truth_unlearned, truth_oracle).pvalue)
