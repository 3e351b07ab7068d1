"""``sga``: selective gradient ascent (Barbulescu & Triantafillou, ICML 2024), as released.

Released code: github.com/GeorgeOctavian/selective_unlearning, ``llmu-py/llmu/interfaces/gpt_neo_pl.py``
(``Neo.training_step``: the selection; ``validation_epoch_end``: per-sequence MA and the stop) run
with ``experiments/configs/sga_config/config_13b_16_0.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import register
from .ga import GA
from .lm_common import LMParams

#: the released configs' thresholds: stop once the forget set's mean MA < ``ma_threshold`` (0.33, here
#: ``gamma``); ascend on the rows with MA >= ``mem_threshold`` (0.70) plus each batch's most memorized
RELEASED = {"gamma": 0.33, "mem_threshold": 0.70}


@register
class SGA(GA):
    """Gradient ascent on the memorized rows only. Defaults are the released code's: batches of 8
    forget rows; a step ascends on the rows whose MA at the last refresh is >= 0.70, plus the batch's
    most memorized row; the MA of every forget sequence is refreshed once per pass through the forget
    set (its validation epoch; once before the first step too) and the run stops once their *mean* is
    below 0.33 (Jang et al.'s aggregate rule; ≤ here), for at most 150 epochs; Adam(0.9, 0.98),
    lr 5e-5, no clipping.

    Differences: the release ran on 2 GPUs, each selecting within its own 8 rows; its loss is the
    token mean over the selected rows (the mean of per-sequence means here: the same on its rows, all
    200 tokens); its MA greedy-generates every position of a row, ours reads the argmax under teacher
    forcing (the same numbers) over the scored tokens (answers only, for QA rows). 0.33 and 0.70 are
    absolute, set for GPT-Neo on the Pile (Jang et al.'s threshold is the model's MA on unseen
    text): for another model pass ``gamma`` and ``mem_threshold``.

    ``stop="sequence"`` is obliviate's rule (not in the release; the optimiser defaults above stay):
    γ calibrated on ``val`` (``gamma_stat``), each step ascends on the rows of its batch still above
    γ, read off its own forward pass, until every forget sequence is at most γ, c(D_f) = 0
    (reference A1.2)."""

    name = "sga"

    @dataclass(frozen=True)
    class Params(LMParams):
        lr: float = 5e-5
        batch_size: int | None = 8
        max_steps: int | None = None
        max_epochs: int | None = 150
        grad_clip: float | None = None
        stop: str = "aggregate"
        selective: bool = True

        def released(self) -> bool:
            """Whether the released thresholds fill ``gamma`` and ``mem_threshold`` left unset."""
            return self.stop == "aggregate"

        def __post_init__(self) -> None:
            if self.released():
                for k, v in RELEASED.items():
                    if getattr(self, k) is None:
                        object.__setattr__(self, k, v)
            super().__post_init__()
