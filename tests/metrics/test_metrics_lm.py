"""Per-sequence LM memorization and membership scores on constructed logits."""

import numpy as np
import pytest
import torch

from obliviate.metrics import lm


def _logits_predicting(tokens: torch.Tensor, right: torch.Tensor, vocab: int = 11) -> torch.Tensor:
    """Logits whose position t argmax is tokens[t+1] where right[t], else a wrong token."""
    b, t = tokens.shape
    logits = torch.zeros(b, t, vocab)
    nxt = torch.cat([tokens[:, 1:], tokens[:, :1]], 1)
    pick = torch.where(torch.cat([right, torch.ones(b, 1, dtype=torch.bool)], 1), nxt, (nxt + 1) % vocab)
    logits.scatter_(2, pick[..., None], 5.0)
    return logits


def test_memorization_accuracy_and_extraction_strength():
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]])
    right = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    logits = _logits_predicting(tokens, right)
    assert lm.memorization_accuracy(logits, tokens).tolist() == pytest.approx([1.0, 0.6, 0.0])
    # from a prefix of 3 tokens on, row 1 gets 2 of the 3 remaining predictions right
    assert lm.memorization_accuracy(logits, tokens, prefix_len=3)[1] == pytest.approx(2 / 3)
    # ES over the 5 scored tokens: row 0 all right (k=0); row 1's last miss is the 3rd scored token (k=3);
    # row 2 misses the last one, so nothing is extractable
    assert lm.extraction_strength(logits, tokens).tolist() == pytest.approx([1.0, 1 - 3 / 5, 0.0])
    # padding is ignored: row 1 with its last two tokens padded
    mask = torch.ones_like(tokens)
    mask[1, 4:] = 0
    assert lm.memorization_accuracy(logits, tokens, mask)[1] == pytest.approx(1 / 3)  # positions 0-2: [0, 1, 0]


@pytest.mark.parametrize(
    "answer_right, expected",
    [
        ([1] * 8, 1.0),  # every answer token right
        ([0] * 8, 0.0),  # every answer token wrong
        ([0] + [1] * 7, 1 - 1 / 8),  # only the first answer token missed: give it, extract the rest
        ([1] * 7 + [0], 0.0),  # only the last answer token missed: nothing extractable
        ([1, 1, 0, 1, 1, 1, 1, 1], 1 - 3 / 8),
    ],
)
def test_extraction_strength_counts_k_within_the_scored_answer(answer_right, expected):
    """A 4-token prompt masked out, an 8-token answer scored (the QA / secret probes' layout); the
    prompt's own predictions are all wrong and must not matter."""
    tokens = torch.arange(1, 13)[None]
    right = torch.tensor([[0, 0, 0] + answer_right], dtype=torch.bool)  # position t predicts token t + 1
    mask = torch.tensor([[0, 0, 0] + [1] * 9])  # as lm.evaluate builds it: scored tokens and the one before
    es = lm.extraction_strength(_logits_predicting(tokens, right, vocab=20), tokens, mask)
    assert es.item() == pytest.approx(expected)


def test_min_k_takes_int_k_n_lowest_tokens():
    """Shi et al. / OpenUnlearning: int(k·n) lowest log-probs, at least one (not ceil)."""
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 30, (3, 12), generator=g)  # n = 11 scored tokens per row
    logits = torch.randn(3, 12, 30, generator=g)
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    lowest = logp.sort(1).values
    for k, take in ((0.2, 2), (0.4, 4), (0.05, 1)):  # int(2.2) = 2, int(4.4) = 4, int(0.55) -> 1
        assert torch.allclose(lm.min_k_percent(logits, tokens, k=k), -lowest[:, :take].mean(1)), k


