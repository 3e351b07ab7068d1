"""``eu-k``: re-initialise the last k layers and retrain them on the retain set, the rest frozen."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import Context, register
from .cf_k import CatastrophicForgettingK


@register
class ExactUnlearningK(CatastrophicForgettingK):
    """EU-k (Goel et al. 2022; a SCRUB baseline, meghdadk/SCRUB ``MIA_experiments.ipynb``;
    reference §3.10): re-initialise the last ``k`` layers (``reset_parameters``, the
    architecture's own initialiser, under the run's seed), then train them on D_r with every
    earlier layer frozen, as in ``cf-k`` (same definition of a layer and of "frozen").

    The last k layers are then exactly free of D_f; the frozen features are not, so it forgets a
    class (the new head never sees it) but hardly a random forget set whose memorisation sits in
    the features. The re-initialised model is the safe fallback (a non-finite loss rolls back to
    it, never to the original), and the retain-accuracy collapse check is off: the retrained
    head starts at chance, and one short epoch may not bring it back above the threshold.

    Papers: k = the last block/stage, retrained with the original schedule. Default: k=1,
    Adam lr 3e-3, 5 epochs, measured on digits (MLP / small CNN): a forgotten class goes to 0.000
    forget accuracy with test 0.884 / 0.876 (oracles 0.889 / 0.871); a random 10% set gives
    forget 0.970 / 0.985, test 0.987 / 0.982 (oracles 0.978, 0.987). k=2 cost 2-3 test points
    (on the MLP it re-initialises everything); 10 epochs gained <= 0.5 point.
    """

    name = "eu-k"
    guard_steps = False  # the re-initialised layers start at chance; training them is the repair
    search_space = {"k": (1, 2), "lr": (1e-3, 3e-3, 1e-2), "epochs": (3, 5, 10)}

    @dataclass(frozen=True)
    class Params(CatastrophicForgettingK.Params):
        lr: float = 3e-3
        epochs: int = 5

    def prepare(self, model: nn.Module, trained: list[nn.Module], ctx: Context) -> None:
        for module in trained:
            reset = getattr(module, "reset_parameters", None)
            if not callable(reset):
                raise ValueError(f"eu-k cannot re-initialise a {type(module).__name__}: it has no reset_parameters()")
            reset()
        ctx.restart_from(model)  # the damaged model is the unlearned one; the repair starts here
