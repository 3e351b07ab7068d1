"""Metrics as pure functions over logits, losses and labels, plus the metric catalogue.

Imports nothing above this layer.
"""

from .accuracy import accuracy
from .catalogue import (
    METRICS,
    ORACLE,
    Direction,
    Metric,
    Modality,
    Outputs,
    SequenceOutputs,
    available,
    direction_of,
    spec_of,
)
from .composite import avg_gap, avg_gap_ma, tow, tow_mia
from .divergence import activation_distance, disagreement, js_divergence, kl, symmetric_kl, zrf
from .mia import attack_features, entropy_mia, loss_mia, mia_efficacy, svc_mia, threshold_attack
from .neurips23 import logit_scaled_confidence, neurips23_epsilons, neurips23_final_score, neurips23_score

__all__ = [
    "METRICS",
    "ORACLE",
    "Direction",
    "Metric",
    "Modality",
    "Outputs",
    "SequenceOutputs",
    "accuracy",
    "activation_distance",
    "attack_features",
    "available",
    "avg_gap",
    "avg_gap_ma",
    "direction_of",
    "spec_of",
    "disagreement",
    "entropy_mia",
    "js_divergence",
    "kl",
    "logit_scaled_confidence",
    "loss_mia",
    "mia_efficacy",
    "neurips23_epsilons",
    "neurips23_final_score",
    "neurips23_score",
    "svc_mia",
    "symmetric_kl",
    "threshold_attack",
    "tow",
    "tow_mia",
    "zrf",
]
