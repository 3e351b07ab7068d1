"""``ob.lm.train``: the causal-LM training loop's old home; it lives in :mod:`obliviate.train.lm`."""

from ..train.lm import LMTrainLog, fit_causal_lm

train = fit_causal_lm

__all__ = ["LMTrainLog", "train"]
