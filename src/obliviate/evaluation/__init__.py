"""Evaluation protocols: the one place that combines models, splits and metrics."""

from . import memorization
from .detect import Detection, detect, inject_label_noise
from .evaluate import DEFAULT_METRICS, Report, evaluate, outputs_of, random_init_like, split_views
from .protocols import neurips23
from .tune import TuneResult, tune
from .ulira import ulira

__all__ = ["DEFAULT_METRICS", "Detection", "Report", "detect", "evaluate", "inject_label_noise", "memorization",
           "neurips23", "outputs_of", "random_init_like", "split_views", "TuneResult", "tune", "ulira"]
