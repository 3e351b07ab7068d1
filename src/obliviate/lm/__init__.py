"""Language-model unlearning: fictitious people and canaries in offline text, a tiny GPT-2 that
memorizes them, causal-LM training through ``accelerate``, local Hugging Face models (SmolLM2, LoRA),
and per-sequence evaluation against the oracle. Methods run through ``ob.unlearn`` like any other."""

from ..data.text import TextDataset
from .corpus import background_text, encode, extraction_likelihood, lm_logits, tiny_gpt2, train_lm, train_tokenizer
from .people import ATTRIBUTES, QA, People, Person
from .scenario import Scenario, make_scenario
from .train import LMTrainLog, train

__all__ = [
    "ATTRIBUTES",
    "LMTrainLog",
    "QA",
    "People",
    "Person",
    "Scenario",
    "TextDataset",
    "background_text",
    "encode",
    "extraction_likelihood",
    "lm_logits",
    "make_scenario",
    "tiny_gpt2",
    "train",
    "train_lm",
    "train_tokenizer",
]
