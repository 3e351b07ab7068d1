"""Offline LM text, a local BPE tokenizer, and a tiny GPT-2 that really memorizes injected canaries."""

import shutil

import pytest
import torch

from obliviate.lm import (
    People,
    background_text,
    encode,
    extraction_likelihood,
    lm_logits,
    tiny_gpt2,
    train_lm,
    train_tokenizer,
)
from obliviate.metrics import lm

pytest.importorskip("transformers")


@pytest.mark.skipif(shutil.which("bible") is None, reason="Debian's bible-kjv is not installed")
def test_background_text_is_the_kjv_without_verse_numbers():
    text = background_text(5000)
    assert text.startswith("In the beginning God created the heaven and the earth.") and len(text) == 5000
    assert "Ge1:1" not in text


def test_tiny_gpt2_memorizes_injected_canaries_and_not_controls():
    torch.manual_seed(0)
    pop = People.generate(20, seed=0, canaries=20)
    filler = [pop.biography(p, variant=v) for p in pop.people for v in (0, 1)]
    tok = train_tokenizer(filler + pop.canaries, vocab_size=512)
    assert tok.decode(tok(pop.canaries[0])["input_ids"]) == pop.canaries[0]
    seen, unseen = pop.canaries[:10], pop.canaries[10:]  # the controls are never trained on
    ids, mask = encode(tok, seen * 20 + filler, 32)
    model = tiny_gpt2(len(tok), layers=2, width=64, heads=4, context=32, eos_token_id=tok.eos_token_id)
    losses = train_lm(model, ids, mask, steps=250, batch_size=32)
    assert losses[-1] < losses[0] / 3
    scores = {}
    for name, group in (("seen", seen), ("unseen", unseen)):
        i, m = encode(tok, group, 32)
        scores[name] = lm.memorization_accuracy(lm_logits(model, i, m), i, m)
    assert scores["seen"].mean() > 0.8 and scores["unseen"].mean() < 0.3
    gamma = lm.calibrate_threshold(scores["unseen"], "max")
    assert lm.forgetting_counts(scores["seen"], scores["unseen"], gamma)["above"] == 10  # nothing forgotten yet
    # extraction likelihood: greedy continuations reproduce the memorized canaries' n-grams, not the controls'
    el = {
        k: extraction_likelihood(model, *encode(tok, g[:3], 32), n=4, stride=2)
        for k, g in (("seen", seen), ("unseen", unseen))
    }
    assert el["seen"].mean() > 0.5 > 0.1 > el["unseen"].mean()


class _RepeatsFirstBigram:
    """A greedy 'generator' whose continuation of a prefix repeats the true suffix's first two tokens
    (a, b, a, b, ...): every other generated bigram is a true one, however long the suffix."""

    config = type("Config", (), {"eos_token_id": 0})()

    def __init__(self, seq: list[int]):
        self.seq = seq

    def eval(self):
        return self

    def generate(self, input_ids, max_new_tokens, **_):
        t = input_ids.shape[1]
        a, b = self.seq[t], self.seq[t + 1]
        return torch.tensor([self.seq[:t] + [a, b] * max_new_tokens])[:, : t + max_new_tokens]


def test_extraction_likelihood_counts_generated_ngrams_over_t_minus_n():
    """Jang et al.'s EL_n: Σ_t |generated n-grams found in the true suffix| / |true suffix n-grams|, over T − n.
    T = 8, n = 2: prefixes t = 1..6 leave suffixes of L = 7..2 tokens, L − 1 bigrams, ⌈(L − 1)/2⌉ of the
    generated ones true; counting distinct true bigrams reproduced instead would give 1/(L − 1) each."""
    seq = list(range(1, 9))
    el = extraction_likelihood(_RepeatsFirstBigram(seq), torch.tensor([seq]), torch.ones(1, 8), n=2)
    expected = (3 / 6 + 3 / 5 + 2 / 4 + 2 / 3 + 1 / 2 + 1 / 1) / 6
    assert el.item() == pytest.approx(expected)