def test_membership_scores_order_seen_and_unseen():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (8, 20), generator=g)
    seen = torch.randn(8, 20, 50, generator=g)
    seen.scatter_(2, torch.cat([tokens[:, 1:], tokens[:, :1]], 1)[..., None], 8.0)  # confident on the true next token
    unseen = torch.randn(8, 20, 50, generator=g)
    for score in (lm.sequence_nll, lm.min_k_percent, lm.min_k_plus_plus):
        assert (score(seen, tokens) < score(unseen, tokens)).all(), score.__name__  # higher = more likely unseen
    nll = lm.sequence_nll(unseen, tokens)
    logp = torch.log_softmax(unseen[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    assert torch.allclose(nll, -logp.mean(1))
    assert torch.allclose(lm.min_k_percent(unseen, tokens, k=1.0), nll)  # k = 100%: all tokens
    with pytest.raises(ValueError):
        lm.min_k_percent(unseen, tokens, k=0)
    with pytest.raises(ValueError, match="logits must be"):
        lm.sequence_nll(unseen[:, :5], tokens)


def test_threshold_and_per_sequence_counts():
    unseen = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert lm.calibrate_threshold(unseen) == pytest.approx(0.3)
    assert lm.calibrate_threshold(unseen, "max") == 0.5
    assert lm.calibrate_threshold(unseen, "p50") == pytest.approx(0.3)
    assert lm.calibrate_threshold(unseen, 0.75) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        lm.calibrate_threshold(unseen, "median")
    c = lm.forgetting_counts(np.array([0.05, 0.25, 0.9, 0.35]), unseen, gamma=0.3)
    assert (c["above"], c["below_low"]) == (2, 1) and c["max"] == 0.9 and c["above_fraction"] == 0.5


def test_lm_mia_zlib_and_privleak():
    rng = np.random.default_rng(0)
    members, holdout = rng.normal(1.0, 0.3, 200), rng.normal(2.0, 0.3, 200)  # members have lower NLL
    res = lm.lm_mia(members, holdout)
    assert res["auc"] > 0.95 and res["tpr@1%fpr"] > 0.5
    assert lm.lm_mia(holdout[:100], holdout[100:])["auc"] == pytest.approx(0.5, abs=0.1)
    # MUSE's sign: still recognisable (AUC above the retrained model's) is negative, over-unlearned positive
    assert lm.privleak(0.75, 0.5) == pytest.approx(-0.5) and lm.privleak(0.25, 0.5) == pytest.approx(0.5)
    assert lm.privleak(0.5, 0.5) == 0
    # zlib: the same NLL counts as less suspicious on text that compresses poorly (more information)
    z = lm.zlib_score(np.array([1.0, 1.0]), ["aaaa aaaa aaaa aaaa", "q8#Zk!2mP0x@7Lw%"])
    assert z[0] > z[1]
    with pytest.raises(ValueError):
        lm.zlib_score(np.array([1.0]), ["a", "b"])


def test_sampled_logprob_matches_hugging_face_sampling():
    """The sampling attack's exact chance of reproducing a continuation equals the frequency with which
    transformers' own generate(do_sample, temperature, top_k) produces it (an independent sampler)."""
    pytest.importorskip("transformers")
    from obliviate.metrics.lm import sampled_extraction, sampled_logprob
    from obliviate.models import tiny_gpt2

    torch.manual_seed(0)
    model = tiny_gpt2(12, layers=1, width=16, heads=2, context=8, seed=3).eval()
    with torch.no_grad():  # sharper logits, so temperature and top-k both change the answer
        model.transformer.wte.weight.mul_(12)
    prompt = torch.tensor([[1, 5]])
    greedy = model.generate(prompt, do_sample=False, max_new_tokens=3, pad_token_id=0)  # a path inside the top-k
    mask = torch.tensor([[0, 1, 1, 1, 1]])  # scored: the 3 generated tokens (and the prompt token before them)
    with torch.no_grad():
        logits = model(greedy).logits
    logp = float(sampled_logprob(logits, greedy, mask, temperature=0.7, top_k=4))
    torch.manual_seed(1)
    n = 6000
    samples = model.generate(
        prompt.repeat(n, 1), do_sample=True, temperature=0.7, top_k=4, max_new_tokens=3, pad_token_id=0
    )
    freq = float((samples[:, 2:] == greedy[:, 2:]).all(1).float().mean())
    p = np.exp(logp)
    assert 0.01 < p < 0.99 and abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n)
    # a token outside the top-k can never be sampled; n samples extract with 1 - (1 - p)^n
    off = greedy.clone()
    off[0, -1] = int(logits[0, -2].argsort()[0])
    with torch.no_grad():
        assert float(sampled_logprob(model(off).logits, off, mask, top_k=4)) == float("-inf")
    assert sampled_extraction(np.array([logp]), n=5)[0] == pytest.approx(1 - (1 - p) ** 5)
