"""Evaluation protocols: the one place that combines models, splits and metrics."""

from . import memorization
from .detect import Detection, detect, inject_label_noise
from .evaluate import DEFAULT_LM_METRICS, DEFAULT_METRICS, default_metrics, evaluate, outputs_of, random_init_like
from .protocols import neurips23
from .report import Report, split_views
from .sequences import calibrate, perplexity, sequence_outputs, sequence_scores
from .tune import TuneResult, tune
from .ulira import ulira

__all__ = [
    "DEFAULT_LM_METRICS",
    "DEFAULT_METRICS",
    "Detection",
    "Report",
    "calibrate",
    "default_metrics",
    "detect",
    "evaluate",
    "inject_label_noise",
    "memorization",
    "neurips23",
    "outputs_of",
    "perplexity",
    "random_init_like",
    "sequence_outputs",
    "sequence_scores",
    "split_views",
    "TuneResult",
    "tune",
    "ulira",
]
