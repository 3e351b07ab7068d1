"""The one oracle policy: which seed each kind of retrained model gets.

An unlearning run of seed ``s`` is judged against the **reference oracle** (seed ``s``, the same
seed as the original, so the two differ only in D_f). A **floor oracle** of another seed measures
how far two retrains land from each other (the noise floor). Tuning selects hyper-parameters
against a **validation oracle** that is never a judging oracle, so tuning cannot overfit the
judge. Protocols that need a distribution of oracles (NeurIPS 2023, U-LiRA shadows) draw an
**ensemble** of seeds from a range that no single-model seed reaches.
"""

from __future__ import annotations

#: floor oracle = seed + FLOOR_OFFSET
FLOOR_OFFSET = 500
#: validation oracle (``ob.tune``) = seed + VALIDATION_OFFSET
VALIDATION_OFFSET = 1000
#: ensemble oracles = ENSEMBLE_OFFSET + seed + i
ENSEMBLE_OFFSET = 100_000


def reference_seed(seed: int) -> int:
    """The judging oracle's seed: the original's own."""
    return seed


def floor_seed(seed: int) -> int:
    """The second oracle, whose gap to the reference is the noise floor."""
    return seed + FLOOR_OFFSET


def validation_seed(seed: int) -> int:
    """The oracle tuning selects against (never a judging oracle)."""
    return seed + VALIDATION_OFFSET


def ensemble_seeds(seed: int, n: int) -> list[int]:
    """Seeds of ``n`` oracles trained as one ensemble (NeurIPS 2023 ε, shadow models)."""
    return [ENSEMBLE_OFFSET + seed + i for i in range(n)]
