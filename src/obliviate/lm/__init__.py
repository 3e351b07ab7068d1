"""Language-model unlearning (work in progress): fictitious people, offline text, a tiny GPT-2."""

from .corpus import background_text, encode, extraction_likelihood, lm_logits, tiny_gpt2, train_lm, train_tokenizer
from .people import ATTRIBUTES, QA, People, Person

__all__ = ["ATTRIBUTES", "QA", "People", "Person", "background_text", "encode", "extraction_likelihood", "lm_logits", "tiny_gpt2", "train_lm",
           "train_tokenizer"]
